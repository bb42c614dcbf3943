"""The pipeline's Evaluator executor: TFX's, but never given the candidate itself as its baseline.

TFX's own evaluation is replaced by a stand-in that records what it was given: what is checked here is what the
executor hands it and records. (The real Evaluator on a second run with nothing changed: tests/test_pipeline_e2e.py.)
"""
import pytest
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.types import standard_artifacts

from components.evaluator import executor
from gemstone import contract


def _model(artifact_id: int):
    model = standard_artifacts.Model()
    model.id = artifact_id
    return model


@pytest.fixture
def evaluated(monkeypatch):
    """evaluate(candidate id, baseline id or None) -> (the inputs TFX's Do was given, the blessing)."""
    given = []
    monkeypatch.setattr(tfx_evaluator.Executor, "Do", lambda self, inputs, outputs, properties: given.append(inputs))

    def evaluate(candidate: int, baseline=None):
        inputs = {"model": [_model(candidate)], "examples": [standard_artifacts.Examples()]}
        if baseline is not None:
            inputs["baseline_model"] = [_model(baseline)]
        blessing = standard_artifacts.ModelBlessing()
        executor.Executor().Do(inputs, {"evaluation": [standard_artifacts.ModelEvaluation()],
                                        "blessing": [blessing]}, {})
        return given.pop(), blessing

    return evaluate


def test_a_model_is_not_its_own_baseline(evaluated):
    inputs, blessing = evaluated(candidate=8, baseline=8)
    assert "baseline_model" not in inputs and [m.id for m in inputs["model"]] == [8]
    assert blessing.get_int_custom_property(contract.CANDIDATE_IS_LATEST_BLESSED_PROPERTY) == 1


@pytest.mark.parametrize("baseline", [3, None])
def test_another_baseline_or_none_is_passed_on_as_it_is(evaluated, baseline):
    inputs, blessing = evaluated(candidate=8, baseline=baseline)
    assert [m.id for m in inputs.get("baseline_model", [])] == ([baseline] if baseline else [])
    assert not blessing.has_custom_property(contract.CANDIDATE_IS_LATEST_BLESSED_PROPERTY)
