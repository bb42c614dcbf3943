"""TFX Transform module: the preprocessing graph shared by training and serving.

Everything a model needs from a raw photo is computed here, in TensorFlow ops,
so the exported model applies exactly the same graph to a client's JPEG as the
Trainer applied to the training examples (no training/serving skew).
"""
import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402

from gemstone import contract  # noqa: E402

DEFAULT_IMAGE_SIZE = 64
# Joint HSV histogram bins. Hue gets the most: it separates the varieties.
SATURATION_BINS, VALUE_BINS = 4, 4  # hue: contract.HUE_BINS
HSV_SIZE = contract.HUE_BINS * SATURATION_BINS * VALUE_BINS
# Plus a joint RGB histogram, 8 bins a channel: the colour feature of the
# random-forest baseline (Chow and Reyes-Aldasoro, 2022), finer in dark tones.
RGB_BINS = 8
RGB_SIZE = RGB_BINS ** 3
# Plus a CIELAB histogram: perceptually even steps, so a hue bin is as wide
# for a pale aquamarine as for a saturated emerald.
LIGHTNESS_BINS, AB_BINS, AB_RANGE = 4, 8, 64.0
LAB_SIZE = LIGHTNESS_BINS * AB_BINS * AB_BINS
# And the texture feature of the baseline: uniform local binary patterns of
# the grey image (8 neighbours, radius 1): 9 uniform patterns + 1 for the rest.
LBP_SIZE = 10
# A neighbour counts as darker than the centre only by more than this (grey in
# 0..1). With none, the faintest sensor noise or JPEG ripple flips the pattern
# of every flat pixel (a studio background): measured on the 88-class photos,
# Gaussian noise (sigma 8 %, as the Robustness check adds) then cost the
# histograms alone 0.15 top-1; with 0.02, 0.05.
LBP_TOLERANCE = 0.02
# Side the histograms are computed at: a larger picture is first scaled down to it. Colour and
# fine texture need no more pixels, and at 224 px the histograms cost 16 times as much (about a
# second a batch of 32 on 2 cores: more than the pretrained network itself).
HISTOGRAM_SIZE = 64
COLOUR_PARTS = (("hsv", HSV_SIZE), ("rgb", RGB_SIZE), ("lab", LAB_SIZE), ("lbp", LBP_SIZE))
COLOUR_FEATURE_SIZE = sum(size for _, size in COLOUR_PARTS)


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


def rgb_to_lab(images: tf.Tensor) -> tf.Tensor:
    """sRGB in [0, 1] -> CIELAB (D65), in elementary ops (TFLite-friendly). L in [0, 100], a and b about +-100."""
    linear = tf.where(images <= 0.04045, images / 12.92, tf.pow((images + 0.055) / 1.055, 2.4))
    to_xyz = tf.constant([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = tf.tensordot(linear, tf.transpose(to_xyz), axes=1) / tf.constant([0.95047, 1.0, 1.08883])
    delta = 6.0 / 29.0
    f = tf.where(xyz > delta ** 3, tf.pow(tf.maximum(xyz, delta ** 3), 1.0 / 3.0), xyz / (3 * delta ** 2) + 4.0 / 29.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return tf.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def uniform_lbp(images: tf.Tensor) -> tf.Tensor:
    """[batch, S, S, 3] -> [batch, S, S] int32 uniform LBP code (0..8 uniform patterns, 9 the rest).

    Each pixel's 8 neighbours are compared with it (a neighbour is a 1 unless
    darker by more than LBP_TOLERANCE); a pattern with at most two 0/1
    transitions around the circle is "uniform" and coded by its number of ones
    (rotation-invariant), like skimage's `local_binary_pattern(method="uniform")`
    but on the pixel grid (skimage interpolates the diagonal neighbours on a
    circle) and with the tolerance.
    """
    grey = tf.tensordot(images, tf.constant([0.2125, 0.7154, 0.0721]), axes=1)
    padded = tf.pad(grey, [[0, 0], [1, 1], [1, 1]], mode="SYMMETRIC")
    size = tf.shape(grey)[1]
    circle = ((0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0), (0, 0))  # around the centre (1, 1)
    bits = tf.stack([tf.cast(padded[:, r:r + size, c:c + size] >= grey - LBP_TOLERANCE, tf.int32)
                     for r, c in circle], axis=-1)
    previous = tf.concat([bits[..., -1:], bits[..., :-1]], axis=-1)  # not tf.roll: TFLite has no Roll
    transitions = tf.reduce_sum(tf.abs(bits - previous), axis=-1)
    return tf.where(transitions <= 2, tf.reduce_sum(bits, axis=-1), LBP_SIZE - 1)


def _joint_bin(unit_values: tf.Tensor, bins) -> tf.Tensor:
    """[..., 3] values in [0, 1] (outside: clipped to the end bins) -> [...] int32 bin of a joint 3-D histogram."""
    limits = tf.constant(bins, tf.float32)
    index = tf.cast(tf.clip_by_value(tf.floor(unit_values * limits), 0.0, limits - 1), tf.int32)
    return (index[..., 0] * bins[1] + index[..., 1]) * bins[2] + index[..., 2]


def _histogram_picture(images: tf.Tensor) -> tf.Tensor:
    """Pictures larger than HISTOGRAM_SIZE scaled down to it: a box filter by the whole factor, then bilinear.

    Not an antialiased resize (ScaleAndTranslate): the edge models compute the
    histogram too, and TFLite has average pooling and bilinear resizing only.
    """
    side = images.shape[1]
    if side is None or side <= HISTOGRAM_SIZE:
        return images
    factor = side // HISTOGRAM_SIZE
    if factor > 1:
        images = tf.nn.avg_pool2d(images, factor, factor, "VALID")
    return tf.image.resize(images, [HISTOGRAM_SIZE, HISTOGRAM_SIZE])


def colour_histogram(images: tf.Tensor) -> tf.Tensor:
    """[batch, S, S, 3] RGB in [0, 1] -> [batch, COLOUR_FEATURE_SIZE]: HSV, RGB, CIELAB and LBP histograms.

    Colour is most of what tells gem varieties apart, and a small network
    trained on a few thousand photos learns it slowly from pixels; a histogram
    hands it over directly. Pixels near the centre (where the stone usually
    is) weigh more than the background. Square roots of the frequencies
    (Hellinger) keep a large background bin from drowning the rest. The parts
    come in the order of COLOUR_PARTS; each sums to 1 in squares. Pictures
    larger than HISTOGRAM_SIZE are scaled down to it first.
    """
    images = _histogram_picture(images)
    hsv_bin = _joint_bin(rgb_to_hsv(images), (contract.HUE_BINS, SATURATION_BINS, VALUE_BINS))
    rgb_bin = _joint_bin(images, (RGB_BINS,) * 3)
    lab = rgb_to_lab(images)
    lab_unit = tf.stack([lab[..., 0] / 100.0, (lab[..., 1] + AB_RANGE) / (2 * AB_RANGE),
                         (lab[..., 2] + AB_RANGE) / (2 * AB_RANGE)], axis=-1)
    lab_bin = _joint_bin(lab_unit, (LIGHTNESS_BINS, AB_BINS, AB_BINS))
    batch, size = tf.shape(images)[0], tf.shape(images)[1]
    coords = tf.linspace(-1.0, 1.0, size)
    weight = tf.exp(-(coords[:, tf.newaxis] ** 2 + coords[tf.newaxis, :] ** 2) / 0.5)  # Gaussian, sigma 0.5
    weight = tf.broadcast_to(weight, tf.shape(hsv_bin))
    photo = tf.range(batch)[:, tf.newaxis, tf.newaxis]

    def histogram(bin_index, depth):
        # A segment sum per (photo, bin): 4x faster than summing one-hot vectors,
        # which matters where the model recomputes histograms during training.
        counts = tf.math.unsorted_segment_sum(weight, photo * depth + bin_index, batch * depth)
        counts = tf.reshape(counts, [batch, depth])
        return tf.sqrt(counts / tf.reduce_sum(counts, axis=1, keepdims=True))

    return tf.concat([histogram(hsv_bin, HSV_SIZE), histogram(rgb_bin, RGB_SIZE), histogram(lab_bin, LAB_SIZE),
                      histogram(uniform_lbp(images), LBP_SIZE)], axis=1)


def model_inputs(image_bytes: tf.Tensor, image_size: int) -> dict:
    """Encoded photos [B] -> what the model takes: the picture and its colour histogram."""
    images = decode_and_resize(image_bytes, image_size)
    return {contract.IMAGE_XF: images, contract.COLOUR_XF: colour_histogram(images)}


def preprocessing_fn(inputs, custom_config):
    """tf.Transform preprocessing: raw features -> model features and label ids."""
    image_size = int(custom_config.get("image_size", DEFAULT_IMAGE_SIZE))
    outputs = model_inputs(_flatten(inputs[contract.IMAGE_KEY]), image_size)
    # Label ids come from vocabularies computed on the train split; the
    # vocabulary files travel with the transform graph, so the exported model
    # can turn ids back into names.
    outputs[contract.LABEL_XF] = tft.compute_and_apply_vocabulary(
        _flatten(inputs[contract.LABEL_KEY]), vocab_filename=contract.LABEL_VOCAB)
    outputs[contract.FAMILY_XF] = tft.compute_and_apply_vocabulary(
        _flatten(inputs[contract.FAMILY_KEY]), vocab_filename=contract.FAMILY_VOCAB)
    return outputs
