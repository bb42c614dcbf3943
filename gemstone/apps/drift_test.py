"""`gemstone drift`: the served photos against the training statistics."""
import json

import pytest
from PIL import Image

from gemstone import images
from gemstone.apps import cli, drift
from tests.tfx_helpers import E2E_PIPELINE


def _log(folder, photos, darken=1.0, label=None):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "predictions.jsonl", "w") as f:
        for path in photos:
            with Image.open(path) as picture:
                picture = Image.eval(picture.convert("RGB"), lambda v: int(v * darken))
                import io

                buffer = io.BytesIO()
                picture.save(buffer, format="JPEG")
            stats = images.decode_image_bytes(buffer.getvalue()).stats.numeric()
            f.write(json.dumps({"label": label or path.parent.name, "confidence": 0.9, "needs_review": False,
                                "family": "x", "version": "", "stats": stats}) + "\n")


@pytest.fixture
def env_home(demo_pipeline, monkeypatch):
    home, _, data = demo_pipeline
    monkeypatch.setenv("GEMSTONE_HOME", str(home))
    return home, data


@pytest.mark.slow  # compares with a pipeline run's training statistics
def test_photos_like_the_training_ones_do_not_drift(env_home, tmp_path):
    home, data = env_home
    photos = sorted((data / "images").rglob("*.jpg"))
    _log(tmp_path / "logs", photos)
    # The demo run has 96 photos, under the default minimum sample: judge them anyway.
    result = drift.check(str(tmp_path / "logs"), E2E_PIPELINE, str(home), min_predictions=50)
    assert result["logged_predictions"] == len(photos) and result["judged"]
    assert not [a for a in result["anomalies"] if a["feature"] == "brightness"], result["anomalies"]


@pytest.mark.slow
def test_much_darker_photos_and_one_predicted_class_drift(env_home, tmp_path, capsys):
    home, data = env_home
    photos = sorted((data / "images").rglob("*.jpg"))
    _log(tmp_path / "logs", photos, darken=0.35, label="Ruby")
    assert cli.main(["drift", "--logs", str(tmp_path / "logs"), "--pipeline-name", E2E_PIPELINE,
                     "--output", str(tmp_path / "drift.json"), "--min-predictions", "50"]) == 1  # 1: drift found
    report = json.loads((tmp_path / "drift.json").read_text())
    drifted = {a["feature"] for a in report["anomalies"]}
    assert {"brightness", "label"} <= drifted and report["drifted"]
    assert "DRIFT brightness" in capsys.readouterr().out


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
    assert cli.main(["drift", "--logs", str(tmp_path), "--pipeline-name", E2E_PIPELINE]) == 2
    assert "no logged predictions" in capsys.readouterr().err
