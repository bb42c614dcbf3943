"""The Tuner's trials as the bench reads them: the newest Tuner's results, found through ML Metadata."""
import json

import keras_tuner
import pytest

from bench import tuner_trials
from gemstone import contract, paths
from tests import mlmd_store


def _tuner_run(home, pipeline, trials, best=None):
    """A finished Tuner execution: its trials, and its best hyperparameters as keras_tuner writes them."""
    mlmd = mlmd_store.store(paths.metadata_path(pipeline, str(home)))
    results = home / "Tuner" / tuner_trials.RESULTS_KEY / str(len(trials))
    results.mkdir(parents=True)
    (results / tuner_trials.RESULTS_FILE).write_text(json.dumps(trials))
    outputs = [(tuner_trials.RESULTS_KEY, mlmd_store.artifact(mlmd, "TunerResults", str(results)))]
    if best is not None:
        hyperparameters = keras_tuner.HyperParameters()
        for name, value in best.items():
            hyperparameters.Fixed(name, value)
        folder = home / "Tuner" / tuner_trials.BEST_KEY / str(len(trials))
        folder.mkdir(parents=True)
        (folder / tuner_trials.BEST_FILE).write_text(json.dumps(hyperparameters.get_config()))
        outputs.append((tuner_trials.BEST_KEY, mlmd_store.artifact(mlmd, "HyperParameters", str(folder))))
    mlmd_store.execution(mlmd, pipeline, tuner_trials.TUNER_ID, mlmd_store.COMPLETE, outputs=outputs)


def test_the_trials_come_best_first_beside_the_trainers_defaults(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path))
    monkeypatch.setattr(tuner_trials, "PIPELINE_NAME", "gems-tuned")
    monkeypatch.setattr(tuner_trials.common, "RESULTS_DIR", tmp_path / "results")
    _tuner_run(tmp_path, "gems-tuned", [{"trial_id": "00", "score": 0.5, "head_l2": 3e-4}])
    _tuner_run(tmp_path, "gems-tuned", [{"trial_id": "00", "score": 0.715, "head_l2": 3e-5},
                                        {"trial_id": "01", "score": 0.72, "head_l2": 1e-4}], best={"head_l2": 3e-5})

    rows = json.loads(tuner_trials.run().read_text())["rows"]

    # The newest run's trials, best first; the one handed on is the Tuner's choice, not always the top score.
    assert [(r["trial"], r["eval_accuracy"], r["handed_on"]) for r in rows[:2]] == [("01", 0.72, ""),
                                                                                    ("00", 0.715, "yes")]
    assert rows[2] == {"trial": "defaults (no Tuner)", "eval_accuracy": "",
                       "head_l2": contract.TRAINER_DEFAULTS["head_l2"], "handed_on": ""}


def test_a_pipeline_without_a_tuner_is_skipped_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path))
    monkeypatch.setattr(tuner_trials, "PIPELINE_NAME", "never-ran")
    assert tuner_trials.run() is None
    assert "no Tuner ran in pipeline never-ran" in capsys.readouterr().out


def test_the_best_values_are_the_newest_tuners_best_hyperparameters(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path))
    _tuner_run(tmp_path, "gems-tuned", [{"trial_id": "00", "score": 0.9, "head_l2": 3e-4, "views": 1}],
               best={"head_l2": 3e-4, "views": 1})
    # Two trials tied: the Tuner's own choice stands (what its Trainer trained with), not the first or last of them.
    _tuner_run(tmp_path, "gems-tuned", [{"trial_id": "00", "score": 0.72, "head_l2": 3e-5, "views": 2},
                                        {"trial_id": "01", "score": 0.72, "head_l2": 1e-4, "views": 3}],
               best={"head_l2": 1e-4, "views": 3})

    assert tuner_trials.best_values("gems-tuned") == {"head_l2": 1e-4, "views": 3}


def test_best_values_without_a_tuner_say_which_pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pipeline never-ran"):
        tuner_trials.best_values("never-ran")
