"""Robustness: the trained model's accuracy on corrupted copies of the evaluation photos.

Runs after the Trainer, on the same split the Evaluator judges. For each
corruption in `corruptions.CORRUPTIONS` (noise, blur, JPEG 30 and 10,
brightness, colour temperature, down-scaling) it sends the corrupted photos
through the exported `serving_default` signature, exactly as a client would,
and records accuracy, accuracy relative to the clean photos, and how often the
answer stays the same. The clean predictions are kept per photo
(`predictions.jsonl`) for the report's worst confusions.

The blessing the Pusher reads: Robustness takes the Evaluator's blessing and
writes a `ModelBlessing` of its own, as the Evaluator writes one (custom
property `blessed`: 1 or 0, and BLESSED / NOT_BLESSED marker files), blessed
only when the Evaluator blessed the model AND the optional gate passed. Gate:
with `min_relative_accuracy` > 0 a model is not robust enough when any
corruption keeps less than that share of the clean accuracy. A rejected model
is not pushed, but the run goes on (and ends without error): the dashboard and
the model card say why. The blessing also records `evaluator_blessed`,
`robustness_passed` and the reasons (`blessing_message`, one per line).

A custom component with a Beam executor, as TFX's own are: this file declares
what goes in and out, executor.py does the work, on the pipeline's Beam runner
(TFX hands the pipeline's beam_pipeline_args to a BaseBeamExecutor).
"""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.artifacts import RobustnessReport
from components.robustness import executor


class RobustnessSpec(types.ComponentSpec):
    """The model, the examples it is judged on and the Evaluator's blessing in; the report and the blessing the
    Pusher reads out."""

    PARAMETERS = {
        executor.SPLIT_KEY: ExecutionParameter(type=str),
        executor.MAX_EXAMPLES_KEY: ExecutionParameter(type=int),
        executor.MIN_RELATIVE_ACCURACY_KEY: ExecutionParameter(type=float),
        executor.MAX_FLAGGED_KNOWN_KEY: ExecutionParameter(type=float),
    }
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }
    OUTPUTS = {
        executor.REPORT_KEY: ChannelParameter(type=RobustnessReport),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class Robustness(base_beam_component.BaseBeamComponent):
    """Measures accuracy under each corruption and the open-set verdicts; blesses the model when the Evaluator
    did and the gates passed (robustness; at most `max_flagged_known` of the known test photos flagged).

    `model_blessing`: the Evaluator's. Output `blessing`: the one the Pusher reads. Never fails because of a gate.
    """

    SPEC_CLASS = RobustnessSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel, model_blessing: types.BaseChannel,
                 split: str = "test", max_examples: int = 2000, min_relative_accuracy: float = 0.0,
                 max_flagged_known: float = 0.1):
        super().__init__(spec=RobustnessSpec(
            model=model, examples=examples, model_blessing=model_blessing, split=split, max_examples=max_examples,
            min_relative_accuracy=min_relative_accuracy, max_flagged_known=max_flagged_known,
            report=types.Channel(type=RobustnessReport),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing)))
