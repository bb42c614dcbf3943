"""Evaluator executor: TFX's, except that a model is never its own baseline.

When nothing changed since a run that blessed and pushed a model, the Trainer's
output comes from the cache, and the latest blessed model (the baseline the
resolver finds) is that same artifact: TFX's Evaluator would compare the model
with itself ("change +0.000"). Here the baseline is dropped in that case: the
model is evaluated alone, as on a first run (the accuracy floor applies, the
change threshold has nothing to compare with), and the blessing records why
(contract.CANDIDATE_IS_LATEST_BLESSED_PROPERTY).
"""
from __future__ import annotations

from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.types import standard_component_specs

from gemstone import contract

MODEL_KEY = standard_component_specs.MODEL_KEY
BASELINE_MODEL_KEY = standard_component_specs.BASELINE_MODEL_KEY
BLESSING_KEY = standard_component_specs.BLESSING_KEY


def baseline_is_candidate(input_dict: Dict[str, List[types.Artifact]]) -> bool:
    """Whether the baseline model is the candidate artifact itself (same ML Metadata id)."""
    candidates, baselines = input_dict.get(MODEL_KEY) or [], input_dict.get(BASELINE_MODEL_KEY) or []
    return len(candidates) == len(baselines) == 1 and candidates[0].id == baselines[0].id


class Executor(tfx_evaluator.Executor):
    """TFX's Evaluator executor, with no baseline when the baseline is the candidate."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:  # noqa: N802 - TFX's name
        if not baseline_is_candidate(input_dict):
            super().Do(input_dict, output_dict, exec_properties)
            return
        model = input_dict[MODEL_KEY][0]
        logging.info("Evaluator: the baseline is the candidate itself (model %d, the latest blessed one): "
                     "evaluated alone, not compared with itself.", model.id)
        super().Do({key: value for key, value in input_dict.items() if key != BASELINE_MODEL_KEY},
                   output_dict, exec_properties)
        for blessing in output_dict.get(BLESSING_KEY) or []:
            blessing.set_int_custom_property(contract.CANDIDATE_IS_LATEST_BLESSED_PROPERTY, 1)
