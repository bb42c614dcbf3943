"""The slice dashboard: one self-contained HTML page that says whether a model should ship.

Made from one evaluation's artifacts (`EvaluationSources`, below): TFMA's
metrics, plots and validation result, the robustness report, the data
report and the examples judged. It needs no network: charts are embedded
PNGs, the table sorts with a few lines of inline JavaScript.

    gemstone report --pipeline-name gemstone-demo --output report.html

The SliceReport component writes the same page at the end of every run. This
module gathers the figures (`collect`); gemstone/report_page.py writes the page.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime
import io
import json
import os
from typing import Any, Dict, Optional

import numpy as np

from gemstone import contract, data_report, ingestion, open_set_report, report_page
from gemstone.evaluation_results import confusion_matrix, load_metrics, load_plots, reliability, review_trade_off
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


WORST_CONFUSIONS = 8
THUMBNAILS_PER_CONFUSION = 6
THUMBNAIL_SIDE = 96


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


def _thumbnail(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode()


def collect(sources: EvaluationSources, pipeline_name: str, split: str = "test") -> Dict[str, Any]:
    """Every figure the page shows, as plain data (also what the tests check).

    The verdict is `sources.blessed`: the blessing's `blessed` custom property, the one the Pusher acts on.
    """
    from tfx.utils import path_utils
    import tensorflow_model_analysis as tfma

    vocabulary = _read_text(os.path.join(path_utils.serving_model_path(sources.model), "assets", contract.LABEL_VOCAB))
    classes = vocabulary.splitlines() if vocabulary else []
    metrics = load_metrics(sources.evaluation)
    plots = load_plots(sources.evaluation)
    validation = tfma.load_validation_result(sources.evaluation)
    examples = ingestion.read_examples(sources.examples, split, (contract.LABEL_KEY, contract.FAMILY_KEY))
    family_of = {e[contract.LABEL_KEY].decode(): e[contract.FAMILY_KEY].decode() for e in examples}

    matrix = confusion_matrix(plots["matrices"].get(0.0, []), len(classes))
    overall = metrics.get("overall", {"candidate": {}, "baseline": {}})
    per_class = []
    for class_id, name in enumerate(classes):
        slice_metrics = metrics.get(f"{contract.LABEL_KEY}:{name}", {"candidate": {}, "baseline": {}})
        row = matrix[class_id].copy()
        row[class_id] = 0
        per_class.append({
            "label": name, "family": family_of.get(name, ""),
            "photos": int(slice_metrics["candidate"].get(contract.EXAMPLE_COUNT, 0)),
            "accuracy": slice_metrics["candidate"].get(contract.ACCURACY),
            "previous_accuracy": slice_metrics["baseline"].get(contract.ACCURACY),
            "top_k_accuracy": slice_metrics["candidate"].get(contract.TOP_K_ACCURACY),
            "precision": overall["candidate"].get(("precision", class_id)),
            "recall": overall["candidate"].get(("recall", class_id)),
            "f1": overall["candidate"].get(("f1_score", class_id)),
            "confused_with": classes[int(row.argmax())] if row.sum() else "",
        })

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
    confusions, shown = [], {}
    off_diagonal = matrix - np.diag(np.diag(matrix))
    for flat in np.argsort(-off_diagonal, axis=None)[:WORST_CONFUSIONS]:
        true_id, predicted_id = np.unravel_index(flat, matrix.shape)
        if off_diagonal[true_id, predicted_id] <= 0:
            break
        true_label, predicted_label = classes[true_id], classes[predicted_id]
        photos = [p for p in predictions if p["label"] == true_label and p["predicted"] == predicted_label]
        shown[len(confusions)] = photos[:THUMBNAILS_PER_CONFUSION]
        confusions.append({"label": true_label, "predicted": predicted_label,
                           "photos": int(matrix[true_id, predicted_id])})
    # Only the photos shown are kept in memory, not the whole split's.
    wanted = {p["source_path"] for photos in shown.values() for p in photos}
    image_of = {}
    if wanted:
        shown_examples = ingestion.read_examples(sources.examples, split, ("source_path", contract.IMAGE_KEY),
                                                 keep=lambda e: e["source_path"].decode() in wanted)
        image_of = {e["source_path"].decode(): e[contract.IMAGE_KEY] for e in shown_examples}
    for index, photos in shown.items():
        confusions[index]["thumbnails"] = [
            {"path": p["source_path"], "confidence": p["confidence"], "jpeg_base64": _thumbnail(image_of[p["source_path"]])}
            for p in photos if p["source_path"] in image_of]

    ingestion_report = _read_text(os.path.join(sources.examples, contract.INGESTION_REPORT_FILE))
    calibration_file = _read_text(os.path.join(path_utils.serving_model_path(sources.model), contract.MODEL_ASSETS_DIR,
                                               contract.CALIBRATION_FILE))
    review_threshold = json.loads(calibration_file).get("review_threshold") if calibration_file else None
    return {
        "pipeline_name": pipeline_name, "split": split, "sources": sources.__dict__,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "blessed": blessed,
        "validation_failures": validation_failures(validation),
        "robustness_failures": robustness_failures(robustness),
        "classes": classes,
        "overall": {"candidate": {k: v for k, v in overall["candidate"].items() if isinstance(k, str)},
                    "baseline": {k: v for k, v in overall["baseline"].items() if isinstance(k, str)}},
        "per_class": per_class,
        "families": slices_of(contract.FAMILY_KEY),
        "size_buckets": slices_of(contract.SIZE_BUCKET_KEY),
        "confusion_matrix": matrix.tolist(),
        "calibration": reliability(plots["calibration"]),
        "review": {threshold: review_trade_off(entries) for threshold, entries in plots["matrices"].items()},
        "robustness": robustness,
        "open_set": open_set_report.collect(robustness, predictions, review_threshold),
        "worst_confusions": confusions,
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
