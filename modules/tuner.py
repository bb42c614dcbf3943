"""TFX Tuner module: `tuner_fn` searches hyperparameters on the eval photos; the Trainer then trains with the best.

Two searches, by backbone:
  - the pretrained backbones: the head's hyperparameters (TRANSFER_SEARCH_SPACE: learning rate, epochs, each
    expert's dropout, weight decay, and how many of the cached views it learns from), on the frozen features
    the Trainer caches (trainer.transfer_features, computed once): a trial trains stage 1's head alone, seconds
    to a minute or two;
  - the end-to-end models: learning rate, image size, colour-branch width and dropout (SEARCH_SPACE), a short
    training each.
The first trial is the Trainer's own values, the others random; each is scored by its eval accuracy, and the
best is the Trainer's own values unless another trial beat them by MIN_GAIN. The trials and the best values are
TFX's Tuner outputs (recorded in ML Metadata), and the Trainer's `effective_config` takes the best values over
its config.
"""
import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import os  # noqa: E402

import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras as keras  # noqa: E402
from absl import logging  # noqa: E402
# (not tfx.v1, whose Google Cloud extensions take about 8 s to import: see pipeline/dag.py)
from tfx.components.trainer.fn_args_utils import FnArgs  # noqa: E402
from tfx.components.tuner.component import TunerFnResult  # noqa: E402

from gemstone import contract  # noqa: E402
from modules import end_to_end, inputs, trainer, transfer  # noqa: E402
from modules import model as model_lib  # noqa: E402

OBJECTIVE = "val_variety_accuracy"
# The end-to-end models' search (the image size is added: Transform's and three quarters of it).
SEARCH_SPACE = {"learning_rate": [1e-3, 2e-3, 4e-3], "head_width": [256, 512, 1024], "dropout": [0.2, 0.3, 0.5]}
# The pretrained head's search; "views" is capped at the views the Trainer's config caches.
TRANSFER_SEARCH_SPACE = {"learning_rate": [1e-3, 2e-3, 4e-3], "epochs": [30, 50, 80],
                         "image_expert_dropout": [0.3, 0.5, 0.7], "colour_expert_dropout": [0.3, 0.5, 0.7],
                         "head_l2": [3e-5, 1e-4, 3e-4], "views": [1, 2, 3]}
# Eval accuracy by which a trial must beat the Trainer's own values to replace them: on the 88 varieties' 529 eval
# photos, 0.01 is five photos; the best trials of a search differed by less, and did no better on the test photos.
MIN_GAIN = 0.01


def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
    """TFX Tuner entry point: a random search scored on eval accuracy (`tuner_trials` trials)."""
    config = {**contract.TRAINER_DEFAULTS, **(fn_args.custom_config or {})}
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    if config["backbone"] in model_lib.TRANSFER_BACKBONES:
        return _transfer_search(fn_args, tf_transform_output, config)
    train, val, class_counts, _ = end_to_end.datasets(fn_args, tf_transform_output, config)
    input_size = inputs.transform_image_size(tf_transform_output)
    space = _space(SEARCH_SPACE, config)
    # Smaller pictures train faster; the model resizes Transform's images inside.
    space.Choice("image_size", sorted({input_size, max(32, input_size * 3 // 4)}), default=input_size)
    tuner = EndToEndTuner(config, tf_transform_output, class_counts, oracle=_oracle(space, config),
                          directory=fn_args.working_dir, project_name="gemstone")
    return TunerFnResult(tuner=tuner, fit_kwargs={"train": train, "val": val})


def _space(choices: dict, config: dict) -> keras_tuner.HyperParameters:
    """The search space; each choice's default is the Trainer's own value where it is one of the choices."""
    space = keras_tuner.HyperParameters()
    for name, values in choices.items():
        space.Choice(name, values, default=config.get(name) if config.get(name) in values else None)
    return space


class DefaultsFirstOracle(keras_tuner.oracles.RandomSearchOracle):
    """A random search whose first trial is the space's defaults (the Trainer's own values), ranked best unless
    another trial beat it on the eval photos by at least `min_gain`: the values it hands on never did worse than
    not searching, and a gain inside the eval split's noise does not change the Trainer's settings."""

    def __init__(self, *args, min_gain: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.min_gain = min_gain

    def populate_space(self, trial_id):
        if not self.trials:
            return {"status": keras_tuner.engine.trial.TrialStatus.RUNNING, "values": dict(self.hyperparameters.values)}
        return super().populate_space(trial_id)

    def get_best_trials(self, num_trials=1):
        ranked = super().get_best_trials(len(self.trials))
        defaults = self.trials[self.start_order[0]] if self.start_order else None
        # A scored defaults' trial means ranked[0] is scored too, and at least as high.
        if defaults is not None and defaults.score is not None and ranked[0].score - defaults.score < self.min_gain:
            ranked = [defaults] + [trial for trial in ranked if trial is not defaults]
        return ranked[:num_trials]


def _oracle(space: keras_tuner.HyperParameters, config: dict):
    return DefaultsFirstOracle(
        objective=keras_tuner.Objective(OBJECTIVE, "max"), max_trials=int(config["tuner_trials"]),
        hyperparameters=space, seed=int(config["seed"]), min_gain=MIN_GAIN)


def _transfer_search(fn_args, tf_transform_output, config: dict) -> TunerFnResult:
    """The head's hyperparameters on the cached frozen features of the training and eval photos."""
    cached_views = max(1, int(config["views"]))
    features = trainer.transfer_features(fn_args, tf_transform_output,
                                         {**config, "fine_tune_epochs": 0, "refit_with_eval": False})
    choices = {**TRANSFER_SEARCH_SPACE,
               "views": [v for v in TRANSFER_SEARCH_SPACE["views"] if v <= cached_views] or [cached_views]}
    tuner = HeadTuner(config, tf_transform_output, features, oracle=_oracle(_space(choices, config), config),
                      directory=fn_args.working_dir, project_name="gemstone_head")
    return TunerFnResult(tuner=tuner, fit_kwargs={})


class EndToEndTuner(keras_tuner.Tuner):
    """keras-tuner over this project's own end-to-end training (the tf_keras model and trainer.fit_end_to_end).

    keras-tuner 1.4 builds and fits Keras 3 models itself; ours is tf_keras (TFX 1.16's Keras), so the
    documented way applies: `run_trial` is overridden, builds and fits the model, and returns its score.
    """

    def __init__(self, config, tf_transform_output, class_counts, **kwargs):
        super().__init__(**kwargs)
        self.config, self.tf_transform_output, self.class_counts = config, tf_transform_output, class_counts

    def run_trial(self, trial, train, val):
        config = {**self.config, **trial.hyperparameters.values, "epochs": int(self.config["tuner_epochs"])}
        keras.utils.set_random_seed(int(config["seed"]))
        model = end_to_end.build(self.tf_transform_output, config)
        history = end_to_end.fit(model, train, val, config, self.class_counts,
                                         os.path.join(self.project_dir, f"trial_{trial.trial_id}"))
        # The trial's model is not kept: the Trainer retrains with the best values.
        return {OBJECTIVE: max(history[OBJECTIVE])}


class HeadTuner(keras_tuner.Tuner):
    """keras-tuner over the pretrained model's head, trained as the Trainer's stage 1 on cached features."""

    def __init__(self, config, tf_transform_output, features: "trainer.TransferFeatures", **kwargs):
        super().__init__(**kwargs)
        self.config, self.tf_transform_output, self.features = config, tf_transform_output, features

    def run_trial(self, trial):
        values = trial.hyperparameters.values
        config = {**self.config, **values, "fine_tune_epochs": 0}
        keras.utils.set_random_seed(int(config["seed"]))
        parts = trainer.build_transfer(self.tf_transform_output, config)
        photos = self.features.photos
        train = self.features.train.rows(slice(photos * int(values["views"])))  # views are stacked view-major
        transfer.fit(parts, train, self.features.eval, photos, config,
                     trainer.transfer_class_weights(config, self.features.class_counts),
                     os.path.join(self.project_dir, f"trial_{trial.trial_id}"))
        accuracy = transfer.head_accuracy(parts.head, self.features.eval)
        logging.info("Tuner trial %s: %s -> eval accuracy %.4f", trial.trial_id, values, accuracy)
        return {OBJECTIVE: float(np.round(accuracy, 6))}
