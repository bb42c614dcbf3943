"""Augmentation keeps colour: a lamp's light, blur and noise, never another stone; the histogram follows the image."""
import numpy as np
import pytest
import tensorflow as tf

from modules import augmentation, transform

SIZE = 32


def test_augmentation_never_turns_a_ruby_into_a_sapphire():
    red = np.zeros((16, SIZE, SIZE, 3), np.float32)
    red[..., 0], red[..., 1], red[..., 2] = 0.8, 0.1, 0.15
    augmented = augmentation.augmentation(seed=3)(tf.constant(red), training=True)
    hue = tf.image.rgb_to_hsv(augmented).numpy()[..., 0] * 360
    hue = np.where(hue > 180, hue - 360, hue)  # red sits around 0 degrees
    original = tf.image.rgb_to_hsv(tf.constant(red[:1, :1, :1])).numpy()[0, 0, 0, 0] * 360 - 360
    assert np.abs(hue - original).max() < 8  # a lamp's colour, not another stone
    assert not np.allclose(augmented.numpy(), red)  # it did augment


def test_lighting_changes_image_and_histogram_together_and_keeps_a_ruby_red():
    red = np.zeros((64, SIZE, SIZE, 3), np.float32)
    red[..., 0], red[..., 1], red[..., 2] = 0.8, 0.1, 0.15
    images = tf.constant(red)
    colour = transform.colour_histogram(images)
    lighting = augmentation.RandomPhotoConditions(blur_rate=0.0, noise_rate=0.0, seed=5)
    same_image, same_colour = lighting([images, colour], training=False)
    np.testing.assert_array_equal(same_image.numpy(), red)  # inference: untouched
    lit, lit_colour = (t.numpy() for t in lighting([images, colour], training=True))
    changed = ~np.isclose(lit, red).all(axis=(1, 2, 3))
    assert 10 < changed.sum() < 54  # about half the batch, the rest as taken
    # Each photo's histogram is the one of its own (changed or unchanged) image.
    np.testing.assert_allclose(lit_colour, transform.colour_histogram(tf.constant(lit)).numpy(), atol=1e-5)
    assert not np.allclose(lit_colour[changed], colour.numpy()[changed])
    assert (lit[..., 0] > 2 * lit[..., 2]).all()  # another lamp, still a red stone
    unused = augmentation.RandomPhotoConditions(histogram=False, lighting_rate=1.0, seed=5)([images, colour],
                                                                                        training=True)[1]
    np.testing.assert_array_equal(unused.numpy(), colour.numpy())


def _roughness(images):
    """Mean absolute difference between horizontal neighbours, per photo."""
    return np.abs(np.diff(images, axis=2)).mean(axis=(1, 2, 3))


def test_blur_and_noise_change_image_and_histogram_together():
    # 64 px, the pipeline's size: blur sigmas of 0.5, 1 and 1.5 pixels.
    images = tf.random.stateless_uniform([16, 64, 64, 3], seed=[7, 8], minval=0.2, maxval=0.8)
    colour = transform.colour_histogram(images)
    blur = augmentation.RandomPhotoConditions(lighting_rate=0.0, blur_rate=1.0, noise_rate=0.0, seed=3)
    blurred, blurred_colour = (t.numpy() for t in blur([images, colour], training=True))
    smoothing = _roughness(blurred) / _roughness(images.numpy())
    assert (smoothing < 0.9).all() and (smoothing < 0.5).sum() >= 3  # every photo out of focus, some badly
    np.testing.assert_allclose(blurred_colour, transform.colour_histogram(tf.constant(blurred)).numpy(), atol=1e-5)
    assert abs(blurred.mean() - images.numpy().mean()) < 0.01  # a blur moves no light

    flat = tf.fill([16, SIZE, SIZE, 3], 0.5)
    noise = augmentation.RandomPhotoConditions(lighting_rate=0.0, blur_rate=0.0, noise_rate=1.0, noise=0.03, seed=3)
    noisy, noisy_colour = (t.numpy() for t in noise([flat, transform.colour_histogram(flat)], training=True))
    spread = noisy.std(axis=(1, 2, 3))
    assert (spread < 0.035).all() and (spread > 0).sum() >= 15  # sigma drawn in 0..3 %
    np.testing.assert_allclose(noisy_colour, transform.colour_histogram(tf.constant(noisy)).numpy(), atol=1e-5)


@pytest.mark.parametrize("sigma", [1.0, 5.4])  # 5.4: the widest blur at 224 px (33 taps)
def test_gaussian_blur_is_a_separable_gaussian_with_reflected_edges(sigma):
    """Against numpy. The 224 px kernel crashed TensorFlow on AVX-512 CPUs as a depthwise convolution."""
    images = np.random.default_rng(0).random((2, 224, 224, 3)).astype(np.float32)
    radius = int(round(3 * sigma))
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma ** 2))
    taps /= taps.sum()
    expected = np.pad(images.astype(np.float64), [(0, 0), (radius, radius), (radius, radius), (0, 0)], mode="reflect")
    for axis in (1, 2):
        expected = np.apply_along_axis(lambda line: np.convolve(line, taps, mode="valid"), axis, expected)
    blurred = augmentation._gaussian_blur(tf.constant(images), sigma).numpy()
    assert blurred.shape == images.shape
    np.testing.assert_allclose(blurred, expected, atol=1e-5)
