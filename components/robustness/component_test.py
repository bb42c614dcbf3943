"""The robustness gate (its place in the DAG: pipeline/dag_test.py)."""
from components.robustness import component


def _report(clean, **accuracies):
    return {"clean": {"accuracy": clean}, "corruptions": [
        {"name": name, "description": name, "accuracy": a, "relative_accuracy": a / clean}
        for name, a in accuracies.items()]}


def test_gate_names_each_corruption_under_the_required_share():
    report = _report(0.9, blur=0.85, jpeg_q10=0.45, darker=0.75)
    failures = component.gate_failures(report, min_relative_accuracy=0.8)
    assert len(failures) == 1 and failures[0].startswith("jpeg_q10") and "50%" in failures[0]
    assert component.gate_failures(report, min_relative_accuracy=0.0) == []  # gate off
    assert len(component.gate_failures(report, min_relative_accuracy=0.95)) == 3
