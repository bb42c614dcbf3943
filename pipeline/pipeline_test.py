"""The DAG: which components run, and how they are wired."""
from pipeline import configs, pipeline


def _components(config):
    return {c.id: c for c in pipeline.create_pipeline(config).components}


def test_the_tuner_runs_only_when_asked_and_feeds_the_trainer(tmp_path):
    plain = _components(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path)))
    assert "Tuner" not in plain and "hyperparameters" not in plain["Trainer"].inputs

    tuned = _components(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), tune=True, tuner_trials=3))
    tuner, trainer = tuned["Tuner"], tuned["Trainer"]
    assert trainer.inputs["hyperparameters"].producer_component_id == "Tuner"
    assert tuner.inputs["transform_graph"].producer_component_id == "Transform"
    assert '"tuner_trials": 3' in tuner.exec_properties["custom_config"]
