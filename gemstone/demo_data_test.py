import csv
import hashlib

import numpy as np
import pytest
from PIL import Image

from gemstone import demo_data, taxonomy


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.jpg"))}


def _manifest(folder):
    with open(folder / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_writes_class_folders_and_a_manifest_that_agree(tmp_path):
    summary = demo_data.make_demo_data(tmp_path, per_class=7, seed=3, size=64)
    rows = _manifest(tmp_path)
    assert summary.n_images == len(rows) == 7 * len(demo_data.VARIETIES)
    assert len(demo_data.VARIETIES) >= 8 and len(set(demo_data.VARIETIES.values())) >= 4
    for row in rows:
        path = tmp_path / row["path"]
        assert path.parent.name == row["label"]  # the class-folder layout says the same as the manifest
        assert row["family"] == demo_data.VARIETIES[row["label"]]
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (64, 64)


def test_families_agree_with_the_project_family_map():
    family_map = taxonomy.load_family_map()
    for variety, family in demo_data.VARIETIES.items():
        assert taxonomy.family_of(variety, family_map) == family


def test_several_photos_per_stone_share_a_stone_id(tmp_path):
    summary = demo_data.make_demo_data(tmp_path, per_class=12, seed=0, size=64)
    rows = _manifest(tmp_path)
    per_stone = {}
    for row in rows:
        per_stone.setdefault(row["stone_id"], set()).add(row["label"])
    assert summary.n_stones == len(per_stone) < len(rows)
    assert all(len(labels) == 1 for labels in per_stone.values())
    assert max(sum(r["stone_id"] == s for r in rows) for s in per_stone) >= 2


def test_deterministic_for_a_seed_and_different_for_another(tmp_path):
    demo_data.make_demo_data(tmp_path / "a", per_class=3, seed=1, size=48)
    demo_data.make_demo_data(tmp_path / "b", per_class=3, seed=1, size=48)
    demo_data.make_demo_data(tmp_path / "c", per_class=3, seed=2, size=48)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_second_call_with_same_parameters_reuses_the_output(tmp_path):
    demo_data.make_demo_data(tmp_path, per_class=2, seed=0, size=48)
    first = (tmp_path / "manifest.csv").stat().st_mtime_ns
    demo_data.make_demo_data(tmp_path, per_class=2, seed=0, size=48)
    assert (tmp_path / "manifest.csv").stat().st_mtime_ns == first
    demo_data.make_demo_data(tmp_path, per_class=3, seed=0, size=48)
    assert len(_manifest(tmp_path)) == 3 * len(demo_data.VARIETIES)


def test_varieties_differ_in_colour_but_overlap_within_a_pair():
    """Ruby and almandine share reds (not trivially separable); ruby and sapphire do not."""
    def mean_rgb(variety):
        rng = np.random.default_rng(0)
        return np.array([_stone_pixels(demo_data.render_gemstone(variety, rng, size=64)) for _ in range(12)])

    ruby, almandine, sapphire = mean_rgb("Ruby"), mean_rgb("Almandine"), mean_rgb("Sapphire Blue")
    assert (ruby[:, 0] > ruby[:, 2]).all() and (sapphire[:, 2] > sapphire[:, 0]).all()
    assert (almandine[:, 0] > almandine[:, 2]).all()


def _stone_pixels(image):
    pixels = np.asarray(image, dtype=float)
    centre = pixels[24:40, 24:40].reshape(-1, 3)
    return centre.mean(axis=0)


@pytest.mark.parametrize("kwargs", [{"per_class": 0}, {"size": 16}])
def test_bad_parameters_are_refused(tmp_path, kwargs):
    with pytest.raises(ValueError):
        demo_data.make_demo_data(tmp_path, **kwargs)


def test_unknown_variety_is_refused():
    with pytest.raises(ValueError, match="unknown variety"):
        demo_data.render_gemstone("Kryptonite", np.random.default_rng(0))
