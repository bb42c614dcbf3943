"""The Evaluator's configuration: slices, metrics and the blessing thresholds."""
from pipeline import evaluation


def _metric_names(config):
    return [m.class_name for spec in config.metrics_specs for m in spec.metrics]


def test_slices_overall_and_per_variety_family_and_size():
    config = evaluation.eval_config(0.5, 0.02, 0.6, num_classes=8)
    slices = [tuple(s.feature_keys) for s in config.slicing_specs]
    assert slices == [(), ("label",), ("family",), ("size_bucket",)]


def test_blessing_needs_the_floor_and_no_regression_on_the_overall_slice():
    config = evaluation.eval_config(0.7, 0.03, 0.6, num_classes=8)
    accuracy = next(m for spec in config.metrics_specs for m in spec.metrics
                    if m.class_name == "SparseCategoricalAccuracy")
    (gate,) = accuracy.per_slice_thresholds
    assert list(gate.slicing_specs[0].feature_keys) == []
    assert gate.threshold.value_threshold.lower_bound.value == 0.7
    assert abs(gate.threshold.change_threshold.absolute.value + 0.03) < 1e-9


def test_per_class_precision_recall_f1_for_every_class_when_the_count_is_known():
    config = evaluation.eval_config(0.5, 0.02, 0.6, num_classes=88)
    per_class = [s for s in config.metrics_specs if s.binarize.class_ids.values]
    assert len(per_class) == 1 and list(per_class[0].binarize.class_ids.values) == list(range(88))
    assert [m.class_name for m in per_class[0].metrics] == ["Precision", "Recall", "F1Score"]
    without = evaluation.eval_config(0.5, 0.02, 0.6, num_classes=None)
    assert "Precision" not in _metric_names(without)
    assert {"SparseTopKCategoricalAccuracy", "MultiClassConfusionMatrixPlot", "CalibrationPlot"} <= \
        set(_metric_names(without))


def test_the_thresholds_are_read_back_from_the_config_the_evaluator_records():
    """As ML Metadata keeps the Evaluator's eval_config (TFX's JSON): what `gemstone run-pipeline` says a model
    passed."""
    import json

    from tfx.utils import proto_utils

    from gemstone import verdict

    recorded = json.loads(proto_utils.proto_to_json(evaluation.eval_config(0.7, 0.03, 0.6, num_classes=8)))
    floor, drop = verdict.accuracy_thresholds(recorded)
    assert floor == 0.7 and abs(drop - 0.03) < 1e-9
    assert verdict.accuracy_thresholds({"metrics_specs": []}) == (None, None)
