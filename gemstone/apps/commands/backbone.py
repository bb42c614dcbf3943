"""The backbone command: fetch a pretrained backbone's ImageNet weights (gemstone/backbones)."""
from __future__ import annotations

import sys

from gemstone.apps.commands import NO, OK


def backbone_fetch(args) -> int:
    from gemstone import backbones

    try:
        from modules import efficientnet_lite  # the network the weights go into: model code

        result = backbones.fetch(args.source, force=args.force, from_file=args.from_file, backbone=args.backbone,
                                 network=efficientnet_lite)
    except backbones.BackboneError as e:
        print(f"error: {e}", file=sys.stderr)
        return NO
    print(f"{backbones.DISPLAY_NAMES[args.backbone]} weights: {result.folder / backbones.weights_file(args.backbone)}")
    print("\n".join("  " + line for line in backbones.provenance_summary(result.provenance)))
    return OK
