"""The robustness gate, and its place in the DAG: it must run before the Pusher."""
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


def test_pusher_waits_for_robustness_so_the_gate_can_stop_the_push(tmp_path):
    from pipeline import configs, pipeline

    config = configs.PipelineConfig(home=str(tmp_path), min_relative_robustness=0.8, backbone="none")
    nodes = {node.id: node for node in pipeline.create_pipeline(config).components}
    assert "Robustness" in {n.id for n in nodes["Pusher"].upstream_nodes}
    assert nodes["Robustness"].exec_properties["min_relative_accuracy"] == 0.8
    assert {"Evaluator", "Robustness"} <= {n.id for n in nodes["SliceReport"].upstream_nodes}
