"""The robustness gate, and its place in the DAG: its blessing is the one the Pusher reads."""
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


def test_the_pusher_reads_the_blessing_robustness_makes_of_the_evaluators(tmp_path):
    from pipeline import configs, dag

    config = configs.PipelineConfig(home=str(tmp_path), min_relative_robustness=0.8, backbone="none")
    nodes = {node.id: node for node in dag.create_pipeline(config).components}
    assert nodes["Robustness"].inputs["model_blessing"].producer_component_id == "Evaluator"
    assert nodes["Robustness"].exec_properties["min_relative_accuracy"] == 0.8
    assert nodes["Pusher"].inputs["model_blessing"].producer_component_id == "Robustness"
    assert nodes["Pusher"].inputs["model_blessing"].output_key == "blessing"
    # The dashboard and the model card give the verdict the Pusher acted on, and the gate's reasons.
    for name in ("SliceReport", "ModelCard"):
        assert nodes[name].inputs["blessing"].producer_component_id == "Robustness", name
        assert nodes[name].inputs["robustness"].producer_component_id == "Robustness", name
