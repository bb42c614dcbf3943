"""TFX Trainer module: `run_fn` trains the model and exports it with its signatures; `tuner_fn` searches.

Reads the raw examples and applies the Transform graph in the input pipeline
(Transform runs with `materialize=False`): decoding a few thousand JPEGs per
epoch is cheap, while materialised float images would take gigabytes on disk.
The decoded images are cached in memory after the first epoch.

Two ways to train, by `backbone`:
  - `efficientnet_lite2` (default) or `inception_v3`: transfer learning from
    ImageNet's weights on cached frozen features, then fine-tuning of the top
    blocks, then the head again on the training and eval photos (modules/transfer.py);
  - `none` / `small_cnn` or a `keras.applications` backbone: end to end (`_fit`).
Both end the same way: temperature scaling on eval, the signatures of
modules/export.py, the edge (TFLite) models.
"""
import os

import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import hashlib  # noqa: E402
import json  # noqa: E402

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras as keras  # noqa: E402
from absl import logging  # noqa: E402
# (not tfx.v1, whose Google Cloud extensions take about 8 s to import: see pipeline/pipeline.py)
from tfx.components.trainer.fn_args_utils import FnArgs  # noqa: E402
from tfx.components.tuner.component import TunerFnResult  # noqa: E402

import math  # noqa: E402
from typing import NamedTuple, Optional  # noqa: E402

import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

from gemstone import contract  # noqa: E402
from modules import calibration, edge, export, novelty, transfer, whole_network  # noqa: E402
from modules import model as model_lib  # noqa: E402

DEFAULTS = {"epochs": 50, "batch_size": 32, "learning_rate": 2e-3, "review_threshold": 0.6, "seed": 0,
            # "class_weight": rare classes weigh more in the loss; "none": every photo counts the same.
            "imbalance": "class_weight", "edge_models": True,
            # The int8 TFLite model: "dynamic_range" (int8 weights) or "full_integer" (Edge TPU; modules/edge.py).
            "edge_int8": "dynamic_range",
            # efficientnet_lite2 or inception_v3 (transfer learning), none / small_cnn (from scratch), or
            # mobilenet_v2, mobilenet_v3_small, efficientnet_b0, resnet50 (end to end); weights: "" (random),
            # "imagenet" (Keras' download) or a no-top weights file (`gemstone backbone fetch` writes them).
            "backbone": model_lib.EFFICIENTNET_LITE2, "weights": "", "head_width": 1024,
            # Dropout before the end-to-end models' read-out (the Tuner searches it).
            "dropout": 0.3,
            # Pretrained backbones: dropout on the pooled features the image expert reads (after the 0.2 all
            # the head's inputs get). On gem88-r2's cached features (bench/head_variants, seeds 0-3), test
            # top-1 / top-3 / ECE, means: at 0.3 (the end-to-end value) 0.801 / 0.943 / 0.048, top-1 from
            # 0.784 to 0.827; at 0.5 0.807 / 0.949 / 0.047, from 0.799 to 0.814, top-3 higher on all 4 seeds.
            # At 0.7 (seeds 0 / 1) top-1 0.809 against 0.811 at 0.5, top-3 0.959 against 0.953.
            "image_expert_dropout": 0.5,
            # Pretrained head: the share of each label spread over all classes in its loss. Off: on gem88-r2's
            # cached features (seeds 0-3) 0.1 gave 0.802 / 0.948 / ECE 0.053 against 0.807 / 0.949 / 0.047.
            "label_smoothing": 0.0,
            # pretrained backbones: passes of the training photos through the frozen trunk (the first as they
            # are, the others augmented); `epochs` trains the head on frozen features, then
            # `fine_tune_epochs` the top blocks too, at learning_rate x fine_tune_learning_rate_factor
            # (0 epochs: the frozen-only ablation).
            "views": 3, "fine_tune_epochs": 6, "fine_tune_learning_rate_factor": 0.1,
            # What stage 2 fine-tunes: "top_blocks" (on the cached maps: the quick profile) or "whole_network"
            # (every layer, on a fresh view of each photo per epoch: the thorough profile, modules/whole_network.py)
            # with the head and top at whole_network_learning_rate, falling with depth to bottom_factor of it.
            "fine_tune_scope": "top_blocks", "whole_network_learning_rate": 1e-4,
            "whole_network_bottom_factor": 0.1, "whole_network_patience": 3,
            # Pretrained backbones: after calibration and the fine-tuning decision, the head learns again on
            # the training and eval photos together (transfer.fit's stage 3); False keeps eval held out.
            "refit_with_eval": True,
            # Pretrained backbones: pairs of experts in the head; more than one learn side by side and their
            # answers are averaged (an ensemble; model.ENSEMBLE_MEMBERS says why the default is one).
            "ensemble_members": model_lib.ENSEMBLE_MEMBERS,
            # False trains on the picture alone (the benchmark's ablation).
            "colour_features": True,
            # With pretrained weights: FINE_TUNE_STAGES (True) or everything at once (the ablation).
            "progressive_unfreezing": True,
            # Early stopping (the best weights are kept): epochs without a better eval loss (end-to-end
            # models) or eval accuracy (fine-tuning). The pretrained head's stage 1 runs all its epochs.
            "patience": 10,
            # The Tuner's trials: how many, and how many epochs each.
            "tuner_trials": 6, "tuner_epochs": 8}
TIMINGS_FILE = "timings.json"  # in the model run folder: seconds per stage of the Trainer
# What the Tuner searches (keras-tuner choices); the Trainer takes the best values over the config's.
SEARCH_SPACE = {"learning_rate": [1e-3, 2e-3, 4e-3], "head_width": [256, 512, 1024], "dropout": [0.2, 0.3, 0.5]}
# Progressive fine-tuning of a pretrained backbone: (share of backbone layers trained from the top,
# learning-rate factor, share of the epochs). First the new head alone, then the top, then everything.
FINE_TUNE_STAGES = ((0.0, 1.0, 0.3), (0.3, 0.1, 0.35), (1.0, 0.01, 0.35))


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


def run_fn(fn_args: FnArgs):
    """Trains on the train split, validates on eval, exports the SavedModel."""
    config = effective_config(fn_args)
    keras.utils.set_random_seed(int(config["seed"]))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    train_fn = _train_transfer if config["backbone"] in model_lib.TRANSFER_BACKBONES else _train_end_to_end
    stopwatch = transfer.Stopwatch()
    trained = train_fn(fn_args, tf_transform_output, config, stopwatch)

    # Temperature scaling on the eval split, baked into the exported signatures.
    review_threshold = float(config["review_threshold"])
    calibrated = calibration.report(trained.eval_logits, trained.eval_labels, review_threshold)
    logging.info("Calibration: T=%.2f, ECE %.3f -> %.3f on %d eval photos.", calibrated["temperature"],
                 calibrated["ece_before"], calibrated["ece_after"], calibrated["examples"])
    model = trained.model
    with stopwatch("novelty"):
        known = trained.known_photos
        fitted_novelty, novelty_report = novelty.fit(
            known.train_features, known.train_labels, known.eval_features, trained.eval_logits, known.columns,
            len(trained.family_of_variety), calibrated["temperature"])
    logging.info("Open set: %s of the eval photos flagged not a gemstone, %s an unfamiliar variety (%s either).",
                 *(f"{novelty_report['eval_flagged'][q]:.1%}" for q in contract.NOVELTY_QUESTIONS),
                 f"{novelty_report['eval_flagged_either']:.1%}")
    with stopwatch("export"):
        signatures = export.make_signatures(model, tf_transform_output, review_threshold, calibrated["temperature"],
                                            trained.family_of_variety, fitted_novelty)
        export.save(model, signatures, fn_args.serving_model_dir)
    assets = os.path.join(fn_args.serving_model_dir, contract.MODEL_ASSETS_DIR)
    _write_json(os.path.join(assets, contract.CALIBRATION_FILE), calibrated)
    _write_json(os.path.join(assets, contract.NOVELTY_FILE), novelty_report)
    _write_json(os.path.join(assets, contract.BACKBONE_FILE), _backbone_record(config, trained))
    _write_json(os.path.join(fn_args.model_run_dir, "history.json"),
                {k: [float(v) for v in vs] for k, vs in trained.history.items()})
    _write_json(os.path.join(fn_args.model_run_dir, "config.json"), config)
    if config["edge_models"]:
        with stopwatch("edge_models"):
            report = edge.export(model, _transform_image_size(tf_transform_output), calibrated["temperature"],
                                 trained.representative_images, trained.eval_images, fn_args.serving_model_dir,
                                 int8=config["edge_int8"], novelty=fitted_novelty)
        logging.info("Edge models: %s", json.dumps(report))
    logging.info("Trainer stages (s): %s", json.dumps(stopwatch.seconds))
    _write_json(os.path.join(fn_args.model_run_dir, TIMINGS_FILE), stopwatch.seconds)


class KnownPhotos(NamedTuple):
    """What the open-set scores are fitted on (modules/novelty.py): image features of the photos as they are."""
    train_features: np.ndarray  # [n, d] the model's image features (model.with_image_features) of training photos
    train_labels: np.ndarray  # [n] their variety ids
    eval_features: np.ndarray  # [m, d] of the eval photos, held out: the thresholds are set on them
    columns: tuple  # the features' columns the not-a-gemstone distance reads


class _Trained(NamedTuple):
    """What either way of training hands to calibration and export."""
    model: keras.Model
    history: dict
    eval_labels: np.ndarray
    eval_logits: np.ndarray  # variety logits of the eval photos
    family_of_variety: np.ndarray  # [classes] family id of each variety id
    representative_images: np.ndarray  # train photos: the int8 edge model's calibration set
    eval_images: np.ndarray  # eval photos: the edge models' agreement is measured on them
    known_photos: KnownPhotos


def _train_end_to_end(fn_args, tf_transform_output, config, stopwatch: transfer.Stopwatch) -> _Trained:
    train, val, class_counts, family_of_variety = _datasets(fn_args, tf_transform_output, config)
    model = _build(tf_transform_output, config)
    with stopwatch("fit"):
        history = _fit(model, train, val, config, class_counts, fn_args.model_run_dir)
    eval_inputs, eval_labels, eval_logits, eval_features = _collect(model, val)
    train_as_they_are = input_dataset(fn_args.train_files, tf_transform_output, int(config["batch_size"]), False,
                                      int(config["seed"]))
    _, train_labels, _, train_features = _collect(model, train_as_they_are)
    representative = next(iter(train.unbatch().batch(transfer.REPRESENTATIVE_PHOTOS)))[0][contract.IMAGE_XF]
    known = KnownPhotos(train_features, train_labels, eval_features, (0, train_features.shape[1]))
    return _Trained(model, history, eval_labels, eval_logits, family_of_variety, representative.numpy(),
                    eval_inputs[contract.IMAGE_XF][:transfer.AGREEMENT_PHOTOS], known)


def _train_transfer(fn_args, tf_transform_output, config, stopwatch: transfer.Stopwatch) -> _Trained:
    """A pretrained network: frozen features cached per augmented view, head, then the top blocks (or the whole
    network), then the head again on the training and eval photos."""
    whole = config["fine_tune_scope"] == WHOLE_NETWORK
    mixed = whole and whole_network.use_mixed_precision()
    features = transfer_features(fn_args, tf_transform_output, config, stopwatch)
    train, held_out = features.train, features.eval
    weights = transfer_class_weights(config, features.class_counts)
    fitted = transfer.fit(features.parts, train, held_out, features.photos, config, weights, fn_args.model_run_dir,
                          stopwatch, refit_on=features.eval_all_views if config["refit_with_eval"] else None,
                          whole_network=_whole_network_inputs(fn_args, tf_transform_output, config, features, weights,
                                                              mixed) if whole else None)
    as_they_are = fitted.train.first_view(features.photos)
    known = KnownPhotos(as_they_are.head_inputs()[model_lib.FEATURES_INPUT], as_they_are.variety,
                        fitted.eval.head_inputs()[model_lib.FEATURES_INPUT],
                        model_lib.pooled_columns(features.parts, *novelty.FEATURE_TAP[config["backbone"]]))
    return _Trained(features.parts.model, fitted.history, held_out.variety, fitted.eval_logits,
                    _family_of_variety(train.variety, train.family, len(features.class_counts)), train.images,
                    held_out.images, known)


WHOLE_NETWORK = "whole_network"  # fine_tune_scope of the thorough profile


def _whole_network_inputs(fn_args, tf_transform_output, config, features: "TransferFeatures",
                          class_weights: np.ndarray, mixed: bool) -> transfer.WholeNetwork:
    """The photos as they are, with every output's labels (and the training photos' class weights), for
    fine-tuning the whole network; and how to cache the features again through the fine-tuned network."""
    batch_size, seed = int(config["batch_size"]), int(config["seed"])
    names = features.parts.model.output_names
    weights = tf.constant(class_weights)

    def targets(x, y):
        return x, model_lib.targets_by_name(names, y[contract.VARIETY_HEAD], y[contract.FAMILY_HEAD])

    def weighted(x, y):
        w = tf.gather(weights, y[contract.VARIETY_HEAD])
        return targets(x, y) + (model_lib.targets_by_name(names, w, w),)

    train = input_dataset(fn_args.train_files, tf_transform_output, batch_size, True, seed).map(weighted)
    val = input_dataset(fn_args.eval_files, tf_transform_output, batch_size, False, seed).map(targets)
    augment = transfer.augmenter(bool(config["colour_features"]), seed + 1)

    def fresh_view(x):
        image, colour = augment(x[contract.IMAGE_XF], x[contract.COLOUR_XF])
        return {contract.IMAGE_XF: image, contract.COLOUR_XF: colour}

    def recache():
        again = transfer_features(fn_args, tf_transform_output, {**config, "fine_tune_epochs": 0},
                                  parts=features.parts)
        return again.train, again.eval, again.eval_all_views

    return transfer.WholeNetwork(train, val, fresh_view, recache, mixed)


class TransferFeatures(NamedTuple):
    """What the pretrained model's stages learn from: the frozen network's outputs, cached (transfer.cache)."""
    parts: model_lib.TransferParts
    train: transfer.Cached  # `views` views of each training photo, view by view
    eval_all_views: transfer.Cached  # as many views of each eval photo with the refit, else one
    eval: transfer.Cached  # each eval photo as it is: held out for calibration and the fine-tuning decision
    class_counts: np.ndarray  # training photos per variety id (transfer_class_weights weighs them)

    @property
    def photos(self) -> int:
        """Training photos (each has `views` rows in `train`)."""
        return int(self.class_counts.sum())


def transfer_features(fn_args, tf_transform_output, config, stopwatch: Optional[transfer.Stopwatch] = None,
                      parts: Optional[model_lib.TransferParts] = None) -> TransferFeatures:
    """The training and eval photos through the frozen part of the network, each view once, and how many
    training photos each variety has.

    The Trainer's first step with a pretrained backbone (`parts`: the network, built here if None);
    public so that bench/head_variants can train heads on exactly the features a run's Trainer learnt from.
    """
    stopwatch = stopwatch or transfer.Stopwatch()
    batch_size, seed = int(config["batch_size"]), int(config["seed"])
    # In content order (input_dataset): the cached features are shuffled, not the photos.
    train = input_dataset(fn_args.train_files, tf_transform_output, batch_size, False, seed)
    val = input_dataset(fn_args.eval_files, tf_transform_output, batch_size, False, seed)
    parts = parts or build_transfer(tf_transform_output, config)
    views = max(1, int(config["views"]))
    augment = transfer.augmenter(bool(config["colour_features"]), seed)
    # The top blocks' input maps are kept only for fine-tuning them on the cached maps (stage 2) to read.
    fine_tuning = int(config["fine_tune_epochs"]) > 0 and config["fine_tune_scope"] != WHOLE_NETWORK
    with stopwatch("features_train"):
        cached_train = transfer.cache(parts, train, views, augment, transfer.REPRESENTATIVE_PHOTOS, "train",
                                      keep_cut_maps=fine_tuning)
    # With the refit (transfer.fit's stage 3), the eval photos get as many views as the training ones.
    eval_views = views if config["refit_with_eval"] else 1
    with stopwatch("features_eval"):
        eval_all_views = transfer.cache(parts, val, eval_views, augment, transfer.AGREEMENT_PHOTOS, "eval",
                                        keep_cut_maps=fine_tuning)
    photos = len(cached_train.variety) // views
    num_classes = tf_transform_output.vocabulary_size_by_name(contract.LABEL_VOCAB)
    counts = np.bincount(cached_train.variety[:photos], minlength=num_classes).astype(float)
    return TransferFeatures(parts, cached_train, eval_all_views,
                            eval_all_views.first_view(len(eval_all_views.variety) // eval_views), counts)


def build_transfer(tf_transform_output, config) -> model_lib.TransferParts:
    """The pretrained model (model.build_transfer_model) for this Transform output and config."""
    weights = config["weights"] or None
    if not weights:
        logging.warning("%s without pretrained weights: the network starts from random weights.",
                        config["backbone"])
    num_classes = tf_transform_output.vocabulary_size_by_name(contract.LABEL_VOCAB)
    num_families = tf_transform_output.vocabulary_size_by_name(contract.FAMILY_VOCAB)
    size = _transform_image_size(tf_transform_output)
    logging.info("Model: %s at %dpx, %d classes, %d families, weights %s.", config["backbone"], size,
                 num_classes, num_families, weights or "random")
    return model_lib.build_transfer_model(
        size, num_classes, num_families, tf_transform_output.transformed_feature_spec()[contract.COLOUR_XF].shape[-1],
        weights=weights, learning_rate=float(config["learning_rate"]), dropout=float(config["image_expert_dropout"]),
        head_width=int(config["head_width"]), colour_features=bool(config["colour_features"]),
        backbone=config["backbone"], members=int(config["ensemble_members"]))


def _family_of_variety(variety: np.ndarray, family: np.ndarray, num_classes: int) -> np.ndarray:
    """Each variety's family id: the one its training photos carry (the most common, should they differ)."""
    pairs = np.zeros((num_classes, int(family.max()) + 1), np.int64)
    np.add.at(pairs, (variety, family), 1)
    return pairs.argmax(axis=1)


def effective_config(fn_args) -> dict:
    """DEFAULTS, then the pipeline's custom_config, then the Tuner's best hyperparameters (if it ran)."""
    config = {**DEFAULTS, **(fn_args.custom_config or {})}
    hyperparameters = getattr(fn_args, "hyperparameters", None)
    if hyperparameters:
        best = keras_tuner.HyperParameters.from_config(hyperparameters).values
        logging.info("Hyperparameters from the Tuner: %s", best)
        config.update(best)
    return config


def _datasets(fn_args, tf_transform_output, config):
    """Train and eval datasets, how many train photos each class has, and each variety's family id."""
    batch_size, seed = int(config["batch_size"]), int(config["seed"])
    train = input_dataset(fn_args.train_files, tf_transform_output, batch_size, True, seed)
    val = input_dataset(fn_args.eval_files, tf_transform_output, batch_size, False, seed)
    num_classes = tf_transform_output.vocabulary_size_by_name(contract.LABEL_VOCAB)
    variety, family = [], []
    for _, labels in train:  # also fills the in-memory cache
        variety.append(labels[contract.VARIETY_HEAD].numpy())
        family.append(labels[contract.FAMILY_HEAD].numpy())
    variety, family = np.concatenate(variety), np.concatenate(family)
    counts = np.bincount(variety, minlength=num_classes).astype(float)
    return train, val, counts, _family_of_variety(variety, family, num_classes)


def _build(tf_transform_output, config) -> keras.Model:
    num_classes = tf_transform_output.vocabulary_size_by_name(contract.LABEL_VOCAB)
    num_families = tf_transform_output.vocabulary_size_by_name(contract.FAMILY_VOCAB)
    spec = tf_transform_output.transformed_feature_spec()
    input_size = _transform_image_size(tf_transform_output)
    image_size = int(config.get("image_size") or input_size)
    logging.info("Model: %d classes, %d families, %dpx images (%dpx from Transform), %s.", num_classes,
                 num_families, image_size, input_size, config["backbone"])
    return model_lib.build_model(image_size, num_classes, num_families, spec[contract.COLOUR_XF].shape[-1],
                                 learning_rate=float(config["learning_rate"]), dropout=float(config["dropout"]),
                                 backbone_name=config["backbone"], weights=config["weights"] or None,
                                 head_width=int(config["head_width"]),
                                 colour_features=bool(config["colour_features"]), input_size=input_size)


def _transform_image_size(tf_transform_output) -> int:
    """Side of the images Transform makes (the model may resize them to a tuned size)."""
    return tf_transform_output.transformed_feature_spec()[contract.IMAGE_XF].shape[0]


def _fit(model, train, val, config, class_counts, log_dir):
    """Trains all at once (no pretrained weights) or in FINE_TUNE_STAGES (pretrained backbone); returns the history.

    Each stage's learning rate follows a cosine decay to zero over its epochs;
    early stopping on the eval loss keeps the best weights. With
    `imbalance: class_weight`, rare classes weigh more (the Tuner's trials too).
    """
    if config["imbalance"] == "class_weight":
        weights = _class_weights(class_counts)
        logging.info("Class weights from %.2f to %.2f.", weights.min(), weights.max())
        train = train.map(lambda x, y: (x, y, _sample_weights(y, weights)))
    steps_per_epoch = max(1, math.ceil(class_counts.sum() / int(config["batch_size"])))
    epochs, learning_rate = int(config["epochs"]), float(config["learning_rate"])
    staged = config["weights"] and config["progressive_unfreezing"]
    stages = FINE_TUNE_STAGES if staged else ((1.0, 1.0, 1.0),)
    merged, done = {}, 0
    for number, (fraction, lr_factor, share) in enumerate(stages, start=1):
        stage_epochs = epochs - done if number == len(stages) else max(1, round(epochs * share))
        if stage_epochs <= 0:
            continue
        trainable = model_lib.set_trainable_top(model, fraction)
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate * lr_factor, stage_epochs * steps_per_epoch)
        model_lib.compile_model(model, schedule)
        logging.info("Stage %d: %d backbone layers train, learning rate %.2g with cosine decay, %d epochs.",
                     number, trainable, learning_rate * lr_factor, stage_epochs)
        callbacks = [
            keras.callbacks.TensorBoard(log_dir=os.path.join(log_dir, f"stage{number}")),
            # Eval loss is too noisy to stop on while the learning rate is high: it is watched
            # from the middle of the stage's cosine decay. (Watched from the start, a dip at
            # epoch 10 of 50 once stopped the 88-class model at 0.60 top-1 instead of about 0.66.)
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(config["patience"]),
                                          restore_best_weights=True, start_from_epoch=done + stage_epochs // 2),
        ]
        history = model.fit(train, validation_data=val, initial_epoch=done, epochs=done + stage_epochs,
                            callbacks=callbacks, verbose=2)
        done += stage_epochs
        for key, values in history.history.items():
            merged.setdefault(key, []).extend(values)
    return merged


def tuner_fn(fn_args: FnArgs):
    """TFX Tuner entry point: a random search over SEARCH_SPACE and the image size, scored on eval accuracy."""
    config = {**DEFAULTS, **(fn_args.custom_config or {})}
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    train, val, class_counts, _ = _datasets(fn_args, tf_transform_output, config)
    input_size = _transform_image_size(tf_transform_output)
    space = keras_tuner.HyperParameters()
    for name, values in SEARCH_SPACE.items():
        space.Choice(name, values)
    # Smaller pictures train faster; the model resizes Transform's images inside.
    space.Choice("image_size", sorted({input_size, max(32, input_size * 3 // 4)}))
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective=keras_tuner.Objective("val_variety_accuracy", "max"), max_trials=int(config["tuner_trials"]),
        hyperparameters=space, seed=int(config["seed"]))
    tuner = GemstoneTuner(config, tf_transform_output, class_counts, oracle=oracle,
                          directory=fn_args.working_dir, project_name="gemstone")
    return TunerFnResult(tuner=tuner, fit_kwargs={"train": train, "val": val})


class GemstoneTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """keras-tuner over this module's own training (the tf_keras model and `_fit`).

    keras-tuner 1.4 drives Keras 3 models; ours is tf_keras (TFX 1.16's Keras),
    so a trial builds and fits the model here and reports its best eval accuracy.
    """

    def __init__(self, config, tf_transform_output, class_counts, **kwargs):
        super().__init__(**kwargs)
        self.config, self.tf_transform_output, self.class_counts = config, tf_transform_output, class_counts

    def run_trial(self, trial, train, val):
        config = {**self.config, **trial.hyperparameters.values, "epochs": int(self.config["tuner_epochs"])}
        keras.utils.set_random_seed(int(config["seed"]))
        model = _build(self.tf_transform_output, config)
        history = _fit(model, train, val, config, self.class_counts,
                       os.path.join(self.project_dir, f"trial_{trial.trial_id}"))
        # The trial's model is not kept: the Trainer retrains with the best values.
        return {"val_variety_accuracy": max(history["val_variety_accuracy"])}


def _backbone_record(config, trained) -> dict:
    """What the model started from (the model card shows it): backbone, weights and their provenance."""
    record = {"backbone": config["backbone"], "weights": config["weights"] or "none (random initial weights)",
              "provenance": config.get("backbone_provenance") or {}}
    if "fine_tuning_kept" in trained.history:
        record["fine_tuning_kept"] = bool(trained.history["fine_tuning_kept"][-1])
        record["fine_tune_scope"] = config["fine_tune_scope"]
    record["refit_with_eval"] = "refit_loss" in trained.history
    return record


def _write_json(path, value):
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(value, f, indent=1)


def transfer_class_weights(config: dict, counts: np.ndarray) -> np.ndarray:
    """A pretrained head's per-class loss weights from the training photos' class counts (`imbalance`)."""
    return _class_weights(counts) if config["imbalance"] == "class_weight" else np.ones(len(counts), np.float32)


def _class_weights(counts):
    """Inverse class frequency, normalised to mean 1 over the photos."""
    weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def _sample_weights(labels, weights):
    w = tf.gather(tf.constant(weights), labels[contract.VARIETY_HEAD])
    return {contract.VARIETY_HEAD: w, contract.FAMILY_HEAD: w}


def _collect(model, dataset):
    """Inputs, labels, variety logits and image features (model.with_image_features) of a whole dataset."""
    with_features = model_lib.with_image_features(model)
    inputs, labels, logits, features = {k: [] for k in contract.MODEL_INPUT_KEYS}, [], [], []
    for x, y in dataset:
        for k in inputs:
            inputs[k].append(x[k].numpy())
        labels.append(y[contract.VARIETY_HEAD].numpy())
        outputs = with_features(x, training=False)
        logits.append(outputs[contract.VARIETY_HEAD].numpy())
        features.append(outputs[model_lib.IMAGE_FEATURES].numpy())
    return ({k: np.concatenate(v) for k, v in inputs.items()}, np.concatenate(labels), np.concatenate(logits),
            np.concatenate(features))
