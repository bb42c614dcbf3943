"""TFX Transform module: the preprocessing graph shared by training and serving.

Everything a model needs from a raw photo is computed here, in TensorFlow ops,
so the exported model applies exactly the same graph to a client's JPEG as the
Trainer applied to the training examples (no training/serving skew).
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402

from modules import features  # noqa: E402

DEFAULT_IMAGE_SIZE = 64
# Joint HSV histogram bins. Hue gets the most: it separates the varieties.
HUE_BINS, SATURATION_BINS, VALUE_BINS = 12, 4, 4
HSV_SIZE = HUE_BINS * SATURATION_BINS * VALUE_BINS
# Plus a joint RGB histogram, 8 bins a channel: the colour feature of the
# random-forest baseline (Chow and Reyes-Aldasoro, 2022), finer in dark tones.
RGB_BINS = 8
COLOUR_FEATURE_SIZE = HSV_SIZE + RGB_BINS ** 3


def _flatten(tensor):
    """Dense [batch, 1] (schema with shape) or [batch] -> [batch]."""
    if isinstance(tensor, tf.SparseTensor):
        tensor = tf.sparse.to_dense(tensor, default_value="")
    return tf.reshape(tensor, [-1])


def decode_and_resize(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded JPEG/PNG/GIF/BMP bytes [batch] -> float32 RGB in [0, 1], [batch, size, size, 3].

    The picture is squashed, not cropped, to the square: product photos put
    the stone in the middle of a roughly square frame, and cropping can cut
    off a stone that fills it.
    """

    def decode_one(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.image.resize(image, [image_size, image_size], antialias=True)
        return tf.clip_by_value(image / 255.0, 0.0, 1.0)

    return tf.map_fn(
        decode_one, image_bytes,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))


def rgb_to_hsv(images: tf.Tensor) -> tf.Tensor:
    """tf.image.rgb_to_hsv in elementary ops, so the edge (TFLite) model can compute it too."""
    r, g, b = images[..., 0], images[..., 1], images[..., 2]
    value = tf.reduce_max(images, axis=-1)
    chroma = value - tf.reduce_min(images, axis=-1)
    saturation = tf.where(value > 0, chroma / tf.maximum(value, 1e-12), tf.zeros_like(value))
    safe = tf.maximum(chroma, 1e-12)
    hue = tf.where(tf.equal(value, r), (g - b) / safe,
                   tf.where(tf.equal(value, g), 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = tf.where(chroma > 0, hue / 6.0, tf.zeros_like(hue))
    hue = hue - tf.floor(hue)  # wrap negative hues into [0, 1)
    return tf.stack([hue, saturation, value], axis=-1)


def colour_histogram(images: tf.Tensor) -> tf.Tensor:
    """[batch, S, S, 3] RGB in [0, 1] -> [batch, COLOUR_FEATURE_SIZE] centre-weighted HSV and RGB histograms.

    Colour is most of what tells gem varieties apart, and a small network
    trained on a few thousand photos learns it slowly from pixels; a histogram
    hands it over directly. Pixels near the centre (where the stone usually
    is) weigh more than the background. Square roots of the frequencies
    (Hellinger) keep a large background bin from drowning the rest.
    """
    hsv = rgb_to_hsv(images)
    bins = tf.constant([HUE_BINS, SATURATION_BINS, VALUE_BINS], tf.float32)
    index = tf.cast(tf.minimum(tf.floor(hsv * bins), bins - 1), tf.int32)
    hsv_bin = (index[..., 0] * SATURATION_BINS + index[..., 1]) * VALUE_BINS + index[..., 2]
    rgb_index = tf.cast(tf.minimum(tf.floor(images * RGB_BINS), RGB_BINS - 1), tf.int32)
    rgb_bin = (rgb_index[..., 0] * RGB_BINS + rgb_index[..., 1]) * RGB_BINS + rgb_index[..., 2]
    size = tf.shape(images)[1]
    coords = tf.linspace(-1.0, 1.0, size)
    weight = tf.exp(-(coords[:, tf.newaxis] ** 2 + coords[tf.newaxis, :] ** 2) / 0.5)  # Gaussian, sigma 0.5
    weight = tf.broadcast_to(weight, tf.shape(hsv_bin))[..., tf.newaxis]

    def histogram(bin_index, depth):
        counts = tf.reduce_sum(tf.one_hot(bin_index, depth) * weight, axis=[1, 2])
        return tf.sqrt(counts / tf.reduce_sum(counts, axis=1, keepdims=True))

    # Each part sums to 1 in squares, so the two weigh the same.
    return tf.concat([histogram(hsv_bin, HSV_SIZE), histogram(rgb_bin, RGB_BINS ** 3)], axis=1)


def preprocessing_fn(inputs, custom_config):
    """tf.Transform preprocessing: raw features -> model features and label ids."""
    image_size = int(custom_config.get("image_size", DEFAULT_IMAGE_SIZE))
    images = decode_and_resize(_flatten(inputs[features.IMAGE_KEY]), image_size)
    outputs = {features.IMAGE_XF: images, features.COLOUR_XF: colour_histogram(images)}
    # Label ids come from vocabularies computed on the train split; the
    # vocabulary files travel with the transform graph, so the exported model
    # can turn ids back into names.
    outputs[features.LABEL_XF] = tft.compute_and_apply_vocabulary(
        _flatten(inputs[features.LABEL_KEY]), vocab_filename=features.LABEL_VOCAB)
    outputs[features.FAMILY_XF] = tft.compute_and_apply_vocabulary(
        _flatten(inputs[features.FAMILY_KEY]), vocab_filename=features.FAMILY_VOCAB)
    return outputs
