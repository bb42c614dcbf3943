"""Sanity checks for saliency maps (Adebayo et al., NeurIPS 2018): do the maps depend on what the model learnt?

  - model randomisation: the maps of the trained model against those of the same network with its head and
    top blocks re-initialised; a map that barely changes shows the photo's edges, not the model's reasons.
    Passes when the median Spearman rank correlation is under MAX_SPEARMAN;
  - deletion: blanking the most salient SHARE of the pixels (to the photo's mean colour, the colour
    histogram computed again) must lower the named variety's probability at least MIN_DELETION_RATIO times
    as much as blanking as many random pixels (medians over the photos). Scattered blank pixels are a
    texture of their own, which the model's texture histogram and network read: random ones lower the
    probability a lot (0.27 for the 88-class model at 20 %), more than blanking a region of the stone.
Used by the tests (the demo model) and bench/explain.py (the 88-class model).
"""
import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import contextlib  # noqa: E402
from typing import Dict, Tuple  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from gemstone import contract  # noqa: E402
from modules import model as model_lib  # noqa: E402
from modules import saliency, transform  # noqa: E402

MAX_SPEARMAN, MIN_DELETION_RATIO, SHARE = 0.5, 1.5, 0.2


@contextlib.contextmanager
def randomised(model: keras.Model, seed: int = 0):
    """The model with its head and top blocks re-initialised (kernels and biases), restored afterwards.

    An end-to-end model has no such parts: its last half of layers with weights are re-initialised."""
    saved = model.get_weights()
    parts = saliency.parts_of(model)
    if parts:
        layers = [layer for part in parts[1:] for layer in model_lib.leaf_layers(part)]
    else:
        with_weights = [layer for layer in model_lib.leaf_layers(model) if layer.weights]
        layers = with_weights[len(with_weights) // 2:]
    rng = np.random.default_rng(seed)
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            continue
        for weight in layer.trainable_weights:
            shape = weight.shape.as_list()
            if len(shape) > 1:  # a kernel: Glorot-uniform, as Keras initialises it
                fan_in, fan_out = int(np.prod(shape[:-1])), shape[-1]
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                weight.assign(rng.uniform(-limit, limit, shape).astype(np.float32))
            else:
                weight.assign(np.zeros(shape, np.float32))
    try:
        yield model
    finally:
        model.set_weights(saved)


def _probabilities(model, images, temperature):
    logits = model({contract.IMAGE_XF: images, contract.COLOUR_XF: transform.colour_histogram(images)},
                   training=False)[contract.VARIETY_HEAD]
    return tf.nn.softmax(logits / temperature).numpy()


def maps_and_classes(method: str, model, images: np.ndarray, backbone: str = "efficientnet_lite2", batch: int = 16,
                     temperature: float = 1.0):
    """The maps of `method` for the class the model names, and those classes."""
    maps, classes = [], []
    for start in range(0, len(images), batch):
        chunk = tf.constant(images[start:start + batch])
        colour = transform.colour_histogram(chunk)
        named = tf.argmax(model({contract.IMAGE_XF: chunk, contract.COLOUR_XF: colour}, training=False)[
            contract.VARIETY_HEAD], axis=1, output_type=tf.int32)
        maps.append(saliency.saliency(method, model, chunk, colour, named, backbone, temperature).numpy())
        classes.append(named.numpy())
    return np.concatenate(maps), np.concatenate(classes)


def spearman(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per photo, the Spearman rank correlation of two maps (a constant map correlates 0)."""
    from scipy.stats import spearmanr

    values = []
    for a, b in zip(first.reshape(len(first), -1), second.reshape(len(second), -1)):
        rho = spearmanr(a, b).correlation if a.std() > 0 and b.std() > 0 else 0.0
        values.append(0.0 if np.isnan(rho) else rho)
    return np.array(values)


def blanked(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The photos with the masked pixels set to each photo's mean colour."""
    mean = images.mean(axis=(1, 2), keepdims=True)
    return np.where(masks[..., None], mean, images).astype(np.float32)


def top_pixels(maps: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Masks of the `share` most salient pixels of each map (ties broken at random)."""
    flat = maps.reshape(len(maps), -1) + rng.uniform(0, 1e-6, (len(maps), maps[0].size))
    order = np.argsort(-flat, axis=1)[:, :int(round(share * flat.shape[1]))]
    masks = np.zeros(flat.shape, bool)
    np.put_along_axis(masks, order, True, axis=1)
    return masks.reshape(maps.shape)


def random_pixels(shape, share: float, rng: np.random.Generator) -> np.ndarray:
    """As many pixels as top_pixels blanks, chosen at random."""
    return top_pixels(rng.uniform(size=shape), share, rng)


def named_probability(model, images: np.ndarray, classes: np.ndarray, temperature: float = 1.0,
                      batch: int = 16) -> np.ndarray:
    """Per photo, the (calibrated) probability the model gives the class in `classes`."""
    probabilities = np.concatenate([_probabilities(model, tf.constant(images[s:s + batch]), temperature)
                                    for s in range(0, len(images), batch)])
    return probabilities[np.arange(len(images)), classes]


def deletion_drops(model, images: np.ndarray, maps: np.ndarray, classes: np.ndarray, temperature: float,
                   rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Per photo, how far the named class's probability falls when the SHARE most salient pixels of its map are
    blanked, and when as many random pixels are."""
    before = named_probability(model, images, classes, temperature)
    salient = before - named_probability(model, blanked(images, top_pixels(maps, SHARE, rng)), classes, temperature)
    scattered = before - named_probability(model, blanked(images, random_pixels(maps.shape, SHARE, rng)), classes,
                                           temperature)
    return salient, scattered


def deletion_ratio(salient_drop: np.ndarray, random_drop: np.ndarray) -> float:
    """The median fall when the salient pixels are blanked over that when random ones are (passes at
    MIN_DELETION_RATIO or more)."""
    return float(np.median(salient_drop) / max(np.median(random_drop), 1e-6))


def check(method: str, model, images: np.ndarray, temperature: float = 1.0, backbone: str = "efficientnet_lite2",
          seed: int = 0) -> Dict[str, float]:
    """Both checks of one method on `images` ([n, S, S, 3] in [0, 1]): the figures and whether each passed."""
    rng = np.random.default_rng(seed)
    maps, classes = maps_and_classes(method, model, images, backbone, temperature=temperature)
    with randomised(model, seed):
        random_maps, _ = maps_and_classes(method, model, images, backbone, temperature=temperature)
    rho = spearman(maps, random_maps)
    salient_drop, random_drop = deletion_drops(model, images, maps, classes, temperature, rng)
    ratio = deletion_ratio(salient_drop, random_drop)
    return {"method": method, "photos": int(len(images)), "spearman_median": round(float(np.median(rho)), 3),
            "randomisation_passed": bool(np.median(rho) < MAX_SPEARMAN),
            "deletion_salient_median": round(float(np.median(salient_drop)), 4),
            "deletion_random_median": round(float(np.median(random_drop)), 4),
            "deletion_ratio": round(ratio, 2), "deletion_passed": bool(ratio >= MIN_DELETION_RATIO)}
