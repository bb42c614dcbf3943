"""The optional Tuner: TFX's own Tuner executor runs `modules.tuner.tuner_fn`, and the Trainer takes its result.

Runs on the inputs of the session's demo pipeline run (tests/conftest.py), so
no second pipeline run is needed.
"""
import json
import os

import pytest
from tfx.components.tuner import executor as tuner_executor
from tfx.types import standard_artifacts

from gemstone import contract
from gemstone.apps import metadata
from tests.tfx_helpers import E2E_PIPELINE

pytestmark = pytest.mark.slow


def _artifact(kind, uri):
    artifact = kind()
    artifact.uri = str(uri)
    os.makedirs(artifact.uri, exist_ok=True)
    return artifact


def _handed_on(results):
    """The trial whose values the Tuner hands on: the best scored, unless the first (the Trainer's own values)
    scored within the margin of it."""
    from modules import tuner

    top = max(results, key=lambda r: r["score"])
    first = min(results, key=lambda r: int(r["trial_id"]))
    return first if top["score"] - first["score"] < tuner.MIN_GAIN else top


def _tune(inputs, config, tmp_path, run_id):
    """TFX's Tuner executor on the Trainer's inputs with `config`: (its trials, its best hyperparameters' config)."""
    best_uri, results_uri = tmp_path / "best", tmp_path / "results"
    context = tuner_executor.Executor.Context(tmp_dir=str(tmp_path / "tmp"), unique_id=run_id)
    tuner_executor.Executor(context).Do(
        {key: [artifact] for key, artifact in inputs.items()},
        {"best_hyperparameters": [_artifact(standard_artifacts.HyperParameters, best_uri)],
         "tuner_results": [_artifact(standard_artifacts.TunerResults, results_uri)]},
        {"tuner_fn": "modules.tuner.tuner_fn", "custom_config": json.dumps(config),
         "train_args": '{"splits": ["train"]}', "eval_args": '{"splits": ["eval"]}'})
    return (json.loads((results_uri / "tuner_results.json").read_text()),
            json.loads((best_uri / "best_hyperparameters.txt").read_text()))


def test_tuner_searches_and_the_trainer_takes_the_best_values(demo_pipeline, tmp_path):
    from modules import export, trainer, tuner

    home, _, _ = demo_pipeline
    store = metadata.open_store(E2E_PIPELINE, str(home))
    inputs, properties = metadata.latest_execution_inputs(store, "Trainer")
    # The end-to-end models' search (the pretrained head's: the next test).
    scratch = {"backbone": "none", "weights": ""}
    config = {**json.loads(properties["custom_config"]), **scratch, "tuner_trials": 2, "tuner_epochs": 1}
    results, best = _tune(inputs, config, tmp_path, "1")

    assert len(results) == 2  # two trials, each scored
    for trial in results:
        assert 0.0 <= trial["score"] <= 1.0
        assert trial["head_width"] in tuner.SEARCH_SPACE["head_width"]
    assert set(best["values"]) == set(tuner.SEARCH_SPACE) | {"image_size"}
    assert _handed_on(results)["head_width"] == best["values"]["head_width"]

    fn_args = metadata.trainer_fn_args(store, str(tmp_path / "train"), {**scratch, "epochs": 1, "edge_models": False})
    fn_args.hyperparameters = best
    trainer.run_fn(fn_args)
    used = json.loads((tmp_path / "train" / "model_run" / "config.json").read_text())
    for name, value in best["values"].items():
        assert used[name] == value, name
    model = export.load_keras_model(fn_args.serving_model_dir, compile=False)
    assert model.get_layer("colour_dense").units == best["values"]["head_width"]


def test_tuner_searches_the_pretrained_head_on_cached_features_and_the_trainer_takes_the_best(demo_pipeline,
                                                                                             tmp_path):
    from modules import trainer, tuner

    home, _, _ = demo_pipeline
    store = metadata.open_store(E2E_PIPELINE, str(home))
    inputs, properties = metadata.latest_execution_inputs(store, "Trainer")
    # EfficientNet-Lite2 from random weights: the search's plumbing, not its result.
    pretrained = {"backbone": "efficientnet_lite2", "weights": "", "views": 2, "fine_tune_epochs": 0}
    config = {**json.loads(properties["custom_config"]), **pretrained, "tuner_trials": 3}
    results, best_config = _tune(inputs, config, tmp_path, "2")

    assert len(results) == 3
    for trial in results:
        assert 0.0 <= trial["score"] <= 1.0
        for name, choices in tuner.TRANSFER_SEARCH_SPACE.items():
            allowed = [v for v in choices if v <= pretrained["views"]] if name == "views" else choices
            assert trial[name] in allowed, name
    best = best_config["values"]
    assert best == {k: v for k, v in _handed_on(results).items() if k in best}

    fn_args = metadata.trainer_fn_args(store, str(tmp_path / "train"), {**pretrained, "edge_models": False})
    fn_args.hyperparameters = best_config
    assert trainer.effective_config(fn_args)["epochs"] == best["epochs"]
    trainer.run_fn(fn_args)
    used = json.loads((tmp_path / "train" / "model_run" / "config.json").read_text())
    assert all(used[name] == value for name, value in best.items())
    record = json.loads((tmp_path / "train" / "serving_model" / contract.MODEL_ASSETS_DIR / contract.BACKBONE_FILE)
                        .read_text())
    assert record["tuner_values"] == best  # what the model card names
