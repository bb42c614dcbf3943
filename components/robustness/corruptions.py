"""Photo corruptions a shop or a phone camera inflicts, for measuring a model's robustness.

Each corruption takes a decoded RGB photo and returns encoded bytes, as a
client would send them: PNG (lossless) so that only the corruption itself
changes the picture, except for the JPEG ones. None shifts hue: a hue shift
turns a ruby into a sapphire, so it is a different stone, not a harder photo.
"""
from __future__ import annotations

import io
from typing import Callable, Dict, Iterator, List, NamedTuple, Tuple

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


class Corruption(NamedTuple):
    description: str
    apply: Callable[[Image.Image, np.random.Generator], bytes]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # Lossless at any level; level 1 encodes in a third of the time of PIL's default 6
    # (10 against 30 ms for a 370 x 370 photo) for 13 % more bytes.
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _jpeg(quality: int) -> Callable[[Image.Image, np.random.Generator], bytes]:
    def apply(image, rng):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()
    return apply


def _gaussian_noise(sigma: float):
    def apply(image, rng):
        pixels = np.asarray(image, np.float32)
        noisy = pixels + rng.normal(0.0, sigma * 255.0, pixels.shape)
        return _png(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))
    return apply


def _blur(share_of_side: float):
    def apply(image, rng):
        radius = max(1.0, share_of_side * min(image.size))
        return _png(image.filter(ImageFilter.GaussianBlur(radius)))
    return apply


def _brightness(factor: float):
    return lambda image, rng: _png(ImageEnhance.Brightness(image).enhance(factor))


def _colour_temperature(red: float, blue: float):
    """Warmer (red up, blue down) or cooler light: a white balance change, not a hue rotation."""
    def apply(image, rng):
        pixels = np.asarray(image, np.float32) * np.array([red, 1.0, blue], np.float32)
        return _png(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return apply


def _downscale(factor: int):
    """A low-resolution photo, scaled back up to its size: the detail is gone."""
    def apply(image, rng):
        small = image.resize((max(8, image.width // factor), max(8, image.height // factor)), Image.BILINEAR)
        return _png(small.resize(image.size, Image.BILINEAR))
    return apply


CORRUPTIONS: Dict[str, Corruption] = {
    "gaussian_noise": Corruption("Gaussian noise, sigma 8% of the range", _gaussian_noise(0.08)),
    "blur": Corruption("Gaussian blur, radius 2% of the short side", _blur(0.02)),
    "jpeg_q30": Corruption("JPEG at quality 30", _jpeg(30)),
    "jpeg_q10": Corruption("JPEG at quality 10", _jpeg(10)),
    "brighter": Corruption("brightness x1.4", _brightness(1.4)),
    "darker": Corruption("brightness x0.6", _brightness(0.6)),
    "warm_light": Corruption("warmer light: red x1.15, blue x0.85", _colour_temperature(1.15, 0.85)),
    "cool_light": Corruption("cooler light: red x0.85, blue x1.15", _colour_temperature(0.85, 1.15)),
    "downscaled": Corruption("down-scaled to a quarter of the side, then back up", _downscale(4)),
}


def _random(seed: int, corruption: int, photo: int) -> np.random.Generator:
    """The random stream of one corruption of one photo: what a photo gets does not depend on the photos before it,
    so photos can be corrupted anywhere, in any order (the Robustness component's Beam workers)."""
    return np.random.default_rng([seed, corruption, photo])


def corrupt(image: Image.Image, position: int, seed: int = 0) -> Iterator[Tuple[str, bytes]]:
    """(name, the photo under it) for each of CORRUPTIONS, of the photo at `position` in its collection."""
    for number, (name, corruption) in enumerate(CORRUPTIONS.items()):
        yield name, corruption.apply(image, _random(seed, number, position))


def corrupt_each(images: List[Image.Image], seed: int = 0) -> Iterator[Tuple[str, Corruption, List[bytes]]]:
    """(name, corruption, every photo under it) for each of CORRUPTIONS: what `corrupt` makes of each photo.

    With `corrupt`, the one place the Robustness component and the benchmark corrupt
    photos, so both see the same noise for the same seed.
    """
    for number, (name, corruption) in enumerate(CORRUPTIONS.items()):
        yield name, corruption, [corruption.apply(image, _random(seed, number, position))
                                 for position, image in enumerate(images)]


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
