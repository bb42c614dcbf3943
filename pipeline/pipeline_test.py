"""The DAG: which components run, and how they are wired."""
import json

import pytest

from gemstone import backbones
from pipeline import configs, pipeline


def _components(config):
    return {c.id: c for c in pipeline.create_pipeline(config).components}


def test_the_tuner_runs_only_when_asked_and_feeds_the_trainer(tmp_path):
    plain = _components(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), backbone="none"))
    assert "Tuner" not in plain and "hyperparameters" not in plain["Trainer"].inputs

    tuned = _components(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), backbone="none", tune=True,
                                               tuner_trials=3))
    tuner, trainer = tuned["Tuner"], tuned["Trainer"]
    assert trainer.inputs["hyperparameters"].producer_component_id == "Tuner"
    assert tuner.inputs["transform_graph"].producer_component_id == "Transform"
    assert '"tuner_trials": 3' in tuner.exec_properties["custom_config"]


def test_without_fetched_weights_the_pipeline_is_not_built_and_says_what_to_do(tmp_path):
    with pytest.raises(backbones.BackboneMissing, match="gemstone backbone fetch.*GEMSTONE_BACKBONE=none"):
        pipeline.create_pipeline(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path)))


def test_the_trainer_records_which_weights_it_starts_from(tmp_path):
    """The provenance of the fetched weights travels in the Trainer's custom_config (ML Metadata keeps it)."""
    folder = backbones.backbone_dir(str(tmp_path))
    folder.mkdir(parents=True)
    (folder / backbones.WEIGHTS_FILE).write_bytes(b"weights")
    (folder / backbones.PROVENANCE_FILE).write_text(json.dumps(
        {"source": "npm", "package": "nsfwjs", "version": "4.4.0", "weights_sha256": "ab12", "created": "today"}))
    trainer = _components(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path)))["Trainer"]
    custom = json.loads(trainer.exec_properties["custom_config"])
    assert custom["backbone"] == "inception_v3" and custom["weights"] == str(folder / backbones.WEIGHTS_FILE)
    # What identifies the weights, not when they were fetched (that would retrain on every re-fetch).
    assert custom["backbone_provenance"] == {"source": "npm", "package": "nsfwjs", "version": "4.4.0",
                                             "weights_sha256": "ab12"}
