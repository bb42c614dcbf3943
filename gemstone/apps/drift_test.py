"""`gemstone drift`: the served photos against the training statistics."""
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from gemstone import contract, images, paths
from gemstone.apps import cli, drift
from tests import mlmd_store

PIPELINE = "drift-test"


def _log(folder, photos, darken=1.0, label=None):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "predictions.jsonl", "w") as f:
        for path in photos:
            with Image.open(path) as picture:
                picture = Image.eval(picture.convert("RGB"), lambda v: int(v * darken))
                buffer = io.BytesIO()
                picture.save(buffer, format="JPEG")
            stats = images.decode_image_bytes(buffer.getvalue()).stats.numeric()
            f.write(json.dumps({"label": label or path.parent.name, "confidence": 0.9, "needs_review": False,
                                "family": "x", "version": "", "stats": stats}) + "\n")


@pytest.fixture(scope="module")
def trained_on(demo_photos, tmp_path_factory):
    """(GEMSTONE_HOME, photos) of a pipeline whose StatisticsGen described these photos as its train split:
    TFDV's statistics of their image statistics and labels (as ingestion measures them), in an
    ExampleStatistics artifact that ML Metadata records as the StatisticsGen node's output."""
    import pandas as pd
    import tensorflow_data_validation as tfdv
    from tfx.components.statistics_gen import stats_artifact_utils
    from tfx.types import artifact_utils, standard_artifacts

    home = tmp_path_factory.mktemp("home")
    photos = sorted((demo_photos / "images").rglob("*.jpg"))
    frame = pd.DataFrame([{**images.load_image_file(str(p)).stats.numeric(), contract.LABEL_KEY: p.parent.name}
                          for p in photos])
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(paths.pipeline_root(PIPELINE, str(home)) / "StatisticsGen" / "statistics" / "1")
    statistics.split_names = artifact_utils.encode_split_names([drift.TRAIN_SPLIT])
    split = Path(artifact_utils.get_split_uri([statistics], drift.TRAIN_SPLIT))
    split.mkdir(parents=True)
    # As StatisticsGen writes it: the serialised DatasetFeatureStatisticsList.
    (split / stats_artifact_utils.BINARY_PB_BASENAME).write_bytes(
        tfdv.generate_statistics_from_dataframe(frame).SerializeToString())
    store = mlmd_store.store(paths.metadata_path(PIPELINE, str(home)))
    mlmd_store.execution(store, PIPELINE, contract.STATISTICS_GEN_ID, mlmd_store.COMPLETE,
                         outputs=[("statistics", mlmd_store.published(store, statistics))])
    return home, photos


def test_photos_like_the_training_ones_do_not_drift(trained_on, tmp_path):
    home, photos = trained_on
    _log(tmp_path / "logs", photos)
    # Fewer photos than the default minimum sample: judge them anyway.
    result = drift.check(str(tmp_path / "logs"), PIPELINE, str(home), min_predictions=len(photos))
    assert result["logged_predictions"] == len(photos) and result["judged"]
    assert result["anomalies"] == [] and not result["drifted"]


def test_much_darker_photos_and_one_predicted_class_drift(trained_on, tmp_path, capsys, monkeypatch):
    home, photos = trained_on
    monkeypatch.setenv("GEMSTONE_HOME", str(home))
    _log(tmp_path / "logs", photos, darken=0.35, label="Ruby")
    assert cli.main(["drift", "--logs", str(tmp_path / "logs"), "--pipeline-name", PIPELINE,
                     "--output", str(tmp_path / "drift.json"), "--min-predictions", str(len(photos))]) == 1  # drift
    report = json.loads((tmp_path / "drift.json").read_text())
    drifted = {a["feature"] for a in report["anomalies"]}
    assert {"brightness", "label"} <= drifted and report["drifted"]
    assert "DRIFT brightness" in capsys.readouterr().out


def test_a_pipeline_without_statistics_is_a_clear_error(tmp_path):
    store = mlmd_store.store(paths.metadata_path(PIPELINE, str(tmp_path)))
    mlmd_store.execution(store, PIPELINE, contract.EXAMPLE_GEN_ID, mlmd_store.COMPLETE)
    with pytest.raises(FileNotFoundError, match="has no statistics yet"):
        drift.latest_train_statistics(PIPELINE, str(tmp_path))


def test_too_few_predictions_are_not_judged(tmp_path):
    """One photo is 100 % of one class: no verdict under the minimum sample, and no statistics are read."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "predictions.jsonl").write_text(json.dumps({"model": "gem88", "label": "Ruby", "confidence": 0.2,
                                                        "needs_review": True, "stats": {"brightness": 0.1}}) + "\n")
    result = drift.check(str(logs), "no-such-pipeline", str(tmp_path), min_predictions=drift.MIN_PREDICTIONS)
    assert result["judged"] is False and result["drifted"] is False and result["anomalies"] == []
    assert result["logged_predictions"] == 1 and result["review_rate"] == 1.0
    assert drift.logged_model(drift.read_logs(str(logs))) == "gem88"


def test_no_logs_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["drift", "--logs", str(tmp_path), "--pipeline-name", PIPELINE]) == 2
    assert "no logged predictions" in capsys.readouterr().err
