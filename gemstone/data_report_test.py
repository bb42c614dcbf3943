"""The data report (`gemstone inspect-data`): every visible file once, accepted with its split or quarantined with
its reason. The command itself is tested with the others (gemstone/apps/cli_test.py)."""
import io
import json
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from gemstone import data_report, demo_data
from tests.hostile_files import png_claiming


def _encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _stone(rgb=(200, 30, 40), size=(80, 60)):
    pixels = np.full((size[1], size[0], 3), 235, np.uint8)
    pixels[15:45, 20:60] = rgb
    return Image.fromarray(pixels)


@pytest.fixture
def hostile(tmp_path):
    """A collection mixing good, unusual and broken files; returns (root, expected status per path)."""
    root = tmp_path / "photos"
    ruby, sapphire, emerald = root / "Ruby", root / "Sapphire Blue", root / "Emerald"
    for folder in (ruby, sapphire, emerald, root / ".cache"):
        folder.mkdir(parents=True)
    expected = {}

    def put(path, data, status):
        path.write_bytes(data)
        expected[path.relative_to(root).as_posix()] = status

    for i in range(4):  # a few ordinary photos per class, different enough not to be near-duplicates
        put(ruby / f"ruby {i}.jpg", _encode(_stone((200, 20 + 30 * i, 40), (80 + 9 * i, 60)), "JPEG"), "accepted")
        put(sapphire / f"saphir bleu {i}.jpg", _encode(_stone((20, 40 + 20 * i, 200), (90, 60 + 7 * i)), "JPEG"),
            "accepted")
        put(emerald / f"emerald_{i}.JPG", _encode(_stone((20, 160, 60 + 25 * i), (70 + 11 * i, 70)), "JPEG"),
            "accepted")
    rgba = np.zeros((50, 50, 4), np.uint8)
    rgba[10:40, 10:40] = (210, 20, 30, 255)
    put(ruby / "cutout.jpg", _encode(Image.fromarray(rgba, "RGBA"), "PNG"), "accepted")  # RGBA PNG named .jpg
    put(ruby / "grey.png", _encode(_stone().convert("L"), "PNG"), "accepted")
    put(sapphire / "cmyk.jpg", _encode(_stone((20, 40, 200)).convert("CMYK"), "JPEG"), "accepted")
    put(sapphire / "palette.png", _encode(_stone((30, 30, 190)).convert("P", palette=Image.ADAPTIVE), "PNG"),
        "accepted")
    deep = (np.asarray(_stone().convert("L"), np.uint16) * 257)
    put(emerald / "deep.png", _encode(Image.fromarray(deep, "I;16"), "PNG"), "accepted")
    put(emerald / "stone.webp", _encode(_stone((20, 170, 70)), "WEBP"), "accepted")
    exif = Image.Exif()
    exif[0x0112] = 6
    put(emerald / "phone.jpg", _encode(_stone((30, 150, 50)), "JPEG", exif=exif.tobytes()), "accepted")
    put(emerald / "émeraude – 💎.jpg", _encode(_stone((10, 140, 90)), "JPEG"), "accepted")
    # Broken ones.
    put(ruby / "empty.jpg", b"", "empty_file")
    put(ruby / "notes.jpg", b"not a photo at all", "not_an_image")
    good = _encode(_stone(size=(300, 200)), "JPEG")
    put(sapphire / "cut off.jpg", good[: len(good) // 2], "truncated")
    put(sapphire / "bomb.png", png_claiming(60_000, 60_000), "decompression_bomb")
    put(emerald / "tiny.png", _encode(Image.new("RGB", (4, 4)), "PNG"), "too_small")
    put(root / "loose.jpg", good, "no_label")
    put(ruby / "readme.txt", b"shot on a light box", "not_an_image")
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(good)
    (ruby / "link.jpg").symlink_to(outside)
    expected["Ruby/link.jpg"] = "symlink_outside_root"
    # Hidden files: ignored and counted, not listed.
    for hidden in (ruby / ".DS_Store", sapphire / "Thumbs.db", root / ".cache" / "x.jpg"):
        hidden.write_bytes(b"\0")
    return root, expected


def test_hostile_collection_comes_out_exactly_as_described(hostile, tmp_path):
    root, expected = hostile
    written = data_report.write(data_report.inspect(str(root)), tmp_path / "out")
    report = json.loads(written["json"].read_text())
    listed = [f["path"] for f in report["files"]]
    assert sorted(listed) == sorted(expected)  # every visible file exactly once
    for f in report["files"]:
        assert (f["status"] if f["status"] == "accepted" else f["reason"]) == expected[f["path"]], f
    assert report["counts"]["ignored_hidden"] == 3
    by_path = {f["path"]: f for f in report["files"]}
    assert by_path["Ruby/cutout.jpg"]["format"] == "png"
    assert "alpha_flattened_on_white" in by_path["Ruby/cutout.jpg"]["notes"]
    assert "exif_rotated" in by_path["Emerald/phone.jpg"]["notes"]
    assert (by_path["Emerald/phone.jpg"]["width"], by_path["Emerald/phone.jpg"]["height"]) == (60, 80)
    assert {f["split"] for f in report["files"] if f["status"] == "accepted"} == {"train", "eval", "test"}
    assert (tmp_path / "out" / data_report.HTML_NAME).read_text().count("<tr>") > 10
    assert (tmp_path / "out" / data_report.PLOT_NAME).stat().st_size > 1000
    summary = "\n".join(data_report.summary_lines(report))  # what inspect-data prints
    assert "quarantined truncated: 1" in summary and "3 hidden files ignored" in summary


def test_class_imbalance_and_rare_classes_are_reported(tmp_path):
    demo = demo_data.make_demo_data(tmp_path / "demo", per_class=6, seed=0, size=48)
    for extra in sorted((demo.out_dir / "images" / "Citrine").glob("*.jpg"))[2:]:
        extra.unlink()  # Citrine is now rare
    report = data_report.inspect(str(demo.out_dir / "images"))
    balance = report["class_balance"]
    assert balance["smallest"] == ["Citrine", 2] or balance["smallest"] == ("Citrine", 2)
    assert balance["rare_classes"] == ["Citrine"] and balance["imbalance_ratio"] == 3.0


def test_a_one_photo_collection_is_warned_about_in_the_terminal_and_the_page(tmp_path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.jpg").write_bytes(_encode(_stone(), "JPEG"))
    (tmp_path / "one.csv").write_text("path,label\npics/a.jpg,Ruby\n")
    report = data_report.inspect(str(tmp_path / "one.csv"))
    lines = data_report.summary_lines(report)
    assert lines[:2] == ["1 file: 1 accepted, 0 quarantined, 0 hidden files ignored",
                         "1 class, 1 photo each (imbalance 1.0x); rare: none"]
    [warning] = [line for line in lines if line.startswith("warning: ")]
    assert warning.startswith("warning: no photo in eval or test: the pipeline needs photos in every split")
    page = data_report.write(report, tmp_path / "out")["html"].read_text()
    assert "<h3>Warnings</h3>" in page and "no photo in eval or test" in page


def test_a_class_missing_from_a_split_is_named(tmp_path):
    demo = demo_data.make_demo_data(tmp_path / "demo", per_class=6, seed=0, size=48)
    rows = (demo.out_dir / "manifest.csv").read_text().splitlines()
    ruby = [row for row in rows[1:] if ",Ruby," in row]
    one_stone = [row for row in ruby if row.split(",")[3] == ruby[0].split(",")[3]]
    manifest = demo.out_dir / "few-rubies.csv"
    manifest.write_text("\n".join([rows[0]] + [row for row in rows[1:] if ",Ruby," not in row] + one_stone) + "\n")
    report = data_report.inspect(str(manifest))
    assert report["per_class"]["Ruby"].get("eval", 0) == report["per_class"]["Ruby"].get("test", 0) == 0
    assert (f"warning: Ruby has no photo in eval or test ({len(one_stone)} photos): a class needs photos of as many "
            f"different stones as there are splits") in data_report.summary_lines(report)


def test_a_photo_in_two_class_folders_is_named_with_both_classes(tmp_path):
    demo = demo_data.make_demo_data(tmp_path / "demo", per_class=4, seed=0, size=48)
    images = demo.out_dir / "images"
    ruby = sorted((images / "Ruby").glob("*.jpg"))[0]
    (images / "Citrine" / ruby.name).write_bytes(ruby.read_bytes())  # a ruby copied into Citrine
    report = data_report.inspect(str(images))
    named = f"Citrine/{ruby.name} (Citrine), Ruby/{ruby.name} (Ruby)"
    assert [line for line in data_report.summary_lines(report) if "two classes" in line] == [
        f"warning: one stone in two classes? {named}: the same stone or near-duplicate photos labelled "
        f"differently; keep one label"]
    page = data_report.write(report, tmp_path / "out")["html"].read_text()
    table = page.split("<h3>Photos in more than one class</h3>")[1].split("</table>")[0]
    assert f"<td>Citrine/{ruby.name}</td><td>Citrine</td>" in table
    assert f"<td>Ruby/{ruby.name}</td><td>Ruby</td>" in table


@pytest.mark.slow  # reads 3,512 photos
def test_the_88_class_photos_are_all_accounted_for_and_groups_stay_in_one_split(real_data, tmp_path):
    report = data_report.inspect(str(real_data))
    visible = [p for p in real_data.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert report["counts"]["files"] == len(visible) == 3512
    assert len({f["path"] for f in report["files"]}) == 3512
    assert report["splits"]["near_duplicate_groups"] > 0
    split_of_group = defaultdict(set)
    for f in report["files"]:
        if f["status"] == "accepted":
            split_of_group[f["group"]].add(f["split"])
    assert all(len(s) == 1 for s in split_of_group.values())
    assert len(report["per_class"]) == 88


def test_jsonl_manifest_rows_are_each_accounted_for_and_extra_columns_become_features(tmp_path):
    from gemstone import ingestion

    (tmp_path / "pics").mkdir()
    for name, rgb in (("a.jpg", (200, 20, 30)), ("b.jpg", (20, 30, 200)), ("c.jpg", (20, 180, 40))):
        (tmp_path / "pics" / name).write_bytes(_encode(_stone(rgb), "JPEG"))
    rows = [
        {"path": "pics/a.jpg", "label": "Ruby", "stone_id": "r1", "lighting": "daylight"},
        {"path": "pics/b.jpg", "label": "Sapphire Blue", "family": "Corundum", "lighting": "lamp"},
        {"path": "pics/c.jpg", "label": ""},                       # no label
        {"path": "pics/a.jpg", "label": "Ruby"},                   # the same file again
        {"path": "pics/gone.jpg", "label": "Emerald"},             # missing
        {"label": "Emerald"},                                      # no path
    ]
    manifest = tmp_path / "stones.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = data_report.inspect(str(manifest))
    outcomes = sorted((f["path"], f.get("reason", f["status"])) for f in report["files"])
    assert outcomes == [("pics/a.jpg", "accepted"), ("pics/a.jpg", "duplicate_manifest_row"),
                        ("pics/b.jpg", "accepted"), ("pics/c.jpg", "no_label"), ("pics/gone.jpg", "missing_file"),
                        ("stones.jsonl:6", "bad_manifest_row")]  # every row once
    discovery = ingestion.discover(str(tmp_path), "stones.jsonl")
    ruby = next(e for e in discovery.entries if e.label == "Ruby")
    assert ruby.family == "Corundum" and ruby.stone_id == "r1"  # family from schema/families.csv
    example = ingestion.to_tf_example(ingestion.load_entry(ruby, ingestion.IngestionOptions()), "g1")
    assert example.features.feature["lighting"].bytes_list.value == [b"daylight"]
    assert example.features.feature["brightness"].float_list.value[0] > 0
