"""TFX Trainer module: `run_fn` trains the model and exports it with its signatures (the Tuner: modules/tuner.py).

The settings are contract.TRAINER_DEFAULTS under the pipeline's custom_config
(and the Tuner's best values, when it ran). The photos come through the
Transform graph (modules/inputs.py). Two ways to train, by `backbone`:
  - `efficientnet_lite2` (default) or `inception_v3`: transfer learning from
    ImageNet's weights on cached frozen features, then fine-tuning of the top
    blocks (or of the whole network: modules/whole_network.py), then the head
    again on the training and eval photos (modules/transfer.py);
  - `none` / `small_cnn` or a `keras.applications` backbone: end to end
    (modules/end_to_end.py).
Both end the same way: temperature scaling on eval, the open-set scores
(modules/novelty.py), the signatures of modules/export.py, the edge (TFLite) models.
"""
import os

import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import json  # noqa: E402

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras as keras  # noqa: E402
from absl import logging  # noqa: E402
# (not tfx.v1, whose Google Cloud extensions take about 8 s to import: see pipeline/dag.py)
from tfx.components.trainer.fn_args_utils import FnArgs  # noqa: E402

from typing import NamedTuple, Optional  # noqa: E402

import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

from gemstone import contract  # noqa: E402
from modules import calibration, edge, end_to_end, export, gallery, inputs, novelty  # noqa: E402
from modules import saliency, transfer, whole_network  # noqa: E402
from modules import model as model_lib  # noqa: E402

TIMINGS_FILE = "timings.json"  # in the model run folder: seconds per stage of the Trainer


def run_fn(fn_args: FnArgs):
    """Trains on the train split, validates on eval, exports the SavedModel."""
    config = effective_config(fn_args)
    keras.utils.set_random_seed(int(config["seed"]))
    gpus = tf.config.list_physical_devices("GPU")
    logging.info("Trainer on %s.", ", ".join(d.name for d in gpus) if gpus else
                 f"the CPU ({os.cpu_count()} cores; no GPU visible to TensorFlow)")
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
        explain_method = config["explain_method"] or saliency.default_method(model)
        signatures = export.make_signatures(model, tf_transform_output, review_threshold, calibrated["temperature"],
                                            trained.family_of_variety, fitted_novelty, explain_method,
                                            config["backbone"])
        export.save(model, signatures, fn_args.serving_model_dir)
    assets = os.path.join(fn_args.serving_model_dir, contract.MODEL_ASSETS_DIR)
    _write_json(os.path.join(assets, contract.CALIBRATION_FILE), calibrated)
    _write_json(os.path.join(assets, contract.NOVELTY_FILE), novelty_report)
    record = _backbone_record(config, trained, explain_method, tuner_values(fn_args))
    _write_json(os.path.join(assets, contract.BACKBONE_FILE), record)
    with stopwatch("gallery"):
        gallery.write(fn_args.serving_model_dir, fn_args.train_files,
                      tf_transform_output.vocabulary_by_name(contract.LABEL_VOCAB), known.train_features,
                      known.train_labels)
    _write_json(os.path.join(fn_args.model_run_dir, "history.json"),
                {k: [float(v) for v in vs] for k, vs in trained.history.items()})
    _write_json(os.path.join(fn_args.model_run_dir, "config.json"), config)
    if config["edge_models"]:
        with stopwatch("edge_models"):
            report = edge.export(model, inputs.transform_image_size(tf_transform_output), calibrated["temperature"],
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
    train, val, class_counts, family_of_variety = end_to_end.datasets(fn_args, tf_transform_output, config)
    model = end_to_end.build(tf_transform_output, config)
    with stopwatch("fit"):
        history = end_to_end.fit(model, train, val, config, class_counts, fn_args.model_run_dir)
    eval_inputs, eval_labels, eval_logits, eval_features = _collect(model, val)
    train_as_they_are = inputs.input_dataset(fn_args.train_files, tf_transform_output, int(config["batch_size"]), False,
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
                    inputs.family_of_variety(train.variety, train.family, len(features.class_counts)), train.images,
                    held_out.images, known)


WHOLE_NETWORK = "whole_network"  # fine_tune_scope of the thorough profile


def _whole_network_inputs(fn_args, tf_transform_output, config, features: "TransferFeatures",
                          class_weights: np.ndarray, mixed: bool) -> transfer.WholeNetwork:
    """The photos as they are with their variety (and the training photos' class weights), for fine-tuning
    the whole network; and how to cache the features again through the fine-tuned network."""
    batch_size, seed = int(config["batch_size"]), int(config["seed"])
    weights = tf.constant(class_weights)

    def labelled(x, y):
        return x[contract.IMAGE_XF], y[contract.VARIETY_HEAD]

    def weighted(x, y):
        return labelled(x, y) + (tf.gather(weights, y[contract.VARIETY_HEAD]),)

    train = inputs.input_dataset(fn_args.train_files, tf_transform_output, batch_size, True, seed).map(weighted)
    val = inputs.input_dataset(fn_args.eval_files, tf_transform_output, batch_size, False, seed).map(labelled)
    # The picture alone: the backbone is fine-tuned through a read-out of its own features, no histogram.
    augment = transfer.augmenter(False, seed + 1)

    def fresh_view(image):
        return augment(image, tf.zeros([tf.shape(image)[0], 1]))[0]

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
    train = inputs.input_dataset(fn_args.train_files, tf_transform_output, batch_size, False, seed)
    val = inputs.input_dataset(fn_args.eval_files, tf_transform_output, batch_size, False, seed)
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
    size = inputs.transform_image_size(tf_transform_output)
    logging.info("Model: %s at %dpx, %d classes, %d families, weights %s.", config["backbone"], size,
                 num_classes, num_families, weights or "random")
    return model_lib.build_transfer_model(
        size, num_classes, num_families, tf_transform_output.transformed_feature_spec()[contract.COLOUR_XF].shape[-1],
        weights=weights, learning_rate=float(config["learning_rate"]), dropout=float(config["image_expert_dropout"]),
        head_width=int(config["head_width"]), colour_features=bool(config["colour_features"]),
        backbone=config["backbone"], members=int(config["ensemble_members"]),
        colour_dropout=float(config["colour_expert_dropout"]), l2=float(config["head_l2"]))




def effective_config(fn_args) -> dict:
    """The defaults (contract.TRAINER_DEFAULTS), then the pipeline's custom_config, then the Tuner's best
    hyperparameters (if it ran)."""
    config = {**contract.TRAINER_DEFAULTS, **(fn_args.custom_config or {})}
    best = tuner_values(fn_args)
    if best:
        logging.info("Hyperparameters from the Tuner: %s", best)
        config.update(best)
    return config


def tuner_values(fn_args) -> dict:
    """The Tuner's best hyperparameters when a Tuner ran before this Trainer, else {}."""
    hyperparameters = getattr(fn_args, "hyperparameters", None)
    return keras_tuner.HyperParameters.from_config(hyperparameters).values if hyperparameters else {}


def _backbone_record(config, trained, explain_method: str, tuned: dict) -> dict:
    """What the model started from (the model card shows it): backbone, weights and their provenance, whether
    fine-tuning was kept, how its `explain` signature maps where it looked, and the Tuner's values it took."""
    record = {"backbone": config["backbone"], "weights": config["weights"] or "none (random initial weights)",
              "provenance": config.get("backbone_provenance") or {}}
    if "fine_tuning_kept" in trained.history:
        record["fine_tuning_kept"] = bool(trained.history["fine_tuning_kept"][-1])
        record["fine_tune_scope"] = config["fine_tune_scope"]
    record["refit_with_eval"] = "refit_loss" in trained.history
    record["explanations"] = {"method": explain_method, "summary": saliency.SUMMARIES[explain_method]}
    if tuned:
        record["tuner_values"] = tuned
    return record


def _write_json(path, value):
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(value, f, indent=1)


def transfer_class_weights(config: dict, counts: np.ndarray) -> np.ndarray:
    """A pretrained head's per-class loss weights from the training photos' class counts (`imbalance`)."""
    return inputs.class_weights(counts) if config["imbalance"] == "class_weight" else np.ones(len(counts), np.float32)


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
