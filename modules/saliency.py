"""Where the model looked: a saliency map of each photo for the class it named.

Two methods, measured side by side with the sanity checks of modules/saliency_checks.py (bench/explain.py):
  - Grad-CAM (Selvaraju et al., ICCV 2017) on a feature map of the pretrained network: the map's channels
    weighted by the average gradient of the named class's logit, rectified. `grad_cam` takes the map that
    enters the fine-tuned top blocks (EfficientNet-Lite2's block14, 14x14 at 224 px), through which every
    path to the answer but the lowest tap and the colour histogram runs; `grad_cam_top` the last map
    (top_relu, 7x7), as in the paper;
  - SmoothGrad (Smilkov et al., 2017): the gradient of the class's calibrated log-probability with respect
    to the pixels, averaged over noisy copies of the photo, then its magnitude; any model (the end-to-end ones
    have no pretrained map);
  - both, multiplied pixel by pixel (`grad_cam_smooth_grad`, after Guided Grad-CAM).
Each returns [B, S, S] in [0, 1] (1: where the answer depends most), S the side the model reads; the
exported `explain` signature (modules/export.py) resizes it to the photo's aspect ratio.
"""
import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from gemstone import contract  # noqa: E402
from modules import model as model_lib  # noqa: E402

GRAD_CAM, GRAD_CAM_TOP, SMOOTH_GRAD, GUIDED = "grad_cam", "grad_cam_top", "smooth_grad", "grad_cam_smooth_grad"
METHODS = (GRAD_CAM, GRAD_CAM_TOP, SMOOTH_GRAD, GUIDED)
ANY_MODEL_METHODS = (SMOOTH_GRAD,)  # the others need the pretrained model's parts
# What each map is, in the words of the model card (the Trainer records the method with the model).
SUMMARIES = {
    GRAD_CAM: "Grad-CAM on the 14x14 feature map that enters the network's top blocks",
    GRAD_CAM_TOP: "Grad-CAM on the network's last 7x7 feature map",
    SMOOTH_GRAD: "SmoothGrad: the gradient of the named variety's calibrated log-probability with respect to "
                 "the pixels, averaged over noisy copies of the photo",
    GUIDED: "Grad-CAM on the 14x14 feature map entering the top blocks, times SmoothGrad",
}
SMOOTH_GRAD_SAMPLES, SMOOTH_GRAD_NOISE = 8, 0.05  # copies, and noise sigma as a share of the pixel range
TOP_MAP = {"efficientnet_lite2": "top_relu", "inception_v3": "mixed5"}


def parts_of(model: keras.Model):
    """(trunk, top, head) of a pretrained model as the Trainer builds it (model.build_transfer_model), or None."""
    names = {layer.name for layer in model.layers}
    if not {model_lib.TRUNK_LAYER, model_lib.TOP_LAYER, model_lib.HEAD_LAYER} <= names:
        return None
    return tuple(model.get_layer(name) for name in (model_lib.TRUNK_LAYER, model_lib.TOP_LAYER, model_lib.HEAD_LAYER))


def default_method(model: keras.Model) -> str:
    """SmoothGrad, for every model: on the demo model and on the 88 classes it passes both sanity checks,
    where the Grad-CAM maps fail deletion (bench/HISTORY.md has the figures)."""
    return SMOOTH_GRAD


def _normalised(maps):
    """Each map scaled to [0, 1] by its own maximum (an all-zero map stays zero)."""
    peak = tf.reduce_max(maps, axis=[1, 2], keepdims=True)
    return tf.math.divide_no_nan(maps, peak)


def _of_class(scores, class_ids):
    """Each photo's score (logit or log-probability) for its class in `class_ids`."""
    return tf.gather(scores, class_ids, batch_dims=1)


def _cam(feature_map, gradients, side: int):
    weights = tf.reduce_mean(gradients, axis=[1, 2], keepdims=True)  # [B, 1, 1, C]
    cam = tf.nn.relu(tf.reduce_sum(feature_map * weights, axis=-1, keepdims=True))
    return _normalised(tf.image.resize(cam, [side, side], method="bilinear")[..., 0])


def grad_cam(model: keras.Model, images, colour, class_ids):
    """Grad-CAM on the map entering the top blocks (the trunk's cut)."""
    trunk, top, head = parts_of(model)
    cut_map, low = trunk(images, training=False)
    with tf.GradientTape() as tape:
        tape.watch(cut_map)
        high = top(cut_map, training=False)
        logits = head({model_lib.FEATURES_INPUT: tf.concat([low, high], axis=1), contract.COLOUR_XF: colour},
                      training=False)[contract.VARIETY_HEAD]
        score = _of_class(logits, class_ids)
    return _cam(cut_map, tape.gradient(score, cut_map), images.shape[1])


def _top_with_map(top: keras.Model, backbone_map: str) -> keras.Model:
    """The top blocks, also answering with their last feature map."""
    return keras.Model(top.input, [top.output, top.get_layer(backbone_map).get_output_at(-1)])


def grad_cam_top(model: keras.Model, images, colour, class_ids, backbone: str = "efficientnet_lite2"):
    """Grad-CAM on the network's last feature map, as Selvaraju et al. use it."""
    trunk, top, head = parts_of(model)
    cut_map, low = trunk(images, training=False)
    with tf.GradientTape() as tape:
        high, last_map = _top_with_map(top, TOP_MAP[backbone])(cut_map, training=False)
        logits = head({model_lib.FEATURES_INPUT: tf.concat([low, high], axis=1), contract.COLOUR_XF: colour},
                      training=False)[contract.VARIETY_HEAD]
        score = _of_class(logits, class_ids)
    return _cam(last_map, tape.gradient(score, last_map), images.shape[1])


def smooth_grad(model: keras.Model, images, colour, class_ids, temperature: float = 1.0,
                samples: int = SMOOTH_GRAD_SAMPLES, noise: float = SMOOTH_GRAD_NOISE, seed: int = 0):
    """SmoothGrad: the gradient of the named class's log-probability (at the calibration's `temperature`) with
    respect to the pixels, averaged over noisy copies of the photo, then its magnitude (largest over the
    colour channels).

    The signed gradients are averaged, as Smilkov et al. do: what flips sign from one noisy copy to the
    next (the photo's edges, to which the pretrained layers answer whatever the head) cancels, where an
    average of magnitudes kept it and a network with a random head drew much the same map. The
    log-probability weighs the named class against its rivals, as the confidence people read does; a
    logit's gradient also holds what every class shares."""
    total = tf.zeros(tf.shape(images))
    for sample in range(samples):
        noisy = images + tf.random.stateless_normal(tf.shape(images), [seed, sample], stddev=noise)
        with tf.GradientTape() as tape:
            tape.watch(noisy)
            logits = model({contract.IMAGE_XF: noisy, contract.COLOUR_XF: colour}, training=False)
            score = _of_class(tf.nn.log_softmax(logits[contract.VARIETY_HEAD] / temperature), class_ids)
        total += tape.gradient(score, noisy)
    return _normalised(tf.reduce_max(tf.abs(total), axis=-1))


def grad_cam_smooth_grad(model: keras.Model, images, colour, class_ids, temperature: float = 1.0):
    """Grad-CAM times SmoothGrad, pixel by pixel (as Guided Grad-CAM combines Grad-CAM with the pixels'
    gradients): where the named variety's evidence lies, at the pixels the answer is most sensitive to."""
    return _normalised(grad_cam(model, images, colour, class_ids) *
                       smooth_grad(model, images, colour, class_ids, temperature))


def saliency(method: str, model: keras.Model, images, colour, class_ids, backbone: str = "efficientnet_lite2",
             temperature: float = 1.0):
    """[B, S, S] map of `method` (METHODS) for `class_ids` of `images` ([B, S, S, 3] in [0, 1]) and `colour`;
    `temperature` is the calibration's, for the maps of the class's probability."""
    if method == GRAD_CAM:
        return grad_cam(model, images, colour, class_ids)
    if method == GRAD_CAM_TOP:
        return grad_cam_top(model, images, colour, class_ids, backbone)
    if method == SMOOTH_GRAD:
        return smooth_grad(model, images, colour, class_ids, temperature)
    if method == GUIDED:
        return grad_cam_smooth_grad(model, images, colour, class_ids, temperature)
    raise ValueError(f"unknown saliency method {method!r}: expected one of {', '.join(METHODS)}")
