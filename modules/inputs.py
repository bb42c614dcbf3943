"""What the Trainer reads: each split's examples in one order, through the Transform graph, and facts about them.

Reads the raw examples and applies the Transform graph in the input pipeline
(Transform runs with `materialize=False`): decoding a few thousand JPEGs per
epoch is cheap, while materialised float images would take gigabytes on disk.
The decoded images are cached in memory after the first epoch.
"""
import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import hashlib  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gemstone import contract  # noqa: E402


def content_ordered(file_patterns: list) -> tf.data.Dataset:
    """A split's serialized tf.Examples, ordered by a hash of what the model reads from each (_content_key).

    Beam writes a split's examples in no fixed order (two runs of the same pipeline wrote the
    demo's test split in two orders), and the Trainer's augmented views, batches and shuffling
    follow the order the photos come in, so the same photos in another order make another model
    (fresh clones of nearly the same code pushed demo models at 0.891, 0.913 and 0.935 test
    top-1). A hash order is the same every time and mixes the varieties (the representative
    photos for TFLite are the first few). The split is held in memory as it is stored (gem88's
    training split: 47 MB of compressed photos).
    """
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no examples match {', '.join(file_patterns)}")
    records = [record for f in files for record in tf.data.TFRecordDataset(
        f, compression_type="GZIP" if f.endswith(".gz") else "").as_numpy_iterator()]
    records.sort(key=_content_key)
    return tf.data.Dataset.from_generator(lambda: iter(records), output_signature=tf.TensorSpec([], tf.string))


def _content_key(record: bytes) -> bytes:
    """sha256 of the example's photo, variety and family: not of the record's bytes, which are not canonical
    (a tf.Example's features are a map, and equal examples serialize in different orders)."""
    feature = tf.train.Example.FromString(record).features.feature
    digest = hashlib.sha256()
    for key in contract.EVAL_RAW_KEYS:
        for value in feature[key].bytes_list.value:
            digest.update(len(value).to_bytes(8, "little") + value)
    return digest.digest()


def input_dataset(file_patterns, tf_transform_output, batch_size, training, seed):
    """(features, labels) batches: raw examples (content_ordered) -> Transform graph -> model inputs."""
    raw_spec = tf_transform_output.raw_feature_spec()
    raw = content_ordered(file_patterns).batch(batch_size).map(
        lambda serialized: tf.io.parse_example(serialized, {k: raw_spec[k] for k in contract.EVAL_RAW_KEYS}))
    tft_layer = tf_transform_output.transform_features_layer()

    def to_model_io(raw_batch):
        xf = tft_layer(raw_batch)  # (parsed with EVAL_RAW_KEYS alone)
        return (
            {k: xf[k] for k in contract.MODEL_INPUT_KEYS},
            {contract.VARIETY_HEAD: xf[contract.LABEL_XF], contract.FAMILY_HEAD: xf[contract.FAMILY_XF]},
        )

    dataset = raw.map(to_model_io, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    # A label missing from the train-split vocabulary maps to -1: leave it out.
    dataset = dataset.filter(lambda x, y: y[contract.VARIETY_HEAD] >= 0).cache()
    if training:
        dataset = dataset.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def family_of_variety(variety: np.ndarray, family: np.ndarray, num_classes: int) -> np.ndarray:
    """Each variety's family id: the one its training photos carry (the most common, should they differ)."""
    pairs = np.zeros((num_classes, int(family.max()) + 1), np.int64)
    np.add.at(pairs, (variety, family), 1)
    return pairs.argmax(axis=1)


def transform_image_size(tf_transform_output) -> int:
    """Side of the images Transform makes (the model may resize them to a tuned size)."""
    return tf_transform_output.transformed_feature_spec()[contract.IMAGE_XF].shape[0]


def class_weights(counts):
    """Inverse class frequency, normalised to mean 1 over the photos."""
    weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)
