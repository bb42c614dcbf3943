"""What the server says about a version: its date, its gallery's files (and no other file), its signatures."""
import json
import os

import pytest

from gemstone import contract
from gemstone.apps import model_info


@pytest.fixture
def version(tmp_path):
    folder = tmp_path / "gems" / "3"
    gallery = folder / contract.MODEL_ASSETS_DIR / contract.GALLERY_DIR
    gallery.mkdir(parents=True)
    (gallery / "000_0.jpg").write_bytes(b"\xff\xd8 a thumbnail")
    (gallery / contract.GALLERY_FILE).write_text(json.dumps({"Ruby": ["000_0.jpg", "000_1.jpg"], "Spinel": "odd"}))
    (folder / "saved_model.pb").write_bytes(b"")
    (tmp_path / "gems" / "secret.jpg").write_bytes(b"not for clients")
    return folder


def test_the_gallery_lists_the_files_it_has(version):
    assert model_info.gallery(version) == {"Ruby": ["000_0.jpg"]}  # a listed file that is missing is left out
    assert model_info.gallery(version.parent) == {}  # no gallery: a model exported before it


@pytest.mark.parametrize("name", ["../../secret.jpg", "../../../secret.jpg", "..", ".", "", ".gallery.json",
                                  "sub/000_0.jpg", "..\\secret.jpg", "saved_model.pb", "000_1.jpg"])
def test_no_file_but_the_gallerys_own(version, name):
    assert model_info.gallery_file(version, name) is None


def test_a_link_out_of_the_gallery_is_refused(version):
    os.symlink(version.parent / "secret.jpg", version / contract.MODEL_ASSETS_DIR / contract.GALLERY_DIR / "x.jpg")
    assert model_info.gallery_file(version, "x.jpg") is None
    assert model_info.gallery_file(version, "000_0.jpg").read_bytes().startswith(b"\xff\xd8")


def test_the_date_is_the_cards_else_the_folders(version):
    os.utime(version, (0, 86400))
    assert model_info.date(version) == "1970-01-02T00:00:00+00:00"
    (version / contract.MODEL_CARD_JSON_FILE).write_text(json.dumps({"created": "2026-11-30T08:15:00+00:00"}))
    assert model_info.date(version) == "2026-11-30T08:15:00+00:00"
