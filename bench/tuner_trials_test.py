"""The Tuner's trials as the bench reads them: the newest Tuner's results, found through ML Metadata."""
import json

import pytest

from bench import tuner_trials
from gemstone import contract, paths
from tests import mlmd_store


def _tuner_run(home, pipeline, trials):
    mlmd = mlmd_store.store(paths.metadata_path(pipeline, str(home)))
    results = home / "Tuner" / "tuner_results" / str(len(trials))
    results.mkdir(parents=True)
    (results / tuner_trials.RESULTS_FILE).write_text(json.dumps(trials))
    found = mlmd_store.artifact(mlmd, "TunerResults", str(results))
    mlmd_store.execution(mlmd, pipeline, tuner_trials.TUNER_ID, mlmd_store.COMPLETE,
                         outputs=[(tuner_trials.RESULTS_KEY, found)])


def test_the_trials_come_best_first_beside_the_trainers_defaults(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path))
    monkeypatch.setattr(tuner_trials, "PIPELINE_NAME", "gems-tuned")
    monkeypatch.setattr(tuner_trials.common, "RESULTS_DIR", tmp_path / "results")
    _tuner_run(tmp_path, "gems-tuned", [{"trial_id": "00", "score": 0.5, "head_l2": 3e-4}])
    _tuner_run(tmp_path, "gems-tuned", [{"trial_id": "00", "score": 0.61, "head_l2": 3e-5},
                                        {"trial_id": "01", "score": 0.72, "head_l2": 1e-4}])

    rows = json.loads(tuner_trials.run().read_text())["rows"]

    assert [(r["trial"], r["eval_accuracy"]) for r in rows[:2]] == [("01", 0.72), ("00", 0.61)]  # the newest run's
    assert rows[2] == {"trial": "defaults (no Tuner)", "eval_accuracy": "",
                       "head_l2": contract.TRAINER_DEFAULTS["head_l2"]}


def test_a_pipeline_without_a_tuner_is_skipped_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path))
    monkeypatch.setattr(tuner_trials, "PIPELINE_NAME", "never-ran")
    assert tuner_trials.run() is None
    assert "no Tuner ran in pipeline never-ran" in capsys.readouterr().out


def test_the_best_values_are_the_best_trials_of_the_newest_tuner(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path))
    _tuner_run(tmp_path, "gems-tuned", [{"trial_id": "00", "score": 0.9, "head_l2": 3e-4, "views": 1}])
    _tuner_run(tmp_path, "gems-tuned", [{"trial_id": "00", "score": 0.61, "head_l2": 3e-5, "views": 2},
                                        {"trial_id": "01", "score": 0.72, "head_l2": 1e-4, "views": 3}])

    assert tuner_trials.best_values("gems-tuned") == {"head_l2": 1e-4, "views": 3}


def test_best_values_without_a_tuner_say_which_pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pipeline never-ran"):
        tuner_trials.best_values("never-ran")
