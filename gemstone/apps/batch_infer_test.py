"""Batch inference on Beam: every visible file exactly once, bad files as errors, reruns without duplicates."""
import json
import weakref
from pathlib import Path

import pytest

from gemstone import inference, paths
from gemstone.apps import batch_infer, checks, cli
from tests.hostile_files import png_claiming


def _lines(folder, prefix):
    return [json.loads(line) for p in sorted(Path(folder).glob(f"{prefix}-*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


@pytest.fixture
def mixed_folder(demo_photos, tmp_path):
    data = demo_photos
    folder = tmp_path / "inventory"
    (folder / "tray 1").mkdir(parents=True)
    good = sorted((data / "images").rglob("*.jpg"))[:10]
    for i, path in enumerate(good):
        (folder / "tray 1" / f"stone {i}.jpg").write_bytes(path.read_bytes())
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "half.jpg").write_bytes(good[0].read_bytes()[:600])
    (folder / "notes.jpg").write_text("not a photo")
    (folder / "bomb.png").write_bytes(png_claiming(70_000, 70_000))
    (folder / ".DS_Store").write_bytes(b"\0")
    return folder


@pytest.mark.parametrize("beam_mode", [
    ["--direct_running_mode=in_memory"],
    # Two worker processes, as on a bigger machine: each loads the model (slow on 2 cores).
    pytest.param(["--direct_running_mode=multi_processing", "--direct_num_workers=2"], marks=pytest.mark.slow)])
def test_every_file_once_and_reruns_do_not_duplicate(contract_model, mixed_folder, tmp_path, beam_mode):
    model = contract_model
    out = tmp_path / "out"
    for _ in range(2):
        assert cli.main(["batch-infer", "--model", str(model), "--input", str(mixed_folder), "--output", str(out),
                         *beam_mode]) == 0
        predictions, errors = _lines(out, "predictions"), _lines(out, "errors")
        visible = sorted(str(p) for p in mixed_folder.rglob("*") if p.is_file() and p.name != ".DS_Store")
        assert sorted(r["path"] for r in predictions + errors) == visible
        assert {Path(e["path"]).name: e["error"] for e in errors} == {
            "empty.jpg": "empty_file", "half.jpg": "truncated", "notes.jpg": "not_an_image",
            "bomb.png": "decompression_bomb"}
    record = predictions[0]
    assert set(record) == {"path", "label", "confidence", "top_k", "family", "family_confidence", "needs_review",
                           "known", "novelty", "review_reason", "model_version"}
    assert len(record["top_k"]) == 3 and record["top_k"][0]["label"] == record["label"]
    assert all(r["needs_review"] == (r["confidence"] < 0.6 or not r["known"]) for r in predictions)
    assert all(r["needs_review"] == (r["review_reason"] is not None) for r in predictions)
    assert record["model_version"] == paths.latest_version_dir(model).name


def test_the_summary_counts_each_review_reason_and_an_old_model_says_it_has_none(contract_model, demo_photos,
                                                                                  tmp_path, capsys):
    from tests import contract_model as builder

    photos = demo_photos / "images"
    result = batch_infer.run(str(contract_model), str(photos), str(tmp_path / "new"),
                             beam_args=["--direct_running_mode=in_memory"])
    records = _lines(tmp_path / "new", "predictions")
    assert sum(result["review"].values()) == sum(r["needs_review"] for r in records) > 0
    for reason, count in result["review"].items():
        assert count == sum(r["review_reason"] == reason for r in records)

    old = builder.build(demo_photos, tmp_path / "old-model", open_set=False)
    assert cli.main(["batch-infer", "--model", str(old), "--input", str(photos), "--output",
                     str(tmp_path / "old")]) == 0
    out = capsys.readouterr().out
    assert "exported before the open-set outputs" in out and "known" not in _lines(tmp_path / "old", "predictions")[0]


def test_ctrl_c_exits_130_and_leaves_the_output_folder_as_it_was(contract_model, mixed_folder, tmp_path,
                                                                  monkeypatch, capsys):
    """Ctrl-C while Beam runs reaches the command wrapped (RuntimeError: KeyboardInterrupt [while running ...])."""
    load, seen = batch_infer._load, []

    def interrupted_at_the_fifth_photo(path):
        seen.append(path)
        if len(seen) == 5:
            raise KeyboardInterrupt
        return load(path)

    monkeypatch.setattr(batch_infer, "_load", interrupted_at_the_fifth_photo)
    args = ["batch-infer", "--model", str(contract_model), "--input", str(mixed_folder),
            "--direct_running_mode=in_memory"]
    assert cli.main([*args, "--output", str(tmp_path / "new")]) == cli.INTERRUPTED
    assert "gemstone batch-infer: interrupted" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # the folder it made is gone

    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "predictions-00000-of-00001.jsonl").write_text('{"path": "before"}\n')
    seen.clear()
    assert cli.main([*args, "--output", str(previous)]) == cli.INTERRUPTED
    assert [p.name for p in previous.iterdir()] == ["predictions-00000-of-00001.jsonl"]  # no staging left
    assert _lines(previous, "predictions") == [{"path": "before"}]


def test_glob_input_and_version_folder(contract_model, mixed_folder, tmp_path, monkeypatch):
    loaded = []  # a weak reference to each model RunInference loads
    load = inference.GemstoneModelHandler.load_model

    def load_and_watch(handler):
        model = load(handler)
        loaded.append(weakref.ref(model))
        return model

    monkeypatch.setattr(inference.GemstoneModelHandler, "load_model", load_and_watch)
    version = paths.latest_version_dir(contract_model)
    result = batch_infer.run(str(version), str(mixed_folder / "tray 1" / "*.jpg"), str(tmp_path / "out"),
                             beam_args=["--direct_running_mode=in_memory"])
    assert (result["inputs"], result["predictions"], result["errors"]) == (10, 10, 0)
    # The model is let go of before the run returns, while TensorFlow is loaded (else, at exit:
    # `Exception ignored in AtomicFunction.__del__`).
    assert loaded and all(model() is None for model in loaded)


def test_beam_options_beam_does_not_know_are_refused():
    batch_infer.check_beam_args(["--runner=DirectRunner", "--direct_running_mode", "in_memory"])
    with pytest.raises(checks.UsageError, match="did you mean --runner"):
        batch_infer.check_beam_args(["--runnr=DirectRunner"])
    assert batch_infer.unknown_beam_args(["--batch_size", "8"]) == ["--batch_size", "8"]


def test_missing_model_or_input_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["batch-infer", "--model", str(tmp_path), "--input", str(tmp_path), "--output",
                     str(tmp_path / "o")]) == 2
    assert "no SavedModel" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no files match"):
        checks.input_files(str(tmp_path / "*.jpg"))
