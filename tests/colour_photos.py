"""Tiny pictures a model can learn in a few steps: the label is the dominant colour (red 0, blue 1)."""
import numpy as np
import tensorflow as tf

from gemstone import contract
from modules import transform


def colour_photos(n: int, size: int, seed: int = 0):
    """(features, labels) of n such pictures as the Trainer's batches give them, the family label the variety's."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.uniform(0.0, 0.3, (n, size, size, 3)).astype(np.float32)
    images[labels == 0, ..., 0] += 0.6
    images[labels == 1, ..., 2] += 0.6
    x = {contract.IMAGE_XF: images, contract.COLOUR_XF: transform.colour_histogram(tf.constant(images)).numpy()}
    y = {contract.VARIETY_HEAD: labels, contract.FAMILY_HEAD: labels}
    return x, y
