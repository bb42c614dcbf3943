"""The preprocessing graph: decoding, resizing, colour histograms, vocabularies."""
import io

import numpy as np
import tensorflow as tf
from PIL import Image

from gemstone import contract
from modules import transform


def _jpeg(rgb, size=(40, 30)):
    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _png(rgb, size=(20, 50)):
    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decode_and_resize_accepts_jpeg_and_png_of_any_size():
    images = transform.decode_and_resize(tf.constant([_jpeg((200, 0, 0)), _png((0, 0, 255))]), 16)
    assert images.shape == (2, 16, 16, 3)
    values = images.numpy()
    assert values.min() >= 0.0 and values.max() <= 1.0
    assert values[0, 8, 8, 0] > 0.7 and values[0, 8, 8, 2] < 0.1
    assert values[1, 8, 8, 2] > 0.9 and values[1, 8, 8, 0] < 0.1


def test_colour_histogram_separates_red_from_blue_and_sums_to_one():
    images = transform.decode_and_resize(tf.constant([_jpeg((200, 20, 20)), _jpeg((20, 80, 200))]), 16)
    histogram = transform.colour_histogram(images).numpy()
    assert histogram.shape == (2, transform.COLOUR_FEATURE_SIZE)
    parts, start = {}, 0
    for name, size in transform.COLOUR_PARTS:
        parts[name], start = histogram[:, start:start + size], start + size
        np.testing.assert_allclose((parts[name] ** 2).sum(axis=1), 1.0, atol=1e-5)  # sqrt of frequencies
    hsv, rgb = parts["hsv"], parts["rgb"]
    histogram = hsv
    assert histogram[0].argmax() != histogram[1].argmax()
    assert rgb[0].argmax() == (6 * 8 + 0) * 8 + 0  # (200, 20, 20) falls in RGB bin (6, 0, 0)
    hue_bin = lambda h: h.argmax() // (transform.SATURATION_BINS * transform.VALUE_BINS)  # noqa: E731
    assert hue_bin(histogram[0]) in (0, contract.HUE_BINS - 1)  # red wraps around hue 0
    assert hue_bin(histogram[1]) == int(220 / 360 * contract.HUE_BINS)  # hue of (20, 80, 200)


def test_centre_weighting_favours_the_stone_over_the_background():
    pixels = np.full((32, 32, 3), 255, np.uint8)
    pixels[12:20, 12:20] = (0, 150, 0)  # a small green stone on white: 6% of the pixels
    frequencies = transform.colour_histogram(tf.constant(pixels[np.newaxis] / 255.0, tf.float32)).numpy()[0] ** 2
    frequencies = frequencies[:transform.HSV_SIZE]
    per_hue = frequencies.reshape(contract.HUE_BINS, -1).sum(axis=1)
    green = int(120 / 360 * contract.HUE_BINS)
    assert per_hue[green] > 2 * (pixels[..., 1] == 150).mean()


def test_rgb_to_hsv_matches_tensorflows():
    images = tf.random.stateless_uniform([2, 8, 8, 3], seed=[1, 2])
    images = tf.concat([images, tf.zeros([1, 8, 8, 3]), tf.ones([1, 8, 8, 3])], axis=0)  # black and white too
    np.testing.assert_allclose(transform.rgb_to_hsv(images).numpy(), tf.image.rgb_to_hsv(images).numpy(), atol=1e-5)


def test_rgb_to_lab_matches_skimage():
    from skimage.color import rgb2lab

    images = tf.random.stateless_uniform([1, 8, 8, 3], seed=[3, 4])
    np.testing.assert_allclose(transform.rgb_to_lab(images).numpy()[0], rgb2lab(images.numpy()[0]), atol=0.05)


def test_uniform_lbp_codes_flat_edges_and_noise():
    flat = tf.fill([1, 8, 8, 3], 0.5)
    assert (transform.uniform_lbp(flat).numpy() == 8).all()  # every neighbour >= the centre
    step = np.zeros((1, 8, 8, 3), np.float32)
    step[:, :, 4:] = 1.0  # a vertical edge: the bright pixels along it have 3 darker neighbours
    codes = transform.uniform_lbp(tf.constant(step)).numpy()[0]
    assert (codes[:, 4] == 5).all() and (np.delete(codes, 4, axis=1) == 8).all()
    noise = transform.uniform_lbp(tf.random.stateless_uniform([1, 16, 16, 3], seed=[5, 6])).numpy()
    assert noise.min() >= 0 and noise.max() == transform.LBP_SIZE - 1  # noise has non-uniform patterns


def test_uniform_lbp_ignores_faint_noise_on_a_flat_background():
    """Sensor noise on a studio background is not texture (without the tolerance, these codes are random)."""
    faint = 0.5 + 0.003 * tf.random.stateless_normal([1, 16, 16, 3], seed=[1, 1])
    assert (transform.uniform_lbp(faint).numpy() == 8).all()
    coarse = 0.5 + 0.05 * tf.random.stateless_normal([1, 16, 16, 3], seed=[1, 1])
    assert (transform.uniform_lbp(coarse).numpy() != 8).mean() > 0.3  # real texture still counts


def test_large_pictures_get_their_histogram_at_64px_and_tflite_computes_the_same():
    """Pretrained models see 224 px; their histograms are computed at 64 px, with ops TFLite has (edge models)."""
    import tf_keras as keras

    picture = tf.random.stateless_uniform([2, 224, 224, 3], seed=[4, 5])
    small = transform._histogram_picture(picture)
    assert small.shape == (2, transform.HISTOGRAM_SIZE, transform.HISTOGRAM_SIZE, 3)
    np.testing.assert_allclose(transform.colour_histogram(picture).numpy(),
                               transform.colour_histogram(small).numpy(), atol=1e-6)
    image = keras.Input((150, 150, 3))  # a box filter of 2, then bilinear
    model = keras.Model(image, keras.layers.Lambda(transform.colour_histogram)(image))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no custom or Flex ops
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    one = tf.random.stateless_uniform([1, 150, 150, 3], seed=[6, 7]).numpy()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], one)
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]),
                               model(one).numpy(), atol=1e-4)
