"""Why a model was or was not blessed: the verdict the Pusher acts on, and the reasons, one line each.

Read by the dashboard (gemstone/report.py) and the model card, from the blessing, TFMA's validation
result and the Robustness component's report (its gates); the thresholds from the Evaluator's settings.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from gemstone import contract
from gemstone.evaluation_results import slice_name


def validation_failures(validation) -> List[str]:
    """TFMA's reasons for not blessing, one line each (slice, metric, value, threshold)."""
    lines = []
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            lines.append(f"{slice_name(per_slice.slice_key)}: {failure.metric_key.name} "
                         f"({failure.metric_key.model_name or 'candidate'}"
                         f"{', change against the baseline' if failure.metric_key.is_diff else ''}) = "
                         f"{failure.metric_value.double_value.value:.4f}; "
                         + " ".join(str(failure.metric_threshold).split()))
    return lines


def is_blessed(blessing) -> bool:
    """The verdict the Pusher acts on: the ModelBlessing artifact's `blessed` custom property."""
    return blessing.get_int_custom_property(contract.BLESSED_PROPERTY) == 1


def pushed_to(pushed_model) -> Optional[str]:
    """The version folder a PushedModel says the Pusher wrote; None if it pushed nothing. `pushed_model`: a TFX
    Artifact (in a component) or ML Metadata's record of one (read from the store)."""
    properties = getattr(pushed_model, "mlmd_artifact", pushed_model).custom_properties
    if "pushed" not in properties or not properties["pushed"].int_value:
        return None
    return properties["pushed_destination"].string_value or None


def robustness_failures(robustness: Optional[Dict[str, Any]]) -> List[str]:
    """The robustness gate's failures recorded in robustness.json (none when the gate is off)."""
    return list(((robustness or {}).get("gate") or {}).get("failures") or [])


def rejection_reasons(evaluator_failures: List[str], gate_failures: List[str]) -> List[str]:
    """Why a model is not blessed, one line each: the Evaluator's failed thresholds, the robustness gate's."""
    return ([f"Evaluator threshold failed: {line}" for line in evaluator_failures]
            + [f"Robustness gate failed: {line}" for line in gate_failures])


def accuracy_thresholds(eval_config: Dict[str, Any]) -> Tuple[Optional[float], Optional[float]]:
    """(the accuracy floor, the largest drop allowed against the baseline) of an EvalConfig as JSON, the Evaluator's
    exec property: what a blessed model passed. None for a threshold the config does not set."""
    for spec in eval_config.get("metrics_specs", []):
        for metric in spec.get("metrics", []):
            if metric.get("class_name") != contract.ACCURACY_CLASS:
                continue
            for per_slice in metric.get("per_slice_thresholds", []):
                threshold = per_slice.get("threshold", {})
                change = threshold.get("change_threshold", {}).get("absolute")
                return threshold.get("value_threshold", {}).get("lower_bound"), -change if change is not None else None
    return None, None
