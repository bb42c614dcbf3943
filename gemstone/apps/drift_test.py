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


def _photo(path, darken=1.0) -> bytes:
    """The photo as a client sends it: JPEG, `darken` times as bright."""
    with Image.open(path) as picture:
        picture = Image.eval(picture.convert("RGB"), lambda v: int(v * darken))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG")
    return buffer.getvalue()


def _log(folder, photos, darken=1.0, label=None):
    """The JSON Lines log serve wrote before the PredictionLog records."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / contract.PREDICTION_LOG_FILE, "w") as f:
        for path in photos:
            stats = images.decode_image_bytes(_photo(path, darken)).stats.numeric()
            f.write(json.dumps({"label": label or path.parent.name, "confidence": 0.9, "needs_review": False,
                                "family": "x", "version": "", "stats": stats}) + "\n")


def _prediction_log(path, requests, model="gem88", version=7):
    """A TFRecord file of TF Serving PredictionLog records, one per request: [(photos, labels, needs_review)]."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    spec = model_pb2.ModelSpec(name=model)
    spec.version.value = version
    with tf.io.TFRecordWriter(str(path)) as writer:
        for photos, labels, review in requests:
            n, classes = len(photos), ["Emerald", "Ruby"]
            outputs = {"label": np.array(labels, object), "confidence": np.full(n, 0.8, np.float32),
                       "top_k_labels": np.array([[label] * 2 for label in labels], object),
                       "top_k_scores": np.full((n, 2), 0.4, np.float32), "family": np.array(["Beryl"] * n, object),
                       "family_confidence": np.full(n, 0.9, np.float32), "needs_review": np.array(review),
                       "probabilities": np.full((n, 2), 0.5, np.float32), "classes": np.array([classes] * n, object),
                       "known": np.array([not r for r in review]), "novelty": np.zeros((n, 2), np.float32),
                       "review_reason": np.array([contract.UNFAMILIAR_VARIETY if r else "" for r in review], object)}
            request = predict_pb2.PredictRequest(model_spec=spec)
            request.inputs[contract.SERVING_INPUT].CopyFrom(tf.make_tensor_proto(photos))
            response = predict_pb2.PredictResponse(model_spec=spec)
            for name, value in outputs.items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
            writer.write(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request, response=response)).SerializeToString())


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


def test_a_prediction_log_gives_the_responses_answers_and_the_request_photos_statistics(tmp_path, demo_photos):
    photos = [_photo(p) for p in sorted((demo_photos / "images").rglob("*.jpg"))[:3]]
    _prediction_log(tmp_path / "logs" / "prediction_log-00000.tfrecord",
                    [(photos[:2], ["Ruby", "Emerald"], [False, True]), (photos[2:], ["Ruby"], [True])])

    rows = drift.read_logs(str(tmp_path / "logs"))

    unfamiliar = contract.UNFAMILIAR_VARIETY
    assert [(r["label"], r["needs_review"], r["review_reason"]) for r in rows] == [
        ("Ruby", False, None), ("Emerald", True, unfamiliar), ("Ruby", True, unfamiliar)]
    assert [r["confidence"] for r in rows] == pytest.approx([0.8] * 3)
    assert {(r["model"], r["version"]) for r in rows} == {("gem88", "7")}
    # What serve logged as `stats` in the JSON Lines log: the photo measured as it was sent.
    assert [r["stats"] for r in rows] == [images.decode_image_bytes(photo).stats.numeric() for photo in photos]


def test_drift_reads_prediction_logs_beside_the_older_json_lines_log(trained_on, tmp_path):
    """Half the photos in the JSON Lines log, the other half much darker in PredictionLog records, all as Ruby."""
    home, photos = trained_on
    half = len(photos) // 2
    _log(tmp_path / "logs", photos[:half], label="Ruby")
    _prediction_log(tmp_path / "logs" / "prediction_log-00000.tfrecord",
                    [([_photo(p, darken=0.2) for p in photos[half:]], ["Ruby"] * (len(photos) - half),
                      [False] * (len(photos) - half))])

    result = drift.check(str(tmp_path / "logs"), PIPELINE, str(home), min_predictions=len(photos))

    assert result["logged_predictions"] == len(photos) and result["logged_model"] == "gem88"
    assert {"brightness", "label"} <= {a["feature"] for a in result["anomalies"]}
