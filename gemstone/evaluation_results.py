"""What TFMA wrote for one evaluation, read back as plain data: metrics and plots per slice, and their maths.

The dashboard (gemstone/report.py), the model card and the tests read an
evaluation through these, not through TFMA's protos.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np

Z_95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval


def slice_name(slice_key) -> str:
    keys = slice_key.single_slice_keys
    if not keys:
        return "overall"
    key = keys[0]
    value = key.bytes_value.decode() if key.HasField("bytes_value") else (
        key.int64_value if key.HasField("int64_value") else key.float_value)
    return f"{key.column}:{value}"


def load_metrics(evaluation_uri: str) -> Dict[str, Dict[str, Dict[Any, float]]]:
    """{slice: {"candidate" | "baseline": {metric or (metric, class_id): value}}} from TFMA."""
    import tensorflow_model_analysis as tfma

    result = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        per_model = result.setdefault(slice_name(metrics.slice_key), {"candidate": {}, "baseline": {}})
        for kv in metrics.metric_keys_and_values:
            if kv.key.is_diff or not kv.value.HasField("double_value"):
                continue
            model = "baseline" if kv.key.model_name == "baseline" else "candidate"
            name = kv.key.name
            if kv.key.sub_key.HasField("class_id"):
                name = (name, kv.key.sub_key.class_id.value)
            per_model[model][name] = kv.value.double_value.value
    return result


def load_plots(evaluation_uri: str) -> Dict[str, Any]:
    """The overall slice's candidate plots: confusion matrices (by threshold) and calibration buckets."""
    import tensorflow_model_analysis as tfma

    for plots in tfma.load_plots(evaluation_uri):
        if plots.slice_key.single_slice_keys:
            continue
        matrices, buckets = {}, []
        for kv in plots.plot_keys_and_values:
            if kv.key.model_name == "baseline":
                continue
            if kv.value.HasField("multi_class_confusion_matrix_at_thresholds"):
                for matrix in kv.value.multi_class_confusion_matrix_at_thresholds.matrices:
                    matrices[round(matrix.threshold, 6)] = [
                        (e.actual_class_id, e.predicted_class_id, e.num_weighted_examples) for e in matrix.entries]
            if kv.value.HasField("calibration_histogram_buckets"):
                buckets = [(b.num_weighted_examples.value, b.total_weighted_label.value,
                            b.total_weighted_refined_prediction.value, b.lower_threshold_inclusive)
                           for b in kv.value.calibration_histogram_buckets.buckets]
        return {"matrices": matrices, "calibration": buckets}
    return {"matrices": {}, "calibration": []}


def confusion_matrix(entries, num_classes: int) -> np.ndarray:
    """rows = true class id, columns = predicted class id; predictions under the threshold dropped."""
    matrix = np.zeros((num_classes, num_classes))
    for actual, predicted, count in entries:
        if 0 <= actual < num_classes and 0 <= predicted < num_classes:
            matrix[actual, predicted] += count
    return matrix


def reliability(buckets) -> Dict[str, Any]:
    """Per confidence bucket: photos, accuracy, mean confidence; and the expected calibration error."""
    rows = [{"from": lower, "photos": n, "accuracy": correct / n, "confidence": confidence / n}
            for n, correct, confidence, lower in buckets if n > 0]
    total = sum(r["photos"] for r in rows)
    ece = sum(r["photos"] / total * abs(r["accuracy"] - r["confidence"]) for r in rows) if total else float("nan")
    return {"buckets": rows, "ece": ece, "ece_by_chance_p95": ece_by_chance_p95(rows)}


def ece_by_chance_p95(buckets, draws: int = 1000, seed: int = 0) -> float:
    """The ECE that a perfectly calibrated model with these buckets' photos and confidences stays under 19
    times in 20 (each bucket's photos drawn right with probability its confidence). ECE is never 0 on a finite
    test set: on gem88's 527 test photos this is about 0.05. The per-photo form is modules/calibration.py's
    ece_by_chance (the bench's); TFMA hands the dashboard buckets, not photos."""
    if not buckets:
        return float("nan")
    photos = np.array([round(b["photos"]) for b in buckets])
    confidence = np.array([b["confidence"] for b in buckets])
    right = np.random.default_rng(seed).binomial(photos, confidence, (draws, len(buckets)))
    eces = (np.abs(right / np.maximum(photos, 1) - confidence) * photos).sum(axis=1) / max(photos.sum(), 1)
    return float(np.percentile(eces, 95))


def review_trade_off(entries_at_threshold) -> Dict[str, float]:
    """Share of photos answered without review, and their accuracy, at the review threshold."""
    total = sum(c for _, _, c in entries_at_threshold)
    answered = sum(c for _, p, c in entries_at_threshold if p >= 0)
    right = sum(c for a, p, c in entries_at_threshold if p >= 0 and a == p)
    return {"coverage": answered / total if total else float("nan"),
            "accuracy": right / answered if answered else float("nan")}


def wilson_interval(successes: float, trials: float, z: float = Z_95) -> Optional[Tuple[float, float]]:
    """The Wilson score interval of a proportion (95 % by default); None without trials.

    Wilson's, not the textbook p +- z sqrt(p(1-p)/n): with the few test photos a class has, that one gives
    an interval of width 0 at 0 or 100 % and runs past 0 and 1. Newcombe (1998) compares them.
    """
    if trials <= 0:
        return None
    share = successes / trials
    denominator = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    half_width = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half_width), min(1.0, centre + half_width)
