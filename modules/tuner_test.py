"""The Tuner's search: its first trial is the Trainer's own values, then random ones, none twice."""
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
