"""Pipeline settings: environment variables, schema choice, Beam options in one place."""
import pytest

from pipeline import configs


def test_settings_come_from_gemstone_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path))
    monkeypatch.setenv("GEMSTONE_PIPELINE_NAME", "my-stones")
    monkeypatch.setenv("GEMSTONE_EPOCHS", "3")
    monkeypatch.setenv("GEMSTONE_TUNE", "1")
    monkeypatch.setenv("GEMSTONE_BEAM_ARGS", "--runner=DataflowRunner --project=p")
    config = configs.PipelineConfig.from_env()
    assert config.epochs == 3 and config.tune and config.pipeline_root == str(tmp_path / "pipelines" / "my-stones")
    assert config.schema_path == ""  # no curated schema for this name: SchemaGen infers one
    assert config.beam_pipeline_args()[-2:] == ["--runner=DataflowRunner", "--project=p"]


def test_curated_schema_is_picked_by_pipeline_name_unless_disabled(monkeypatch):
    assert configs.PipelineConfig(pipeline_name="gem88").schema_path.endswith("schema/gem88/schema.pbtxt")
    monkeypatch.setenv("GEMSTONE_PIPELINE_NAME", "gem88")
    monkeypatch.setenv("GEMSTONE_SCHEMA", "none")
    assert configs.PipelineConfig.from_env().schema_path == ""


def test_auto_beam_mode_uses_worker_processes_on_bigger_machines(monkeypatch):
    monkeypatch.setattr(configs.os, "cpu_count", lambda: 16)
    assert "--direct_running_mode=multi_processing" in configs.PipelineConfig().beam_pipeline_args()
    monkeypatch.setattr(configs.os, "cpu_count", lambda: 2)
    assert "--direct_running_mode=in_memory" in configs.PipelineConfig().beam_pipeline_args()
    assert "--direct_running_mode=multi_threading" in \
        configs.PipelineConfig(beam_running_mode="multi_threading").beam_pipeline_args()


def test_class_count_comes_from_the_curated_label_domain():
    assert configs.PipelineConfig(pipeline_name="gem88").num_classes == 88
    assert configs.PipelineConfig(pipeline_name="gemstone-demo").num_classes == 8
    assert configs.PipelineConfig(pipeline_name="no-curated-schema").num_classes is None


def test_each_backbone_gets_its_own_default_picture_size(tmp_path):
    assert configs.PipelineConfig(home=str(tmp_path)).image_size == 224  # InceptionV3, pretrained
    assert configs.PipelineConfig(home=str(tmp_path), backbone="none").image_size == 64  # from scratch
    assert configs.PipelineConfig(home=str(tmp_path), image_size=96).image_size == 96


def test_weights_none_means_random_weights_and_needs_no_fetch(tmp_path):
    config = configs.PipelineConfig(home=str(tmp_path), weights="none")
    assert config.weights == ""
    config.check_weights()  # nothing to find, nothing missing


def test_beam_options_name_the_projects_dependencies_so_tfx_packages_nothing_per_component():
    """Without a dependency option TFX builds a source package of itself for every Beam component's run."""
    from tfx.utils import dependency_utils

    args = configs.PipelineConfig().beam_pipeline_args()
    assert dependency_utils.make_beam_dependency_flags(args) == args
    setup_file = next(a.split("=", 1)[1] for a in args if a.startswith("--setup_file="))
    assert "tfx" in (configs.REPO_ROOT / "setup.py").read_text() and setup_file == str(configs.REPO_ROOT / "setup.py")


def test_the_int8_edge_model_kind_is_checked_and_matches_what_the_trainer_can_make(monkeypatch, tmp_path):
    import pytest

    from modules import edge

    assert configs.EDGE_INT8_KINDS == edge.INT8_KINDS
    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path))
    monkeypatch.setenv("GEMSTONE_EDGE_INT8", "full_integer")
    assert configs.PipelineConfig.from_env().edge_int8 == "full_integer"
    monkeypatch.setenv("GEMSTONE_EDGE_INT8", "int4")
    with pytest.raises(ValueError, match="GEMSTONE_EDGE_INT8.*'int4'.*dynamic_range, full_integer"):
        configs.PipelineConfig.from_env()


def test_a_keras_applications_backbone_gets_the_size_its_weights_were_made_at(tmp_path):
    assert configs.PipelineConfig(home=str(tmp_path), backbone="mobilenet_v2").image_size == 224
    assert configs.PipelineConfig(home=str(tmp_path), backbone="none").image_size == 64


def test_the_profiles_set_what_stage_2_fine_tunes_unless_a_setting_says_otherwise(tmp_path, monkeypatch):
    quick = configs.PipelineConfig(home=str(tmp_path))
    assert (quick.fine_tune_scope, quick.fine_tune_epochs) == ("top_blocks", 6)
    monkeypatch.setenv("GEMSTONE_PROFILE", "thorough")
    thorough = configs.PipelineConfig.from_env()
    assert (thorough.fine_tune_scope, thorough.fine_tune_epochs) == ("whole_network", 10)
    monkeypatch.setenv("GEMSTONE_FINE_TUNE_EPOCHS", "0")
    assert configs.PipelineConfig.from_env().fine_tune_epochs == 0  # explicitly frozen, whatever the profile
    with pytest.raises(ValueError, match="GEMSTONE_PROFILE"):
        configs.PipelineConfig(home=str(tmp_path), profile="fast")
