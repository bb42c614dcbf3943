"""The pipeline's Evaluator: TFX's component, with an executor that never compares a model with itself.

Same inputs, outputs and node id ("Evaluator") as TFX's; see executor.py for the one difference.
"""
from __future__ import annotations

from tfx.components.evaluator import component as tfx_evaluator
from tfx.dsl.components.base import executor_spec

from components.evaluator import executor


class Evaluator(tfx_evaluator.Evaluator):
    """TFX's Evaluator; when the latest blessed model is the candidate itself, it is evaluated with no baseline."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
