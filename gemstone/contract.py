"""The one contract every part of the project shares: names, file names, and the prediction record.

This module sits at the bottom: it imports nothing of the project and no
TensorFlow, so the data library, the TFX modules and components, the
pipeline, the applications and the benchmarks can all read it.

- Feature keys: raw ones come from ImageExampleGen; transformed ones (suffix
  `_xf`) from `modules/transform.py`.
- The pretrained backbones' names, as GEMSTONE_BACKBONE, the model code and
  `gemstone backbone fetch` spell them.
- Artifact file names: what a component writes inside its artifact and what
  readers (dashboard, model card, tests, benchmarks) look for.
- Component ids: the pipeline's nodes as ML Metadata records them, which the
  applications look a run's outputs up by.
- Metric names as TFMA writes them, and the binning of calibration figures.
- The serving signature and the prediction record: one parser of
  `serving_default`'s outputs, used by serving, batch inference, the
  Robustness component and the benchmarks.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping

# --- Feature keys -------------------------------------------------------------------------------

IMAGE_KEY = "image"  # encoded JPEG/PNG bytes
LABEL_KEY = "label"  # variety, e.g. "Sapphire Blue"
FAMILY_KEY = "family"  # mineral family, e.g. "Corundum"
SIZE_BUCKET_KEY = "size_bucket"  # short side of the photo as ingested, e.g. "small (<256 px)"

# Raw features the serving signatures need from a client or a tf.Example.
SERVING_RAW_KEYS = (IMAGE_KEY,)
# Raw features TFMA needs from an evaluation example (serving keys + labels).
EVAL_RAW_KEYS = (IMAGE_KEY, LABEL_KEY, FAMILY_KEY)

LABEL_VOCAB = "label"
FAMILY_VOCAB = "family"


def transformed_name(key: str) -> str:
    return key + "_xf"


IMAGE_XF = transformed_name(IMAGE_KEY)
LABEL_XF = transformed_name(LABEL_KEY)
FAMILY_XF = transformed_name(FAMILY_KEY)
# Colour histogram of the photo, computed by Transform from the decoded image.
COLOUR_XF = "colour_xf"

# What the Keras model takes: the resized picture and its colour histogram.
MODEL_INPUT_KEYS = (IMAGE_XF, COLOUR_XF)

# Model output heads.
VARIETY_HEAD = "variety"
FAMILY_HEAD = "family"

# Hue resolution of the data statistics (drift, data report) and of the model's colour
# histogram: one number, so that a drift in hue is seen in the bins the model reads.
HUE_BINS = 12

# --- Pretrained backbones -----------------------------------------------------------------------

INCEPTION_V3 = "inception_v3"
EFFICIENTNET_LITE2 = "efficientnet_lite2"
DEFAULT_BACKBONE = EFFICIENTNET_LITE2
# The backbones with ImageNet weights to fetch (gemstone/backbones), the default first.
BACKBONES = (EFFICIENTNET_LITE2, INCEPTION_V3)

# --- The Trainer's settings ----------------------------------------------------------------------

# The int8 TFLite models the Trainer can make (GEMSTONE_EDGE_INT8; modules/edge.py), the default first.
EDGE_INT8_KINDS = ("dynamic_range", "full_integer")

# Every setting of the Trainer module and its default: the one set of defaults (pipeline/configs.py's
# PipelineConfig takes its own from here; the pipeline's custom_config and the Tuner override them).
# docs/model.md says why each value is what it is.
TRAINER_DEFAULTS = {
    "epochs": 50, "batch_size": 32, "learning_rate": 2e-3, "review_threshold": 0.6, "seed": 0,
    # "class_weight": rare classes weigh more in the loss; "none": every photo counts the same.
    "imbalance": "class_weight", "edge_models": True,
    # The int8 TFLite model: "dynamic_range" (int8 weights) or "full_integer" (Edge TPU; modules/edge.py).
    "edge_int8": EDGE_INT8_KINDS[0],
    # efficientnet_lite2 or inception_v3 (transfer learning), none / small_cnn (from scratch), or
    # mobilenet_v2, mobilenet_v3_small, efficientnet_b0, resnet50 (end to end); weights: "" (random),
    # "imagenet" (Keras' download) or a no-top weights file (`gemstone backbone fetch` writes them).
    "backbone": DEFAULT_BACKBONE, "weights": "", "head_width": 1024,
    # Dropout before the end-to-end models' read-out (the Tuner searches it).
    "dropout": 0.3,
    # Pretrained head: dropout on the pooled features the image expert reads (after the 0.2 all its inputs
    # get), on the colour expert's hidden layer, and the L2 weight decay of its dense layers.
    "image_expert_dropout": 0.5, "colour_expert_dropout": 0.5, "head_l2": 1e-4,
    # Pretrained head: the share of each label spread over all classes in its loss (0: plain cross-entropy).
    "label_smoothing": 0.0,
    # Pretrained backbones: passes of the training photos through the frozen trunk (the first as they are,
    # the others augmented); `epochs` trains the head on frozen features, then `fine_tune_epochs` the top
    # blocks too, at learning_rate x fine_tune_learning_rate_factor (0 epochs: the frozen-only ablation).
    "views": 3, "fine_tune_epochs": 6, "fine_tune_learning_rate_factor": 0.1,
    # What stage 2 fine-tunes: "top_blocks" (on the cached maps: the quick profile) or "whole_network" (every
    # layer, a fresh view of each photo per step: the thorough profile, modules/whole_network.py), the head
    # and the top at whole_network_learning_rate, falling with depth to whole_network_bottom_factor of it.
    "fine_tune_scope": "top_blocks", "whole_network_learning_rate": 1e-4,
    "whole_network_bottom_factor": 0.1, "whole_network_patience": 3,
    # Pretrained backbones: after calibration and the fine-tuning decision, the head learns again on the
    # training and eval photos together (transfer.fit's stage 3); False keeps eval held out.
    "refit_with_eval": True,
    # Pretrained backbones: pairs of experts in the head; more than one learn side by side and their answers
    # are averaged (an ensemble, slower to train, not better by a margin).
    "ensemble_members": 1,
    # False trains on the picture alone (the benchmark's ablation).
    "colour_features": True,
    # End to end with pretrained weights: end_to_end.FINE_TUNE_STAGES (True) or everything at once.
    "progressive_unfreezing": True,
    # Early stopping (the best weights are kept): epochs without a better eval loss (end-to-end models) or
    # eval accuracy (fine-tuning). The pretrained head's stage 1 runs all its epochs.
    "patience": 10,
    # The Tuner's trials: how many, and how many epochs each (end-to-end models).
    "tuner_trials": 6, "tuner_epochs": 8,
    # The `explain` signature's saliency method (modules/saliency.py's METHODS); "": the model's default.
    "explain_method": "",
}

# --- Artifact file names ------------------------------------------------------------------------

INGESTION_REPORT_FILE = "ingestion_report.json"  # in the Examples artifact (ImageExampleGen)
DATA_REPORT_FILE = "data_report.html"  # beside it: the same report for people
ROBUSTNESS_REPORT_FILE = "robustness.json"  # in the RobustnessReport artifact
ROBUSTNESS_PREDICTIONS_FILE = "predictions.jsonl"  # beside it: one prediction record per test photo
DASHBOARD_FILE = "report.html"  # in the SliceReport's dashboard artifact
MODEL_CARD_FILE = "model_card.md"  # beside every pushed model version
# A SavedModel's graph, written last into a version folder: its presence marks a complete version.
SAVED_MODEL_FILE = "saved_model.pb"
MODEL_CARD_JSON_FILE = "model_card.json"
PREDICTION_LOG_FILE = "predictions.jsonl"  # serving's log of answers (read by drift)
# Serving's log as TFRecord files of TF Serving's PredictionLog protos, one record per request (read by drift).
PREDICTION_LOG_RECORDS = "prediction_log-*.tfrecord"
MODEL_ASSETS_DIR = "assets.extra"  # in the SavedModel: what the Trainer records beside the graph
CALIBRATION_FILE = "calibration.json"  # in it: temperature, ECE before/after, review trade-off
BACKBONE_FILE = "backbone.json"  # in it: the weights the model started from, the fine-tuning decision
GALLERY_DIR = "gallery"  # in it: a few typical training photos of each variety (modules/gallery.py)
GALLERY_FILE = "gallery.json"  # in that folder: {variety: [thumbnail file names]}
NOVELTY_FILE = "novelty.json"  # in it: how the open-set scores were fitted, their thresholds and eval flag rates
EDGE_DIR = "tflite"  # in the SavedModel's folder: the TFLite models for edge devices (modules/edge.py)
EDGE_REPORT_FILE = "edge_report.json"  # in it: which TFLite models were kept, their sizes and agreement

# --- Component ids ------------------------------------------------------------------------------

# The pipeline's nodes (pipeline/dag.py: TFX names a node after its class) as ML Metadata records them.
EXAMPLE_GEN_ID = "ImageExampleGen"
STATISTICS_GEN_ID = "StatisticsGen"
TRAINER_ID = "Trainer"
EVALUATOR_ID = "Evaluator"
ROBUSTNESS_ID = "Robustness"
PUSHER_ID = "Pusher"
MODEL_CARD_ID = "ModelCard"
SLICE_REPORT_ID = "SliceReport"

# --- Metrics ------------------------------------------------------------------------------------

# Names as TFMA writes them (read back by the dashboard and the model card).
ACCURACY = "sparse_categorical_accuracy"
ACCURACY_CLASS = "SparseCategoricalAccuracy"  # TFMA's metric class of it, which the accuracy gates are set on
EXAMPLE_COUNT = "example_count"
TOP_K = 3
TOP_K_ACCURACY = "sparse_top_k_categorical_accuracy"
# A ModelBlessing's verdict (TFX's own key, as the Evaluator and Robustness write it): 1 = push.
BLESSED_PROPERTY = "blessed"
# What the pipeline's Evaluator and Pusher record beside TFX's own properties (components/evaluator, pusher):
# on the Evaluator's blessing, 1 when its baseline was the candidate itself (the latest blessed model, the
# Trainer's output taken from the cache), which it did not compare with itself; on the PushedModel, the version
# that already held the model when the Pusher pushed nothing, and that version's folder.
CANDIDATE_IS_LATEST_BLESSED_PROPERTY = "candidate_is_latest_blessed"
ALREADY_SERVING_VERSION_PROPERTY = "already_serving_version"
ALREADY_SERVING_DESTINATION_PROPERTY = "already_serving_destination"
# Expected calibration error: equal-width bins of the top-1 confidence, everywhere it is shown.
ECE_BINS = 15

# --- Serving signature and prediction record ----------------------------------------------------

SERVING_SIGNATURE = "serving_default"
SERVING_INPUT = "images"  # a batch of encoded photos (bytes)
# What `serving_default` returns for each photo (modules/export.py builds it).
PREDICTION_OUTPUTS = ("label", "confidence", "top_k_labels", "top_k_scores", "family", "family_confidence",
                      "needs_review", "probabilities", "classes")
# The probabilities of every class: what TF Serving's clients expect, dropped from compact records.
FULL_OUTPUTS = ("probabilities", "classes")

# Open set: does the photo look like anything the model learned (modules/novelty.py)? Two questions, one
# score each in `novelty` ([B, 2], in this order), scaled so that 0 is a typical eval photo and 1 the
# threshold: above 1, the answer to that question is yes. Models exported before these outputs lack them.
NOT_A_GEMSTONE, UNFAMILIAR_VARIETY, LOW_CONFIDENCE = "not_a_gemstone", "unfamiliar_variety", "low_confidence"
NOVELTY_QUESTIONS = (NOT_A_GEMSTONE, UNFAMILIAR_VARIETY)
# Why a photo needs review, first reason first: known is false for either of the first two.
REVIEW_REASONS = (NOT_A_GEMSTONE, UNFAMILIAR_VARIETY, LOW_CONFIDENCE)
NOVELTY_OUTPUTS = ("novelty", "known", "review_reason")

# The `explain` signature: the same inputs and answer as serving_default, and where the model looked.
EXPLAIN_SIGNATURE = "explain"
SALIENCY_OUTPUT = "saliency"  # [B, S, S] float in [0, 1], as the model saw the photo
HEATMAP_OUTPUT = "heatmap_png"  # [B] greyscale PNG of it at the photo's aspect ratio


def _plain(value: Any) -> Any:
    """A tensor, numpy value or bytes as JSON-ready Python."""
    if hasattr(value, "numpy"):
        value = value.numpy()
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def prediction_records(outputs: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """`serving_default`'s batch outputs (tensors or arrays) as one plain record per photo.

    The record has the signature's output names (TF Serving's row format), `review_reason` None when
    there is none; missing outputs mean a model that does not follow the export contract, but for the
    open-set outputs, which models exported before them lack (`has_novelty` tells).
    """
    missing = [name for name in PREDICTION_OUTPUTS if name not in outputs]
    if missing:
        raise ValueError(f"the model's {SERVING_SIGNATURE} lacks outputs {missing}: was it exported by this project?")
    names = PREDICTION_OUTPUTS + tuple(name for name in NOVELTY_OUTPUTS if name in outputs)
    columns = {name: _plain(outputs[name]) for name in names}
    records = [{name: columns[name][i] for name in names} for i in range(len(columns["label"]))]
    for record in records:
        if "review_reason" in record:
            record["review_reason"] = record["review_reason"] or None
    return records


def has_novelty(record: Mapping[str, Any]) -> bool:
    """Whether a prediction record carries the open-set verdict (models exported since it exists do)."""
    return "known" in record


def compact(record: Mapping[str, Any], digits: int = 5) -> Dict[str, Any]:
    """A prediction record without the per-class vectors: what logs and batch outputs keep."""
    result = {
        "label": record["label"],
        "confidence": round(float(record["confidence"]), digits),
        "top_k": [{"label": label, "score": round(float(score), digits)}
                  for label, score in zip(record["top_k_labels"], record["top_k_scores"])],
        "family": record["family"],
        "family_confidence": round(float(record["family_confidence"]), digits),
        "needs_review": bool(record["needs_review"]),
    }
    if has_novelty(record):
        result.update(known=bool(record["known"]),
                      novelty={question: round(float(score), digits)
                               for question, score in zip(NOVELTY_QUESTIONS, record["novelty"])},
                      review_reason=record["review_reason"])
    return result


def verdict(record: Mapping[str, Any]) -> str:
    """What a person reads first about a (compact or full) record: the open-set verdict, then the variety."""
    closest = record["label"]
    reason = record.get("review_reason")
    if reason == NOT_A_GEMSTONE:
        return f"not a gemstone photo (closest variety: {closest})"
    if reason == UNFAMILIAR_VARIETY:
        return f"not a variety this model knows (closest: {closest})"
    if reason == LOW_CONFIDENCE or record.get("needs_review"):
        return f"{closest}, low confidence: needs expert review"
    return closest
