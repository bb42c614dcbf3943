"""The backbone command: fetch a pretrained backbone's ImageNet weights (gemstone/backbones)."""
from __future__ import annotations

import sys

from gemstone.apps import checks
from gemstone.apps.commands import NO, OK


def backbone_fetch(args) -> int:
    if args.from_file:  # checked first, also when valid weights are there already: a wrong path is a mistake
        checks.existing_file(args.from_file, "--from-file", "the weights file copied to this machine")
    from gemstone import backbones

    try:
        from modules import efficientnet_lite  # the network the weights go into: model code

        result = backbones.fetch(args.source, force=args.force, from_file=args.from_file, backbone=args.backbone,
                                 network=efficientnet_lite)
    except backbones.BackboneError as e:
        print(f"gemstone backbone fetch: error: {e}", file=sys.stderr)
        return NO
    print(f"{backbones.DISPLAY_NAMES[args.backbone]} weights: {result.folder / backbones.weights_file(args.backbone)}")
    print("\n".join("  " + line for line in backbones.provenance_summary(result.provenance)))
    return OK
