"""The slice dashboard: one self-contained HTML page that says whether a model should ship.

Made from one evaluation's artifacts (`EvaluationSources`, below): TFMA's
metrics, plots and validation result, the robustness report and its per-photo
predictions, the data report, the examples judged and the candidate model
(its `explain` signature draws where it looked on the photos shown). It needs no
network: charts and photos are embedded, the table sorts with a few lines of
inline JavaScript.

    gemstone report --pipeline-name gemstone-demo --output report.html

The SliceReport component writes the same page at the end of every run. This
module gathers the figures (`collect`); gemstone/report_page.py writes the page.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from gemstone import contract, data_report, ingestion, open_set_report, report_page, report_photos
from gemstone.evaluation_results import (confusion_matrix, load_metrics, load_plots, reliability, review_trade_off,
                                         wilson_interval)
from gemstone.verdict import robustness_failures, validation_failures


@dataclasses.dataclass(frozen=True)
class EvaluationSources:
    """The artifacts behind one evaluation: what the slice dashboard is made from."""

    evaluation: str  # TFMA output (ModelEvaluation)
    blessing: str  # the ModelBlessing the Pusher read (its `blessed` custom property is the verdict)
    model: str  # the candidate Model
    examples: str  # the Examples it was judged on
    robustness: Optional[str]  # RobustnessReport of the same model, if one was made
    blessed: Optional[bool] = None  # the blessing's `blessed` custom property, as the Pusher read it
    pushed_to: Optional[str] = None  # the version folder the Pusher wrote this model to; None: not pushed


WORST_CONFUSIONS = 8
THUMBNAILS_PER_CONFUSION = 6
_NO_METRICS = {"candidate": {}, "baseline": {}}


def _read_text(path: str) -> Optional[str]:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return f.read()


def _per_photo(row: Dict[str, Any]) -> Dict[str, Any]:
    """A line of Robustness' predictions file as {source_path, label, predicted, confidence}.

    Today's lines hold the compact prediction record under "prediction"; runs made
    before it was shared wrote "predicted" and "confidence" beside the label.
    """
    prediction = row.get("prediction") or {}
    return {"source_path": row["source_path"], "label": row["label"],
            "predicted": prediction.get("label", row.get("predicted")),
            "confidence": prediction.get("confidence", row.get("confidence")),
            "known": prediction.get("known"), "novelty": prediction.get("novelty"),
            "review_reason": prediction.get("review_reason")}


def worst_first(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per-class rows, the lowest accuracy first; of equal accuracy, the class with more photos (surer) first;
    classes without test photos last."""
    return sorted(rows, key=lambda r: (r["accuracy"] is None, r["accuracy"] or 0.0, -r["photos"], r["label"]))


def per_class_rows(classes: Sequence[str], metrics: Mapping[str, Any], matrix: np.ndarray,
                   family_of: Mapping[str, str]) -> List[Dict[str, Any]]:
    """One row per class (TFMA's slice of it, and its column of the overall per-class metrics), worst first.

    `accuracy_interval`: the 95 % Wilson interval of the class's accuracy, on its photos (None without any).
    """
    overall = metrics.get("overall", _NO_METRICS)["candidate"]
    rows = []
    for class_id, name in enumerate(classes):
        slice_metrics = metrics.get(f"{contract.LABEL_KEY}:{name}", _NO_METRICS)
        photos = int(slice_metrics["candidate"].get(contract.EXAMPLE_COUNT, 0))
        accuracy = slice_metrics["candidate"].get(contract.ACCURACY)
        confusions = matrix[class_id].copy()
        confusions[class_id] = 0
        rows.append({
            "label": name, "family": family_of.get(name, ""), "photos": photos, "accuracy": accuracy,
            "accuracy_interval": wilson_interval(accuracy * photos, photos) if accuracy is not None else None,
            "previous_accuracy": slice_metrics["baseline"].get(contract.ACCURACY),
            "top_k_accuracy": slice_metrics["candidate"].get(contract.TOP_K_ACCURACY),
            "precision": overall.get(("precision", class_id)),
            "recall": overall.get(("recall", class_id)),
            "f1": overall.get(("f1_score", class_id)),
            "confused_with": classes[int(confusions.argmax())] if confusions.sum() else "",
        })
    return worst_first(rows)


def worst_confusions(matrix: np.ndarray, classes: Sequence[str],
                     predictions: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The most frequent (true, predicted) pairs of different classes, most photos first, each with up to
    THUMBNAILS_PER_CONFUSION of its photos' prediction records (`examples`)."""
    confusions = []
    off_diagonal = matrix - np.diag(np.diag(matrix))
    for flat in np.argsort(-off_diagonal, axis=None, kind="stable")[:WORST_CONFUSIONS]:
        true_id, predicted_id = np.unravel_index(flat, matrix.shape)
        if off_diagonal[true_id, predicted_id] <= 0:
            break
        true_label, predicted_label = classes[true_id], classes[predicted_id]
        photos = [p for p in predictions if p["label"] == true_label and p["predicted"] == predicted_label]
        confusions.append({"label": true_label, "predicted": predicted_label,
                           "photos": int(matrix[true_id, predicted_id]),
                           "examples": photos[:THUMBNAILS_PER_CONFUSION]})
    return confusions


def _photos_of(sources: EvaluationSources, split: str, wanted: set) -> Dict[str, bytes]:
    """{source path: encoded photo} of the wanted photos of the split (only those are kept in memory)."""
    if not wanted:
        return {}
    shown = ingestion.read_examples(sources.examples, split, ("source_path", contract.IMAGE_KEY),
                                    keep=lambda e: e["source_path"].decode() in wanted)
    return {e["source_path"].decode(): e[contract.IMAGE_KEY] for e in shown}


def pushed_version(pushed_to: Optional[str]) -> Optional[Dict[str, str]]:
    """{version, path} of the version folder the Pusher wrote (TF Serving's numbered folder), None if not pushed."""
    if not pushed_to:
        return None
    return {"version": os.path.basename(pushed_to.rstrip("/")), "path": pushed_to}


def collect(sources: EvaluationSources, pipeline_name: str, split: str = "test") -> Dict[str, Any]:
    """Every figure the page shows, as plain data (also what the tests check).

    The verdict is `sources.blessed`: the blessing's `blessed` custom property, the one the Pusher acts on.
    """
    from tfx.utils import path_utils
    import tensorflow_model_analysis as tfma

    model_dir = path_utils.serving_model_path(sources.model)
    vocabulary = _read_text(os.path.join(model_dir, "assets", contract.LABEL_VOCAB))
    classes = vocabulary.splitlines() if vocabulary else []
    metrics = load_metrics(sources.evaluation)
    plots = load_plots(sources.evaluation)
    validation = tfma.load_validation_result(sources.evaluation)
    examples = ingestion.read_examples(sources.examples, split, (contract.LABEL_KEY, contract.FAMILY_KEY))
    family_of = {e[contract.LABEL_KEY].decode(): e[contract.FAMILY_KEY].decode() for e in examples}

    matrix = confusion_matrix(plots["matrices"].get(0.0, []), len(classes))
    overall = metrics.get("overall", _NO_METRICS)

    def slices_of(column):
        return [{"slice": name.split(":", 1)[1], "photos": int(m["candidate"].get(contract.EXAMPLE_COUNT, 0)),
                 "accuracy": m["candidate"].get(contract.ACCURACY), "previous_accuracy": m["baseline"].get(contract.ACCURACY),
                 "top_k_accuracy": m["candidate"].get(contract.TOP_K_ACCURACY)}
                for name, m in sorted(metrics.items()) if name.startswith(column + ":")]

    robustness = json.loads(_read_text(os.path.join(sources.robustness, contract.ROBUSTNESS_REPORT_FILE)) or "null") \
        if sources.robustness else None
    predictions = []
    if sources.robustness:
        text = _read_text(os.path.join(sources.robustness, contract.ROBUSTNESS_PREDICTIONS_FILE)) or ""
        predictions = [_per_photo(json.loads(line)) for line in text.splitlines() if line.strip()]
    # A run made before blessings carried the property: its verdict from what the blessing is made of.
    blessed = sources.blessed if sources.blessed is not None else (
        validation.validation_ok and not robustness_failures(robustness))

    # The photos shown: those behind the worst confusions and those flagged for review, each explained once.
    confusions = worst_confusions(matrix, classes, predictions)
    flagged = report_photos.flagged_for_review(predictions)
    gallery = flagged[:report_photos.REVIEW_GALLERY_SIZE]
    image_of = _photos_of(sources, split, {p["source_path"] for c in confusions for p in c["examples"]}
                          | {p["source_path"] for p in gallery})
    explainer = report_photos.saliency_explainer(model_dir) if image_of else None
    heatmap_of = report_photos.heatmaps_of(image_of, explainer)
    for confusion in confusions:
        confusion["thumbnails"] = report_photos.figures(confusion.pop("examples"), image_of, heatmap_of)

    ingestion_report = _read_text(os.path.join(sources.examples, contract.INGESTION_REPORT_FILE))
    calibration_file = _read_text(os.path.join(model_dir, contract.MODEL_ASSETS_DIR, contract.CALIBRATION_FILE))
    review_threshold = json.loads(calibration_file).get("review_threshold") if calibration_file else None
    return {
        "pipeline_name": pipeline_name, "split": split, "sources": sources.__dict__,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "blessed": blessed,
        "pushed": pushed_version(sources.pushed_to),
        "validation_failures": validation_failures(validation),
        "robustness_failures": robustness_failures(robustness),
        "classes": classes,
        "overall": {"candidate": {k: v for k, v in overall["candidate"].items() if isinstance(k, str)},
                    "baseline": {k: v for k, v in overall["baseline"].items() if isinstance(k, str)}},
        "per_class": per_class_rows(classes, metrics, matrix, family_of),
        "families": slices_of(contract.FAMILY_KEY),
        "size_buckets": slices_of(contract.SIZE_BUCKET_KEY),
        "confusion_matrix": matrix.tolist(),
        "calibration": reliability(plots["calibration"]),
        "review": {threshold: review_trade_off(entries) for threshold, entries in plots["matrices"].items()},
        "robustness": robustness,
        "open_set": open_set_report.collect(robustness, predictions, review_threshold),
        "worst_confusions": confusions,
        # Whether the photos have overlays: the model has an `explain` signature (models exported before it do not).
        "explained": explainer is not None,
        "flagged_for_review": {"photos": len(predictions), "flagged": len(flagged),
                               "shown": report_photos.figures(gallery, image_of, heatmap_of)},
        "data_report": json.loads(ingestion_report) if ingestion_report else None,
        "data_plot": os.path.join(sources.examples, data_report.PLOT_NAME),
    }


def read_bytes(path: str) -> Optional[bytes]:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def write(sources: EvaluationSources, pipeline_name: str, output: str, split: str = "test") -> Dict[str, Any]:
    """Writes the page to `output` and returns the data it shows."""
    import tensorflow as tf

    data = collect(sources, pipeline_name, split)
    parent = os.path.dirname(output)
    if parent:
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(output, "w") as f:
        f.write(report_page.render(data, data_plot=read_bytes(data["data_plot"])))
    return data
