"""The checks that guard each conversion, on a few natural photos from scikit-image (no download).

BatchNormalization statistics: the per-channel mean of each BN layer's input
should follow its moving_mean (median correlation about 0.8 for InceptionV3
through `mixed5`, 0.97 for EfficientNet-Lite2, about 0.0 with a shuffled
mapping); below CHECK_MIN_CORRELATION the weights are refused. EfficientNet-Lite2's
ImageNet classifier must also name the espresso and the cat in the photos.
"""
from __future__ import annotations

import numpy as np

from gemstone.backbones.names import IMAGENET_UNTIL

# ImageNet classes EfficientNet-Lite2 must rank in its top 3 for two of the check photos.
CLASSIFIER_CHECK = {"coffee": (967, 968, 504), "chelsea": (281, 282, 283, 284, 285)}  # espresso/cup/mug, cats

CHECK_MIN_CORRELATION = 0.5
CHECK_IMAGE_SIZE = 224
CHECK_IMAGES = ("astronaut", "coffee", "chelsea", "rocket")  # skimage.data: natural photos shipped with the package


def build_inception_v3(size: int = CHECK_IMAGE_SIZE):
    import tf_keras as keras

    return keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(size, size, 3))


def check_images(size: int = CHECK_IMAGE_SIZE) -> np.ndarray:
    """A few natural photos from scikit-image, squashed to size x size, scaled to [-1, 1] (as Inception
    expects; EfficientNet-Lite's (RGB - 127) / 128 is the same within 0.4 %)."""
    import skimage.data
    from PIL import Image

    photos = [np.asarray(Image.fromarray(getattr(skimage.data, n)()).convert("RGB").resize((size, size)),
                         np.float32) for n in CHECK_IMAGES]
    return np.stack(photos) / 127.5 - 1.0


def bn_statistics_check(model, until: str = IMAGENET_UNTIL, seed: int = 0) -> dict:
    """Correlate, for each BatchNormalization layer, the per-channel mean of its input on
    natural photos with its moving_mean. Right weights: median about 0.8 through mixed5;
    misassigned ones: about 0 (the `shuffled_control` figure: moving means permuted)."""
    import tf_keras as keras

    names = [layer.name for layer in model.layers]
    end = names.index(until) if until in names else len(names)
    bns = [(i, layer) for i, layer in enumerate(model.layers) if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(model.input, [layer.input for _, layer in bns])
    outputs = probe(check_images(), training=False)
    rng = np.random.default_rng(seed)
    before, after, control = [], [], []
    for (i, layer), out in zip(bns, outputs):
        means = np.asarray(out).mean(axis=(0, 1, 2))
        moving = layer.moving_mean.numpy()
        r = float(np.corrcoef(means, moving)[0, 1])
        (before if i < end else after).append(r)
        if i < end:
            control.append(float(np.corrcoef(means, rng.permutation(moving))[0, 1]))
    median = float(np.nanmedian(before)) if before else float("nan")
    return {
        "what": "per BatchNormalization layer: correlation of its input's per-channel mean on natural photos "
                "with its moving_mean",
        "images": [f"skimage.data.{n}" for n in CHECK_IMAGES],
        "image_size": CHECK_IMAGE_SIZE,
        "bn_layers_through": until,
        "bn_layers": len(before),
        "median_correlation": round(median, 4),
        "min_correlation": round(float(np.nanmin(before)), 4) if before else None,
        "median_correlation_above": round(float(np.nanmedian(after)), 4) if after else None,
        "shuffled_control": round(float(np.nanmedian(control)), 4) if control else None,
        "threshold": CHECK_MIN_CORRELATION,
        "passed": bool(median >= CHECK_MIN_CORRELATION),
    }


def classifier_check(model) -> dict:
    """EfficientNet-Lite2 with its ImageNet classifier must rank the expected classes in its top 3
    for scikit-image's coffee (espresso, cup, mug) and chelsea (a cat)."""
    # Called directly: four photos need no tf.function. predict() traced one, and without
    # modules/keras2 (the fetch does not build models there) that took 28 s of every fetch.
    logits = np.asarray(model(check_images(), training=False))
    top3 = {name: [int(c) for c in np.argsort(-row)[:3]] for name, row in zip(CHECK_IMAGES, logits)}
    passed = all(set(top3[name]) & set(expected) for name, expected in CLASSIFIER_CHECK.items())
    return {"what": "ImageNet top-3 classes of the check photos", "top3": top3,
            "expected_any_of": {k: list(v) for k, v in CLASSIFIER_CHECK.items()}, "passed": bool(passed)}
