"""A small SavedModel that follows the export contract, made in seconds without running the pipeline.

The applications (serving, batch inference) and the benchmarks only need a model
whose `serving_default` takes encoded photos and answers with the contract's
prediction record (gemstone.contract). This one is made from the project's own
parts, so it cannot drift from what the Trainer exports: the Transform
`preprocessing_fn` (analysed with tf.Transform on Beam), the from-scratch model
of `modules/model.py` (untrained) and `modules/export.py`'s signatures.
"""
from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

IMAGE_SIZE = 32
REVIEW_THRESHOLD = 0.6


def rows_of(data_dir: Path):
    """The manifest rows of a demo-data folder: path, label, family, stone_id."""
    with open(data_dir / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def transform_graph(rows, data_dir: Path, graph_dir: Path, image_size: int = IMAGE_SIZE) -> None:
    """The Transform graph of `preprocessing_fn` analysed on the photos of `rows`, with the raw schema beside it."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from gemstone import contract
    from modules import transform

    # Shapes as in the curated schema: one value per example.
    spec = {key: tf.io.FixedLenFeature([1], tf.string) for key in contract.EVAL_RAW_KEYS}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    raw = [{contract.IMAGE_KEY: [(data_dir / r["path"]).read_bytes()], contract.LABEL_KEY: [r["label"].encode()],
            contract.FAMILY_KEY: [r["family"].encode()]} for r in rows]
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        transform_fn = ((p | beam.Create(raw), metadata)
                        | tft_beam.AnalyzeDataset(lambda x: transform.preprocessing_fn(x, {"image_size": image_size})))
        _ = transform_fn | tft_beam.WriteTransformFn(str(graph_dir))
    # The raw schema beside the graph, where TFX's Transform leaves it (the signatures read it).
    metadata_io.write_metadata(metadata, str(graph_dir / tft.TFTransformOutput.RAW_METADATA_DIR))


def build(data_dir: Path, out_dir: Path, open_set: bool = True) -> Path:
    """Writes `out_dir/1/` (a TF Serving version folder) from the demo photos in `data_dir`; returns it.

    `open_set`: with the open-set outputs (modules/novelty.py, fitted on the same photos), as the Trainer
    exports; False makes a model as they were exported before them.
    """
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft
    import tf_keras as keras

    from gemstone import contract
    from modules import calibration, export, novelty, transform
    from modules import model as model_lib

    rows = rows_of(data_dir)
    graph_dir = out_dir / "transform_graph"
    transform_graph(rows, data_dir, graph_dir)
    output = tft.TFTransformOutput(str(graph_dir))
    varieties = output.vocabulary_by_name(contract.LABEL_VOCAB)
    families = output.vocabulary_by_name(contract.FAMILY_VOCAB)
    family_of = {r["label"].encode(): families.index(r["family"].encode()) for r in rows}
    family_of_variety = np.array([family_of[v] for v in varieties])

    # Untrained (seeded) weights: the answers depend on the photo, which is all the contract's readers need;
    # training, even for a few steps, took most of this fixture's time.
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(IMAGE_SIZE, len(varieties), len(families), transform.COLOUR_FEATURE_SIZE)
    layer = output.transform_features_layer()
    xf = layer({contract.IMAGE_KEY: tf.constant([[(data_dir / r["path"]).read_bytes()] for r in rows]),
                contract.LABEL_KEY: tf.constant([[r["label"]] for r in rows]),
                contract.FAMILY_KEY: tf.constant([[r["family"]] for r in rows])})
    version = out_dir / "1"
    outputs = model_lib.with_image_features(model).predict({k: xf[k] for k in contract.MODEL_INPUT_KEYS}, verbose=0)
    logits, labels = outputs[contract.VARIETY_HEAD], xf[contract.LABEL_XF].numpy()
    fitted, novelty_report = None, None
    if open_set:
        features = outputs[model_lib.IMAGE_FEATURES]
        fitted, novelty_report = novelty.fit(features, labels, features, logits, (0, features.shape[1]),
                                             len(varieties), 1.0)
    signatures = export.make_signatures(model, output, REVIEW_THRESHOLD, 1.0, family_of_variety, fitted)
    export.save(model, signatures, str(version))
    report = calibration.report(logits, labels, REVIEW_THRESHOLD)
    os.makedirs(version / contract.MODEL_ASSETS_DIR, exist_ok=True)
    (version / contract.MODEL_ASSETS_DIR / contract.CALIBRATION_FILE).write_text(json.dumps(report))
    if novelty_report:
        (version / contract.MODEL_ASSETS_DIR / contract.NOVELTY_FILE).write_text(json.dumps(novelty_report))
    return version


def write_examples(rows, data_dir: Path, examples_dir: Path, splits=("train", "eval")) -> None:
    """An Examples artifact's folders (Split-<name>/*.gz) holding every photo in each split, as ImageExampleGen
    writes them (the keys the model reads; gzip TFRecords)."""
    import tensorflow as tf

    from gemstone import contract

    def feature(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    for split in splits:
        folder = examples_dir / f"Split-{split}"
        folder.mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(str(folder / "data.gz"), options="GZIP") as writer:
            for r in rows:
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    contract.IMAGE_KEY: feature((data_dir / r["path"]).read_bytes()),
                    contract.LABEL_KEY: feature(r["label"].encode()),
                    contract.FAMILY_KEY: feature(r["family"].encode())})).SerializeToString())
