"""TFX Trainer module: `run_fn` trains the model and exports it with its signatures.

Reads the raw examples and applies the Transform graph in the input pipeline
(Transform runs with `materialize=False`): decoding a few thousand JPEGs per
epoch is cheap, while materialised float images would take gigabytes on disk.
The decoded images are cached in memory after the first epoch.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json  # noqa: E402

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras as keras  # noqa: E402
from absl import logging  # noqa: E402
from tfx import v1 as tfx  # noqa: E402
from tfx_bsl.public import tfxio  # noqa: E402

import numpy as np  # noqa: E402

from modules import calibration, edge, export, features  # noqa: E402
from modules import model as model_lib  # noqa: E402

DEFAULTS = {"epochs": 12, "batch_size": 32, "learning_rate": 2e-3, "review_threshold": 0.6, "seed": 0,
            # "class_weight": rare classes weigh more in the loss; "none": every photo counts the same.
            "imbalance": "class_weight", "edge_models": True,
            # small_cnn, mobilenet_v2, mobilenet_v3_small, efficientnet_b0 or resnet50; weights: "", "imagenet"
            # (Keras' download) or a weights file. With weights, the backbone is fine-tuned progressively.
            "backbone": "small_cnn", "weights": "", "head_width": 128, "dropout": 0.3}
# Progressive fine-tuning of a pretrained backbone: (share of backbone layers trained from the top,
# learning-rate factor, share of the epochs). First the new head alone, then the top, then everything.
FINE_TUNE_STAGES = ((0.0, 1.0, 0.3), (0.3, 0.1, 0.35), (1.0, 0.01, 0.35))


def _dataset(fn_args, file_pattern, tf_transform_output, batch_size, training, seed):
    """(features, labels) batches: raw examples -> Transform graph -> model inputs."""
    raw = fn_args.data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=1, shuffle=False),
        tf_transform_output.raw_metadata.schema,
    )
    tft_layer = tf_transform_output.transform_features_layer()

    def to_model_io(raw_batch):
        xf = tft_layer({k: raw_batch[k] for k in features.EVAL_RAW_KEYS})
        return (
            {k: xf[k] for k in features.MODEL_INPUT_KEYS},
            {features.VARIETY_HEAD: xf[features.LABEL_XF], features.FAMILY_HEAD: xf[features.FAMILY_XF]},
        )

    dataset = raw.map(to_model_io, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    # A label missing from the train-split vocabulary maps to -1: leave it out.
    dataset = dataset.filter(lambda x, y: y[features.VARIETY_HEAD] >= 0).cache()
    if training:
        dataset = dataset.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def run_fn(fn_args: tfx.components.FnArgs):
    """Trains on the train split, validates on eval, exports the SavedModel."""
    config = {**DEFAULTS, **(fn_args.custom_config or {})}
    keras.utils.set_random_seed(int(config["seed"]))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    num_classes = tf_transform_output.vocabulary_size_by_name(features.LABEL_VOCAB)
    num_families = tf_transform_output.vocabulary_size_by_name(features.FAMILY_VOCAB)
    image_size = int(config["image_size"])
    logging.info("Training on %d classes, %d families, %dpx images.", num_classes, num_families, image_size)

    train = _dataset(fn_args, fn_args.train_files, tf_transform_output, config["batch_size"], True, config["seed"])
    val = _dataset(fn_args, fn_args.eval_files, tf_transform_output, config["batch_size"], False, config["seed"])

    colour_size = tf_transform_output.transformed_feature_spec()[features.COLOUR_XF].shape[-1]
    model = model_lib.build_model(image_size, num_classes, num_families, colour_size,
                                  learning_rate=config["learning_rate"], dropout=float(config["dropout"]),
                                  backbone_name=config["backbone"], weights=config["weights"] or None,
                                  head_width=int(config["head_width"]))
    fit_data = train
    if config["imbalance"] == "class_weight":
        weights = _class_weights(train, num_classes)
        logging.info("Class weights from %.2f to %.2f.", weights.min(), weights.max())
        fit_data = train.map(lambda x, y: (x, y, _sample_weights(y, weights)))
    history = _fit(model, fit_data, val, config, fn_args.model_run_dir)

    # Temperature scaling on the eval split, baked into the exported signatures.
    eval_inputs, eval_labels, eval_logits = _collect(model, val)
    review_threshold = float(config["review_threshold"])
    calibrated = calibration.report(eval_logits, eval_labels, review_threshold)
    logging.info("Calibration: T=%.2f, ECE %.3f -> %.3f on %d eval photos.", calibrated["temperature"],
                 calibrated["ece_before"], calibrated["ece_after"], calibrated["examples"])
    signatures = export.make_signatures(model, tf_transform_output, review_threshold, calibrated["temperature"])
    model.save(fn_args.serving_model_dir, save_format="tf", signatures=signatures)
    _write_json(os.path.join(fn_args.serving_model_dir, "assets.extra", "calibration.json"), calibrated)
    _write_json(os.path.join(fn_args.model_run_dir, "history.json"),
                {k: [float(v) for v in vs] for k, vs in history.items()})
    if config["edge_models"]:
        representative = next(iter(train.unbatch().batch(100)))[0][features.IMAGE_XF].numpy()
        report = edge.export(model, image_size, calibrated["temperature"], representative,
                             eval_inputs[features.IMAGE_XF][:200], fn_args.serving_model_dir)
        logging.info("Edge models: %s", json.dumps(report))


def _fit(model, train, val, config, log_dir):
    """Trains all at once (no pretrained weights) or in FINE_TUNE_STAGES (pretrained backbone); returns the history."""
    epochs, learning_rate = int(config["epochs"]), float(config["learning_rate"])
    stages = FINE_TUNE_STAGES if config["weights"] else ((1.0, 1.0, 1.0),)
    merged, done = {}, 0
    for number, (fraction, lr_factor, share) in enumerate(stages, start=1):
        stage_epochs = epochs - done if number == len(stages) else max(1, round(epochs * share))
        trainable = model_lib.set_trainable_top(model, fraction)
        model_lib.compile_model(model, learning_rate * lr_factor)
        logging.info("Stage %d: %d backbone layers train, learning rate %.2g, %d epochs.",
                     number, trainable, learning_rate * lr_factor, stage_epochs)
        callbacks = [
            keras.callbacks.TensorBoard(log_dir=os.path.join(log_dir, f"stage{number}")),
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=4, restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=2),
        ]
        history = model.fit(train, validation_data=val, initial_epoch=done, epochs=done + stage_epochs,
                            callbacks=callbacks, verbose=2)
        done += stage_epochs
        for key, values in history.history.items():
            merged.setdefault(key, []).extend(values)
    return merged


def _write_json(path, value):
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(value, f, indent=1)


def _class_weights(train, num_classes):
    """Inverse class frequency, normalised to mean 1 over the photos."""
    counts = np.zeros(num_classes)
    for _, labels in train:
        counts += np.bincount(labels[features.VARIETY_HEAD].numpy(), minlength=num_classes)
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def _sample_weights(labels, weights):
    w = tf.gather(tf.constant(weights), labels[features.VARIETY_HEAD])
    return {features.VARIETY_HEAD: w, features.FAMILY_HEAD: w}


def _collect(model, dataset):
    """Inputs, labels and variety logits of a whole (eval) dataset, as numpy."""
    inputs, labels, logits = {k: [] for k in features.MODEL_INPUT_KEYS}, [], []
    for x, y in dataset:
        for k in inputs:
            inputs[k].append(x[k].numpy())
        labels.append(y[features.VARIETY_HEAD].numpy())
        logits.append(model(x, training=False)[features.VARIETY_HEAD].numpy())
    return ({k: np.concatenate(v) for k, v in inputs.items()}, np.concatenate(labels), np.concatenate(logits))
