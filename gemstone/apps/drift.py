"""Drift: do the photos being served still look like the ones the model learned from?

Compares the prediction log written by `gemstone serve` (TF Serving's
PredictionLog records, or the JSON Lines log it wrote before) with the training
split's statistics (StatisticsGen's output, found through ML Metadata), with
TFDV's drift comparators:
  * each image statistic (brightness, contrast, saturation, sharpness, aspect
    ratio): Jensen-Shannon divergence of the distributions;
  * the predicted variety against the training labels: L-infinity distance of
    the class shares;
and the model's confidence against what it showed on the eval split at
training time (mean confidence, share flagged for review).

Under MIN_PREDICTIONS logged predictions it gives no verdict: with a handful of
photos every distribution looks shifted (one photo is 100 % of one class).
From 100, sampling noise is well under the thresholds: on 8 classes the
largest class-share deviation is about 0.08 against the 0.3 threshold, the
Jensen-Shannon divergence of a 10-bucket histogram about 0.02 against 0.2,
and a review rate of 30 % moves by about 0.05 against the 0.15 allowed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from gemstone import contract, image_stats, images, paths
from gemstone.apps import metadata
from gemstone.text import plural

JSD_THRESHOLD = 0.2
LABEL_LINF_THRESHOLD = 0.3
CONFIDENCE_DROP = 0.1
REVIEW_RATE_RISE = 0.15
REPORT_FILE = "drift_report.json"
MIN_PREDICTIONS = 100  # no verdict on fewer logged predictions (see above)
TRAIN_SPLIT = "train"  # the statistics the served photos are compared with


def read_logs(log_dir: str) -> List[Dict[str, Any]]:
    """One row per logged photo (the JSON Lines log's record: model, version, the compact answer and `stats`,
    the photo's image statistics), from both kinds of log in `log_dir`."""
    rows = []
    for path in sorted(Path(log_dir).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    for path in sorted(Path(log_dir).glob(contract.PREDICTION_LOG_RECORDS)):
        rows.extend(prediction_log_rows(path))
    if not rows:
        raise FileNotFoundError(f"no logged predictions (*.jsonl or {contract.PREDICTION_LOG_RECORDS}) under {log_dir}")
    return rows


def prediction_log_rows(path: Path) -> Iterator[Dict[str, Any]]:
    """The rows of a TFRecord file of TF Serving PredictionLog records (one per request, its photos in the request,
    each `serving_default` output in the response): the answer as the response has it, the image statistics
    measured on the request's photos with the project's own code, as serve measures each photo it is sent."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    for number, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
        log = prediction_log_pb2.PredictionLog.FromString(record).predict_log
        spec = log.response.model_spec if log.response.HasField("model_spec") else log.request.model_spec
        photos = tf.make_ndarray(log.request.inputs[contract.SERVING_INPUT]).ravel().tolist()
        predictions = contract.prediction_records({name: tf.make_ndarray(tensor)
                                                   for name, tensor in log.response.outputs.items()})
        if len(photos) != len(predictions):
            raise ValueError(f"{path}, record {number}: {plural(len(photos), 'photo')} in the request, "
                             f"{plural(len(predictions), 'answer')} in the response")
        version = str(spec.version.value) if spec.HasField("version") else ""
        for photo, prediction in zip(photos, predictions):
            yield {"model": spec.name, "version": version, **contract.compact(prediction),
                   "stats": images.decode_image_bytes(photo).stats.numeric()}


def logged_model(rows: List[Dict[str, Any]]) -> Optional[str]:
    """The model name most logged predictions were served under (serve's --model-name, by default the pipeline's)."""
    names = [r.get("model") for r in rows if r.get("model")]
    return max(set(names), key=names.count) if names else None


def latest_train_statistics(pipeline_name: str, home: Optional[str] = None):
    """The newest StatisticsGen output's train split, located through MLMD, read by TFX's own loader."""
    from tfx.components.statistics_gen import stats_artifact_utils

    statistics = metadata.latest_output(metadata.open_store(pipeline_name, home), contract.STATISTICS_GEN_ID,
                                        "statistics")
    if statistics is None:
        raise FileNotFoundError(f"pipeline {pipeline_name!r} has no statistics yet: run it first")
    return stats_artifact_utils.load_statistics(statistics, TRAIN_SPLIT).proto()


def _serving_statistics(rows: List[Dict[str, Any]]):
    import pandas as pd
    import tensorflow_data_validation as tfdv

    frame = pd.DataFrame([{**row["stats"], "label": row["label"]} for row in rows])
    return tfdv.generate_statistics_from_dataframe(frame)


def _comparison_schema(train_stats):
    import tensorflow_data_validation as tfdv

    schema = tfdv.infer_schema(train_stats)
    keep = set(image_stats.NUMERIC) | {"label"}
    for feature in list(schema.feature):
        if feature.name not in keep:
            schema.feature.remove(feature)
    del schema.string_domain[:]  # served photos may be predicted any class; compare shares, not domains
    for feature in schema.feature:
        feature.ClearField("presence")
        feature.ClearField("domain")
        if feature.name == "label":
            feature.drift_comparator.infinity_norm.threshold = LABEL_LINF_THRESHOLD
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = JSD_THRESHOLD
    return schema


def check(log_dir: str, pipeline_name: str, home: Optional[str] = None,
          min_predictions: int = MIN_PREDICTIONS) -> Dict[str, Any]:
    """The drift report. `judged` is False (and nothing is compared) under `min_predictions` logged predictions."""
    rows = read_logs(log_dir)
    confidence = sum(r["confidence"] for r in rows) / len(rows)
    review_rate = sum(bool(r["needs_review"]) for r in rows) / len(rows)
    result = {
        "pipeline": pipeline_name, "logged_predictions": len(rows), "logged_model": logged_model(rows),
        "min_predictions": min_predictions, "judged": len(rows) >= min_predictions,
        "mean_confidence": round(confidence, 4), "review_rate": round(review_rate, 4),
        "reference": None, "thresholds": {"jensen_shannon": JSD_THRESHOLD, "label_linf": LABEL_LINF_THRESHOLD,
                                          "confidence_drop": CONFIDENCE_DROP,
                                          "review_rate_rise": REVIEW_RATE_RISE},
        "anomalies": [], "drifted": False,
    }
    if not result["judged"]:
        return result

    import tensorflow_data_validation as tfdv

    train_stats = latest_train_statistics(pipeline_name, home)
    anomalies = tfdv.validate_statistics(_serving_statistics(rows), _comparison_schema(train_stats),
                                         previous_statistics=train_stats)
    findings = [{"feature": name, "kind": "drift", "description": info.description}
                for name, info in sorted(anomalies.anomaly_info.items())]
    reference = _reference_confidence(pipeline_name, home, rows)
    if reference:
        if confidence < reference["mean_confidence"] - CONFIDENCE_DROP:
            findings.append({"feature": "confidence", "kind": "drift", "description":
                             f"mean confidence {confidence:.3f} vs {reference['mean_confidence']:.3f} on eval"})
        if review_rate > reference["review_rate"] + REVIEW_RATE_RISE:
            findings.append({"feature": "needs_review", "kind": "drift", "description":
                             f"{review_rate:.1%} flagged for review vs {reference['review_rate']:.1%} on eval"})
    return {**result, "reference": reference, "anomalies": findings, "drifted": bool(findings)}


def _reference_confidence(pipeline_name: str, home: Optional[str], rows) -> Optional[Dict[str, float]]:
    """Eval-time confidence of the model version that served most of the logged predictions."""
    versions = [r.get("version") for r in rows if r.get("version")]
    base = paths.serving_dir(pipeline_name, home)
    version = max(set(versions), key=versions.count) if versions else None
    folder = base / version if version else paths.latest_version_dir(base)
    path = folder / contract.MODEL_ASSETS_DIR / contract.CALIBRATION_FILE if folder else None
    if not path or not path.is_file():
        return None
    calibration = json.loads(path.read_text())
    return {"mean_confidence": calibration["mean_confidence"], "review_rate": calibration["review_rate"]}
