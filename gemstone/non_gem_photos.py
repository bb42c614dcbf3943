"""Photos that are not gemstones, from files that ship with installed packages: the open-set checks' negatives.

The model must say "not a gemstone photo" for what a user may send by mistake:
a cat, a portrait, a landscape, a rocket, coins, brick or gravel, a page of
text. No photo may be committed to the repository or downloaded here, so the
set is assembled from the sample pictures scikit-image, scikit-learn and
matplotlib install with themselves (each whole, and the larger ones also as a
centred and an off-centre crop: another framing of another part of the scene).

Used by the Robustness component (the known/unknown figures of every run and
the dashboard's novelty histogram), the benchmarks and the tests.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import List, NamedTuple

import numpy as np
from PIL import Image

# (package, folder inside it, file). Greyscale pictures are kept: a black-and-white photo is a
# plausible mistake too. Left out: synthetic test patterns that are not photos of anything.
SOURCES = (
    ("skimage", "data", "astronaut.png"), ("skimage", "data", "brick.png"), ("skimage", "data", "camera.png"),
    ("skimage", "data", "cell.png"), ("skimage", "data", "chelsea.png"), ("skimage", "data", "clock_motion.png"),
    ("skimage", "data", "coffee.png"), ("skimage", "data", "coins.png"), ("skimage", "data", "color.png"),
    ("skimage", "data", "grass.png"), ("skimage", "data", "gravel.png"), ("skimage", "data", "horse.png"),
    ("skimage", "data", "hubble_deep_field.jpg"), ("skimage", "data", "ihc.png"), ("skimage", "data", "logo.png"),
    ("skimage", "data", "microaneurysms.png"), ("skimage", "data", "moon.png"),
    ("skimage", "data", "motorcycle_left.png"), ("skimage", "data", "page.png"), ("skimage", "data", "retina.jpg"),
    ("skimage", "data", "rocket.jpg"), ("skimage", "data", "text.png"),
    ("sklearn", "datasets/images", "china.jpg"), ("sklearn", "datasets/images", "flower.jpg"),
    ("matplotlib", "mpl-data/sample_data", "grace_hopper.jpg"),
    ("matplotlib", "mpl-data/sample_data", "Minduka_Present_Blue_Pack.png"),
)
# Pictures at least this many pixels on their short side also give two crops.
CROP_MIN_SIDE = 300
CROP_SHARE = 0.5  # each crop's side, as a share of the short side


class Photo(NamedTuple):
    name: str  # e.g. "chelsea.png" or "chelsea.png#centre"
    data: bytes  # JPEG


def _package_dir(package: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise FileNotFoundError(f"package {package} is not installed")
    return Path(spec.origin).parent


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


def _crops(image: Image.Image):
    """A centred crop and one towards the top left: two other framings of the scene."""
    width, height = image.size
    side = int(min(width, height) * CROP_SHARE)
    for name, (left, top) in (("centre", ((width - side) // 2, (height - side) // 2)),
                              ("corner", (width // 8, height // 8))):
        yield name, image.crop((left, top, left + side, top + side))


def photos(crops: bool = True) -> List[Photo]:
    """The non-gem photos as JPEG bytes, in a fixed order. Skips a source file an installation lacks."""
    result = []
    for package, folder, name in SOURCES:
        try:
            path = _package_dir(package) / folder / name
        except FileNotFoundError:
            continue
        if not path.is_file():
            continue
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        result.append(Photo(name, _jpeg(image)))
        if crops and min(image.size) >= CROP_MIN_SIDE:
            result += [Photo(f"{name}#{where}", _jpeg(crop)) for where, crop in _crops(image)]
    return result


def write(folder: str, crops: bool = True) -> List[str]:
    """Writes the photos into `folder` (for batch-infer or the upload page); returns their paths."""
    os.makedirs(folder, exist_ok=True)
    written = []
    for photo in photos(crops):
        path = os.path.join(folder, photo.name.replace(".", "_").replace("#", "_") + ".jpg")
        with open(path, "wb") as f:
            f.write(photo.data)
        written.append(path)
    return written


def as_arrays(size: int) -> np.ndarray:
    """[n, size, size, 3] float RGB in 0..1: the photos as an edge model reads them (resized, not cropped)."""
    return np.stack([np.asarray(Image.open(io.BytesIO(p.data)).convert("RGB").resize((size, size), Image.BILINEAR),
                                np.float32) / 255.0 for p in photos()])
