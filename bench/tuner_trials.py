"""The TFX Tuner's trials on the pretrained head: what it tried, and how each did on the eval photos.

Reads the newest `tuner_results` artifact of a pipeline run with the Tuner (GEMSTONE_TUNE=1), found
through the pipeline's ML Metadata: one row per completed trial (its hyperparameters and eval
accuracy, best first), and a row of the Trainer's defaults for the same hyperparameters. The model
the Trainer then made with the best values (the Tuner's `best_hyperparameters` output, which
`bench model_quality`'s `tuned` rows train with again) is judged like any other (the run's test accuracy).

    GEMSTONE_TUNE=1 make run DATA=../shared/data/gemstones-88 PIPELINE_NAME=gem88-tuned
    BENCH_PIPELINE_NAME=gem88-tuned python -m bench tuner_trials
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional, Tuple

from bench import common

PIPELINE_NAME = os.environ.get("BENCH_PIPELINE_NAME") or "gem88-tuned"
# TFX's names: the Tuner's node, its two outputs and the file in each.
TUNER_ID = "Tuner"
RESULTS_KEY, RESULTS_FILE = "tuner_results", "tuner_results.json"
BEST_KEY, BEST_FILE = "best_hyperparameters", "best_hyperparameters.txt"


def _newest_output(pipeline_name: str, key: str) -> Optional[str]:
    """The URI of output `key` of the pipeline's newest finished Tuner, or None if none ran."""
    from gemstone.apps import metadata

    try:
        return metadata.latest_output_uri(metadata.open_store(pipeline_name), TUNER_ID, key)
    except FileNotFoundError:  # the pipeline never ran here
        return None


def newest_trials(pipeline_name: str) -> Optional[Tuple[str, List[dict]]]:
    """(where, trials) of the newest Tuner of a pipeline (its tuner_results), or None if none ran."""
    uri = _newest_output(pipeline_name, RESULTS_KEY)
    return None if uri is None else (uri, json.loads((Path(uri) / RESULTS_FILE).read_text()))


def best_values(pipeline_name: str) -> dict:
    """The newest Tuner's best hyperparameters: its `best_hyperparameters` output, which its Trainer trained with."""
    import keras_tuner

    uri = _newest_output(pipeline_name, BEST_KEY)
    if uri is None:
        raise FileNotFoundError(f"no Tuner's best hyperparameters in pipeline {pipeline_name}")
    return keras_tuner.HyperParameters.from_config(json.loads((Path(uri) / BEST_FILE).read_text())).values


def run():
    from gemstone import contract

    found = newest_trials(PIPELINE_NAME)
    if found is None:
        print(f"tuner_trials: skipped, no Tuner ran in pipeline {PIPELINE_NAME} (GEMSTONE_TUNE=1 `make run` first)")
        return None
    uri, trials = found
    names = [name for name in trials[0] if name not in ("trial_id", "score")] if trials else []
    try:
        best = best_values(PIPELINE_NAME)
    except FileNotFoundError:  # a Tuner that wrote its trials but not its choice
        best = None
    rows = []
    for trial in sorted(trials, key=lambda t: -t["score"]):
        values = {n: trial[n] for n in names}
        rows.append({"trial": trial["trial_id"], "eval_accuracy": trial["score"], **values,
                     "handed_on": "yes" if values == best else ""})
    rows.append({"trial": "defaults (no Tuner)", "eval_accuracy": "",
                 **{n: contract.TRAINER_DEFAULTS.get(n, "") for n in names}, "handed_on": ""})
    return common.record("tuner_trials", rows, notes=(
        f"The Tuner of pipeline {PIPELINE_NAME} ({uri}): {len(trials)} completed trials, each the head trained "
        f"alone on the cached frozen features and scored on the eval photos; the Trainer trains with the values "
        f"handed on: the best trial's, unless it beat the first (the Trainer's own values) by less than a margin."))


if __name__ == "__main__":
    run()
