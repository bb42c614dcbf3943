"""The Tuner's search: its first trial is the Trainer's own values, then random ones, none twice; the own values stay
best unless a trial beats them by a margin."""
import keras_tuner

from gemstone import contract
from modules import tuner


def _trials(tmp_path, config, count):
    space = tuner._space(tuner.TRANSFER_SEARCH_SPACE, config)
    oracle = tuner._oracle(space, {**config, "tuner_trials": count})
    oracle._set_project_dir(str(tmp_path), "search")
    return [oracle.create_trial(f"tuner{i}").hyperparameters.values for i in range(count)]


def test_the_first_trial_is_the_trainers_own_values_and_the_rest_differ(tmp_path):
    config = {**contract.TRAINER_DEFAULTS, "learning_rate": 4e-3, "views": 2}

    trials = _trials(tmp_path, config, 4)

    assert trials[0] == {name: config[name] for name in tuner.TRANSFER_SEARCH_SPACE}
    assert all(trial != trials[0] for trial in trials[1:])
    assert len({tuple(sorted(trial.items())) for trial in trials}) == 4


def test_a_value_outside_the_choices_leaves_the_first_choice_as_default(tmp_path):
    config = {**contract.TRAINER_DEFAULTS, "head_l2": 0.5}

    assert _trials(tmp_path, config, 1)[0]["head_l2"] == tuner.TRANSFER_SEARCH_SPACE["head_l2"][0]


def _scored_search(tmp_path, scores, min_gain):
    """A finished search whose trials (the first the Trainer's own values) scored `scores` on the eval photos."""
    config = contract.TRAINER_DEFAULTS
    oracle = tuner.DefaultsFirstOracle(
        objective=keras_tuner.Objective(tuner.OBJECTIVE, "max"), max_trials=len(scores),
        hyperparameters=tuner._space(tuner.TRANSFER_SEARCH_SPACE, config), seed=0, min_gain=min_gain)
    oracle._set_project_dir(str(tmp_path), "search")
    for i, score in enumerate(scores):
        trial = oracle.create_trial(f"tuner{i}")
        oracle.update_trial(trial.trial_id, {tuner.OBJECTIVE: score})
        trial.status = keras_tuner.engine.trial.TrialStatus.COMPLETED
        oracle.end_trial(trial)
    return oracle


def test_the_trainers_own_values_stay_best_unless_a_trial_beats_them_by_the_margin(tmp_path):
    defaults = {name: contract.TRAINER_DEFAULTS[name] for name in tuner.TRANSFER_SEARCH_SPACE}

    close = _scored_search(tmp_path / "close", [0.809, 0.811, 0.780], min_gain=0.01)
    assert close.get_best_trials()[0].hyperparameters.values == defaults  # 0.002 better: inside the noise
    assert [t.score for t in close.get_best_trials(3)] == [0.809, 0.811, 0.780]  # every trial still listed

    clear = _scored_search(tmp_path / "clear", [0.809, 0.825, 0.780], min_gain=0.01)
    assert clear.get_best_trials()[0].score == 0.825
    assert clear.get_best_trials()[0].hyperparameters.values != defaults

    worse = _scored_search(tmp_path / "worse", [0.809, 0.790], min_gain=0.0)
    assert worse.get_best_trials()[0].hyperparameters.values == defaults
