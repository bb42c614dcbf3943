"""The checks that answer a mistake before TensorFlow loads: what they accept, refuse, and say."""
import pytest

from gemstone import paths
from gemstone.apps import checks


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path))
    monkeypatch.delenv("GEMSTONE_PIPELINE_NAME", raising=False)
    return tmp_path


def test_the_pipeline_name_is_the_one_given_the_environments_or_the_only_one(home, monkeypatch):
    paths.metadata_path("gem88").parent.mkdir(parents=True)
    paths.metadata_path("gem88").write_bytes(b"")
    assert checks.pipeline_name(None) == "gem88"  # the only one
    paths.serving_dir("gemstone-demo").mkdir(parents=True)
    assert checks.known_pipelines() == ["gem88", "gemstone-demo"]
    with pytest.raises(checks.UsageError, match=r"several pipelines .* say which with --pipeline-name"):
        checks.pipeline_name(None)
    monkeypatch.setenv("GEMSTONE_PIPELINE_NAME", "gemstone-demo")
    assert checks.pipeline_name(None) == "gemstone-demo"
    with pytest.raises(checks.UsageError, match="has no metadata"):
        checks.pipeline_name(None, need_metadata=True)
    with pytest.raises(checks.UsageError, match=r"no pipeline 'gem89' .*did you mean 'gem88'"):
        checks.pipeline_name("gem89")


def test_a_model_is_a_version_folder_or_the_base_above_it(home):
    base = paths.serving_dir("gem88")
    for version in ("7", "12"):
        (base / version).mkdir(parents=True)
        (base / version / "saved_model.pb").write_bytes(b"")
    (base / "99-partial").mkdir()
    assert checks.model_version(str(base)) == base / "12"
    assert checks.model_version(str(base / "7")) == base / "7"
    assert checks.model_base(str(base / "7")) == base
    with pytest.raises(checks.NotFound, match=r"no such folder.*pushed models here: .*gem88"):
        checks.model_version(str(base.parent / "gem89"))


def test_extra_options_refuse_typos_and_let_beams_options_through():
    own = ["--model", "--input", "--output", "--batch-size"]
    checks.extra_options(["--runner=DataflowRunner", "--project", "p", "--temp_location=gs://b/t"], own)
    for typo, said in ((["--batch_size", "8"], "--batch-size"), (["--ouput=x"], "--output"),
                       (["--temp_locaton=gs://b"], "--temp_location"), (["stray"], "unexpected argument")):
        with pytest.raises(checks.UsageError, match=said):
            checks.extra_options(typo, own)


def test_manifest_columns_of_csv_and_json_lines(tmp_path):
    (tmp_path / "m.csv").write_text("\ufeffpath, label ,family\nx.jpg,Ruby,Corundum\n")
    (tmp_path / "m.jsonl").write_text('\n{"path": "x.jpg", "class": "Ruby"}\n')
    assert checks.manifest_columns(tmp_path / "m.csv") == ["path", "label", "family"]
    with pytest.raises(checks.UsageError, match=r"lacks the column label \(it has: path, class\)"):
        checks.data_source(str(tmp_path / "m.jsonl"))


@pytest.mark.parametrize("expression, ok", [("0 2 * * *", True), ("30 0 2 * * 1-5", True), ("nightly", False),
                                            ("0 2 * *", False)])
def test_cron(expression, ok):
    if ok:
        checks.cron(expression)
    else:
        with pytest.raises(checks.UsageError, match="five fields"):
            checks.cron(expression)
    assert checks.endpoint("https://kfp.example.com") == ("kfp.example.com", 443)
