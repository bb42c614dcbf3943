"""Reference photos shipped with the model: a few typical training photos of each variety, to compare with.

A gemmologist checking an answer wants to see what the model learnt the named
variety looks like. The Trainer picks, per variety, the PER_VARIETY training
photos whose image features lie nearest that variety's mean (the most typical,
not outliers or near-duplicates of one photo), and writes them as small JPEG
thumbnails into the SavedModel's assets.extra/gallery/, with gallery.json
naming each variety's files. Serving shows them beside an answer.
"""
import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
from typing import Dict, List, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gemstone import contract  # noqa: E402
from modules import inputs  # noqa: E402

PER_VARIETY, THUMBNAIL_SIDE = 3, 160


def choose(features: np.ndarray, labels: np.ndarray, per_variety: int = PER_VARIETY) -> Dict[int, List[int]]:
    """{variety id: indices of its photos nearest its mean feature (cosine), nearest first}."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    chosen = {}
    for variety in np.unique(labels):
        members = np.flatnonzero(labels == variety)
        centre = unit[members].mean(axis=0)
        chosen[int(variety)] = [int(i) for i in members[np.argsort(-(unit[members] @ centre))][:per_variety]]
    return chosen


def _thumbnail(data: bytes) -> bytes:
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def write(model_dir: str, train_files: Sequence[str], vocabulary: Sequence[bytes], features: np.ndarray,
          labels: np.ndarray) -> Dict[str, List[str]]:
    """Writes the gallery of the training photos (read in the Trainer's content order, the order `features`
    and `labels` follow) into the model; returns {variety: [file names under the gallery folder]}."""
    chosen = choose(features, labels)
    wanted = {index: variety for variety, indices in chosen.items() for index in indices}
    index_of = {name: i for i, name in enumerate(vocabulary)}
    folder = os.path.join(model_dir, contract.MODEL_ASSETS_DIR, contract.GALLERY_DIR)
    tf.io.gfile.makedirs(folder)
    spec = {key: tf.io.FixedLenFeature([], tf.string) for key in (contract.IMAGE_KEY, contract.LABEL_KEY)}
    gallery: Dict[str, List[str]] = {}
    position = 0  # among the photos whose variety the vocabulary knows, as inputs.input_dataset counts them
    for record in inputs.content_ordered(train_files).as_numpy_iterator():
        example = {k: v.numpy() for k, v in tf.io.parse_single_example(record, spec).items()}
        if example[contract.LABEL_KEY] not in index_of:
            continue
        if position in wanted:
            name = f"{wanted[position]:03d}_{len(gallery.get(example[contract.LABEL_KEY].decode(), []))}.jpg"
            with tf.io.gfile.GFile(os.path.join(folder, name), "wb") as f:
                f.write(_thumbnail(example[contract.IMAGE_KEY]))
            gallery.setdefault(example[contract.LABEL_KEY].decode(), []).append(name)
        position += 1
    with tf.io.gfile.GFile(os.path.join(folder, contract.GALLERY_FILE), "w") as f:
        json.dump(gallery, f, indent=1)
    return gallery
