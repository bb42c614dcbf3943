"""What the Evaluator measures (TFMA), and what blesses a model.

Slices: overall, per variety (label), per mineral family, per photo-size bucket.
Metrics on every slice: accuracy, top-3 accuracy, example count, the
multi-class confusion matrix (at confidence 0 and at the review threshold, so
the report can show what the "needs expert review" flag buys), and a
reliability diagram of the top-1 confidence (TFMA's CalibrationPlot on the
top-1 binarisation). Per-class precision / recall / F1 (argmax) are TFMA's
binarised metrics, one per class id, when the class count is known (from the
curated schema's label domain).

Blessing: accuracy on the overall slice must reach a floor, and may not fall
more than a tolerance below the latest blessed model's (change threshold).
"""
from __future__ import annotations

from typing import Optional

import tensorflow_model_analysis as tfma

from gemstone import contract

# The split that judges the model. Trainer trains on `train` and early-stops
# on `eval`; `test` is seen by nothing before the Evaluator.
EVAL_SPLIT = "test"

SLICE_FEATURES = (contract.LABEL_KEY, contract.FAMILY_KEY, contract.SIZE_BUCKET_KEY)


def eval_config(min_accuracy: float, max_accuracy_drop: float, review_threshold: float,
                num_classes: Optional[int]) -> tfma.EvalConfig:
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
        # Ignored on the first run, when there is no blessed model yet.
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -max_accuracy_drop}),
    )
    metrics_specs = [
        tfma.MetricsSpec(metrics=[
            # The gate is on the overall slice; per-class figures are for people to review.
            tfma.MetricConfig(class_name=contract.ACCURACY_CLASS, per_slice_thresholds=[
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=accuracy_threshold)]),
            tfma.MetricConfig(class_name="SparseTopKCategoricalAccuracy", config=f'"k": {contract.TOP_K}'),
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot",
                              config=f'"thresholds": [0.0, {review_threshold}]'),
        ]),
        # Top-1 binarisation: label 1 when the top class is right, prediction = its confidence.
        tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="CalibrationPlot",
                                                    config=f'"num_buckets": {contract.ECE_BINS}')],
                         binarize=tfma.BinarizationOptions(k_list={"values": [1]})),
    ]
    if num_classes:
        # One-vs-rest per class id, predicted positive when it is the top-1 class (top_k sets the
        # others to -inf). The explicit threshold 0 matters: with TFMA's default (-inf), a class
        # that is never the top-1 answer counts every photo as predicted positive (TFMA 0.47).
        metrics_specs.append(tfma.MetricsSpec(
            metrics=[tfma.MetricConfig(class_name=name, config='"top_k": 1, "thresholds": [0.0]')
                     for name in ("Precision", "Recall", "F1Score")],
            binarize=tfma.BinarizationOptions(class_ids={"values": list(range(num_classes))})))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            # The signatures are what TFMA calls. Named, the type spares TFMA its probe, which
            # loads each model with Keras first to find out.
            model_type=tfma.TF_GENERIC,
            signature_name="from_examples",
            prediction_key="probabilities",
            label_key=contract.LABEL_XF,
            preprocessing_function_names=["transform_features"],
        )],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[key]) for key in SLICE_FEATURES],
        metrics_specs=metrics_specs,
        # The model's own compiled metrics are per training head and need
        # training-time labels; TFMA computes what matters from `probabilities`.
        options=tfma.Options(include_default_metrics={"value": False}),
    )
