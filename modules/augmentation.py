"""Training-only augmentation: photo conditions a jeweller's camera meets, never a hue shift.

Colour is what tells a ruby from a sapphire, so nothing here moves hue: geometry, a
small zoom, brightness, contrast, a warmer or cooler light, blur, sensor noise. Every
layer is a no-op at inference. Registered for Keras' serialisation: a saved model's
config names them.
"""
import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from modules import transform  # noqa: E402


def _white_balance(shift: tf.Tensor) -> tf.Tensor:
    """[batch, 1, 1, 1] shift -> [batch, 1, 1, 3] RGB gains: red up and blue down by `shift` (or the reverse)."""
    return tf.concat([1.0 + shift, tf.ones_like(shift), 1.0 - shift], axis=-1)


@keras.saving.register_keras_serializable(package="gemstone")
class RandomColourTemperature(keras.layers.Layer):
    """Warmer or cooler light: red gain up and blue gain down by the same small factor, or the reverse.

    Unlike a hue rotation, which turns a ruby into a sapphire, this is what a
    different lamp does; `factor` 0.05 keeps every stone's hue within a few degrees.
    """

    def __init__(self, factor: float = 0.05, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.factor, self.seed = factor, seed

    def call(self, images, training=None):
        if not training:
            return images
        shift = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], -self.factor, self.factor, seed=self.seed)
        return tf.clip_by_value(images * _white_balance(shift), 0.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "seed": self.seed}


def _gaussian_blur(images: tf.Tensor, sigma: float) -> tf.Tensor:
    """[batch, S, S, 3] blurred by a Gaussian of `sigma` pixels (separable, edges reflected).

    Each channel is blurred as a one-channel picture by a plain convolution, not by a depthwise
    one: oneDNN's depthwise convolution crashes (segmentation fault) on AVX-512 CPUs when the
    kernel is 15 or more pixels wide, as it is at 224 px (2.4 % of the side: 33 taps).
    """
    radius = max(1, int(round(3 * sigma)))
    taps = tf.exp(-tf.square(tf.range(-radius, radius + 1, dtype=tf.float32)) / (2.0 * sigma ** 2))
    taps = taps / tf.reduce_sum(taps)
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    shape = tf.shape(padded)
    planes = tf.reshape(tf.transpose(padded, [0, 3, 1, 2]), [-1, shape[1], shape[2], 1])
    planes = tf.nn.conv2d(planes, tf.reshape(taps, [-1, 1, 1, 1]), 1, "VALID")
    planes = tf.nn.conv2d(planes, tf.reshape(taps, [1, -1, 1, 1]), 1, "VALID")
    blurred = tf.reshape(planes, [shape[0], shape[3], shape[1] - 2 * radius, shape[2] - 2 * radius])
    return tf.transpose(blurred, [0, 2, 3, 1])


@keras.saving.register_keras_serializable(package="gemstone")
class RandomPhotoConditions(keras.layers.Layer):
    """Training only: photos as if taken under another lamp, out of focus or noisy; histogram recomputed.

    Takes and returns (image, colour histogram). The histogram comes from
    Transform, computed on the photo as taken, so augmenting the image alone
    never teaches the colour branch how a photo can vary. Here each photo,
    independently:
      - under another lamp (share `lighting_rate`): a brightness gain
        (`min_gain`..1/`min_gain`, log-uniform) and a white-balance change (red
        up and blue down by up to `warmth`, or the reverse). Not a hue rotation:
        a ruby stays red;
      - out of focus (`blur_rate`): a Gaussian blur of 0.8, 1.6 or 2.4 % of the side;
      - with sensor noise (`noise_rate`): Gaussian, sigma up to `noise` of the range,
    and the histogram of every changed photo is computed again. Measured on the
    88-class photos: about twice the accuracy under x0.6 brightness or 15 %
    warmer light, and blur and noise cost little (without them, the texture
    histogram made a blurred photo cost a third of the accuracy).
    `histogram=False`: the histogram is passed through (a model that does not
    use it need not pay for it).
    """

    BLUR_SHARES = (0.008, 0.016, 0.024)  # sigma, as a share of the image side

    def __init__(self, min_gain: float = 0.6, warmth: float = 0.15, lighting_rate: float = 0.5,
                 blur_rate: float = 0.15, noise: float = 0.03, noise_rate: float = 0.15, histogram: bool = True,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.min_gain, self.warmth, self.lighting_rate = min_gain, warmth, lighting_rate
        self.blur_rate, self.noise, self.noise_rate = blur_rate, noise, noise_rate
        self.histogram, self.seed = histogram, seed

    def _uniform(self, shape, draw: int, low=0.0, high=1.0):
        # Each draw its own seed: draws with the same op seed would be the same
        # numbers (then only darker photos would be picked, and always cooler).
        return tf.random.uniform(shape, low, high, seed=None if self.seed is None else self.seed + draw)

    def call(self, inputs, training=None):
        image, colour = inputs
        if not training:
            return image, colour
        batch, side = tf.shape(image)[0], image.shape[1]
        pixel = [batch, 1, 1, 1]

        def pick(rate, draw):
            return self._uniform(pixel, draw) < rate

        log_gain = tf.math.log(self.min_gain)
        gain = tf.exp(self._uniform(pixel, 0, log_gain, -log_gain))
        lit = image * gain * _white_balance(self._uniform(pixel, 1, -self.warmth, self.warmth))
        changed = pick(self.lighting_rate, 2)
        result = tf.where(changed, lit, image)
        if side is not None and self.blur_rate > 0:
            level = self._uniform(pixel, 3)
            blur = pick(self.blur_rate, 4)
            for i, share in enumerate(self.BLUR_SHARES):
                chosen = blur & (level >= i / len(self.BLUR_SHARES)) & (level < (i + 1) / len(self.BLUR_SHARES))
                # Only the photos picked are blurred: at 224 px, blurring the whole batch at
                # every level took longer than the pretrained network's pass.
                index = tf.where(tf.reshape(chosen, [-1]))
                result = tf.cond(  # (padding an empty batch fails)
                    tf.size(index) > 0,
                    lambda: tf.tensor_scatter_nd_update(
                        result, index, _gaussian_blur(tf.gather_nd(result, index), share * side)),
                    lambda: result)
            changed = changed | blur
        sigma = self._uniform(pixel, 5, 0.0, self.noise)
        noise = pick(self.noise_rate, 6)
        noisy = result + sigma * tf.random.normal(tf.shape(image), seed=None if self.seed is None else self.seed + 7)
        result, changed = tf.where(noise, noisy, result), changed | noise
        result = tf.clip_by_value(result, 0.0, 1.0)
        if self.histogram:
            colour = tf.where(tf.reshape(changed, [-1, 1]), transform.colour_histogram(result), colour)
        return result, colour

    def get_config(self):
        return {**super().get_config(), "min_gain": self.min_gain, "warmth": self.warmth,
                "lighting_rate": self.lighting_rate, "blur_rate": self.blur_rate, "noise": self.noise,
                "noise_rate": self.noise_rate, "histogram": self.histogram, "seed": self.seed}


def augmentation(seed: int = 0) -> keras.Sequential:
    """Training-only augmentation (these layers are no-ops at inference).

    Geometry, a small crop/zoom, brightness, contrast and colour temperature.
    Never a hue shift: colour is what tells a ruby from a sapphire.
    """
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
        keras.layers.RandomRotation(0.1, fill_mode="reflect", seed=seed),
        keras.layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed),
        keras.layers.RandomBrightness(0.1, value_range=(0.0, 1.0), seed=seed),
        keras.layers.RandomContrast(0.1, seed=seed),
        RandomColourTemperature(0.05, seed=seed),
    ], name="augmentation")
