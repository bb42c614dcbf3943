"""`gemstone explain`: a figure and a record per photo; files that are no photo get an error record, the rest go on."""
import json
import shutil

from PIL import Image

from gemstone import contract, overlay
from gemstone.apps import cli, explain


def test_explains_each_photo_and_records_the_ones_it_cannot_read(contract_model, demo_photos, tmp_path, capsys):
    good = tmp_path / "in" / "emerald.jpg"
    good.parent.mkdir()
    shutil.copy(next((demo_photos / "images" / "Emerald").glob("*.jpg")), good)
    text = tmp_path / "in" / "notes.txt"
    text.write_text("not a photo\n")
    broken = tmp_path / "in" / "cut.jpg"
    broken.write_bytes(good.read_bytes()[:300])  # a JPEG cut short
    out = tmp_path / "out"
    status = cli.main(["explain", "--model", str(contract_model), str(good), str(text), str(broken),
                       "--output", str(out)])
    assert status == cli.USAGE  # some files were no photos: said by the status, the others explained
    record = json.loads((out / "emerald.json").read_text())
    assert record["figure"] == "emerald.png" and record["path"] == str(good) and record["model_version"] == "1"
    assert record["verdict"] == contract.verdict(record) and record["label"] == record["top_k"][0]["label"]
    assert {"family", "family_confidence", "needs_review", "known", "review_reason"} <= set(record)
    with Image.open(out / "emerald.png") as figure:
        assert figure.format == "PNG" and figure.width == overlay.MARGIN * 3 + overlay.PANEL * 2
    assert json.loads((out / "notes.json").read_text())["error"] == "not_an_image"
    assert json.loads((out / "cut.json").read_text())["error"] in ("truncated", "undecodable")
    assert not (out / "notes.png").exists() and not (out / "cut.png").exists()
    printed = capsys.readouterr().out
    assert "1 photo explained" in printed and "2 could not be read" in printed and "notes.txt: not_an_image" in printed


def test_a_folder_is_explained_photo_by_photo(contract_model, demo_photos, tmp_path):
    folder = demo_photos / "images" / "Ruby"
    status = cli.main(["explain", "--model", str(contract_model / "1"), str(folder), "--output", str(tmp_path)])
    photos = sorted(folder.glob("*.jpg"))
    assert status == cli.OK and len(photos) > 1
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == [p.stem for p in photos]
    assert explain.missing_explain(contract_model / "1") is None


def test_photos_that_share_a_name_get_their_own_files():
    assert explain._unique_stems(["a/ruby.jpg", "b/ruby.png", "c/ruby.jpg", "spinel.jpg"]) == [
        "ruby", "ruby-2", "ruby-3", "spinel"]
