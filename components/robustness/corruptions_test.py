"""Each corruption does what its name says, and none of them changes a stone's hue."""
import colorsys
import io

import numpy as np
import pytest
from PIL import Image

from components.robustness import corruptions


def _photo():
    """A red stone (ruby-like) with facets on a grey background: edges, colour, texture."""
    rng = np.random.default_rng(0)
    pixels = np.full((96, 96, 3), 128, np.float32)
    yy, xx = np.mgrid[:96, :96]
    stone = (yy - 48) ** 2 + (xx - 48) ** 2 < 30 ** 2
    facets = 0.6 + 0.4 * ((xx // 8 + yy // 8) % 2)
    pixels[stone] = np.array([200.0, 30.0, 50.0]) * facets[stone][:, None]
    pixels += rng.normal(0, 2, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _apply(name, image):
    data = corruptions.CORRUPTIONS[name].apply(image, np.random.default_rng(1))
    return data, np.asarray(corruptions.decode(data), np.float32)


def _sharpness(pixels):
    grey = pixels.mean(axis=2)
    return np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()


def _stone_hue(pixels):
    r, g, b = pixels[48 - 10:48 + 10, 48 - 10:48 + 10].reshape(-1, 3).mean(axis=0) / 255.0
    return colorsys.rgb_to_hsv(r, g, b)[0]


def test_every_corruption_returns_a_decodable_photo_of_the_same_size():
    image = _photo()
    for name in corruptions.CORRUPTIONS:
        data, pixels = _apply(name, image)
        assert pixels.shape == (96, 96, 3), name
        assert Image.open(io.BytesIO(data)).format == ("JPEG" if name.startswith("jpeg") else "PNG"), name


def test_each_corruption_changes_the_photo_the_way_its_name_says():
    image = _photo()
    clean = np.asarray(image, np.float32)
    assert _apply("gaussian_noise", image)[1].std() > clean.std() * 1.05
    assert _sharpness(_apply("blur", image)[1]) < 0.7 * _sharpness(clean)
    assert _sharpness(_apply("downscaled", image)[1]) < 0.8 * _sharpness(clean)
    assert _apply("brighter", image)[1].mean() > clean.mean() * 1.2
    assert _apply("darker", image)[1].mean() < clean.mean() * 0.7
    warm, cool = _apply("warm_light", image)[1], _apply("cool_light", image)[1]
    assert warm[..., 0].mean() > clean[..., 0].mean() > cool[..., 0].mean()
    assert warm[..., 2].mean() < clean[..., 2].mean() < cool[..., 2].mean()
    q30, q10 = _apply("jpeg_q30", image), _apply("jpeg_q10", image)
    assert len(q10[0]) < len(q30[0])
    assert np.abs(q10[1] - clean).mean() > np.abs(q30[1] - clean).mean()


@pytest.mark.parametrize("name", sorted(corruptions.CORRUPTIONS))
def test_no_corruption_turns_a_ruby_into_another_colour(name):
    image = _photo()
    hue = _stone_hue(_apply(name, image)[1])
    red_distance = min(hue, 1.0 - hue)  # hue is circular; red sits at 0
    assert red_distance < 0.05, (name, hue)


def test_a_photo_gets_the_same_corruptions_alone_or_among_others():
    """Each photo's noise is its own: corrupted one by one (as Beam's workers do) or all together, alike."""
    photos = [_photo(), _photo().rotate(90), _photo().transpose(Image.FLIP_LEFT_RIGHT)]
    together = {name: corrupted for name, _, corrupted in corruptions.corrupt_each(photos, seed=3)}
    for position, photo in enumerate(photos):
        assert dict(corruptions.corrupt(photo, position, seed=3)) == {name: together[name][position]
                                                                      for name in corruptions.CORRUPTIONS}
    noisy = together["gaussian_noise"]
    assert noisy[0] != dict(corruptions.corrupt(photos[0], 0, seed=4))["gaussian_noise"]  # the seed matters
    assert dict(corruptions.corrupt(photos[0], 1, seed=3))["gaussian_noise"] != noisy[0]  # and the position
