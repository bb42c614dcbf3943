"""ImageExampleGen executor on Beam: splits, group integrity, and every file accounted for."""
import json
import shutil
from pathlib import Path

import pytest
import tensorflow as tf
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.image_example_gen import component, executor
from gemstone import demo_data, ingestion
from tests.tfx_helpers import run_image_example_gen


def _read_split(examples_uri, split):
    files = [str(p) for p in Path(examples_uri, f"Split-{split}").glob("*.gz")]
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _value(example, key):
    return example.features.feature[key].bytes_list.value[0].decode()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_data.make_demo_data(tmp_path_factory.mktemp("demo"), per_class=10, seed=3, size=64)


def test_manifest_input_keeps_stones_together_and_fills_every_split(demo, tmp_path):
    examples = run_image_example_gen(demo.out_dir, "manifest.csv", tmp_path)
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval", "test"]
    split_of_stone, total = {}, 0
    for split in ("train", "eval", "test"):
        rows = _read_split(examples.uri, split)
        assert rows, f"split {split} is empty"
        total += len(rows)
        for example in rows:
            stone = _value(example, "stone_id")
            assert split_of_stone.setdefault(stone, split) == split, f"stone {stone} crosses splits"
            assert _value(example, "family") == demo_data.VARIETIES[_value(example, "label")]
    assert total == demo.n_images
    # Every class is in the train split, so the label vocabulary knows every class.
    train_labels = {_value(e, "label") for e in _read_split(examples.uri, "train")}
    assert train_labels == set(demo_data.VARIETIES)


def test_class_folders_with_bad_files_account_for_every_file(demo, tmp_path):
    root = tmp_path / "photos"
    shutil.copytree(Path(demo.out_dir) / "images", root)
    (root / "Ruby" / "empty.jpg").write_bytes(b"")
    (root / "Ruby" / "notes.jpg").write_text("not a picture")
    good = next((root / "Emerald").glob("*.jpg")).read_bytes()
    (root / "Emerald" / "cut off.jpg").write_bytes(good[: len(good) // 2])
    (root / "Emerald" / ".DS_Store").write_bytes(b"\0")
    (root / "loose.jpg").write_bytes(good)

    examples = run_image_example_gen(root, "*/*", tmp_path)
    report = json.loads(Path(examples.uri, executor.REPORT_FILE_NAME).read_text())
    by_path = {f["path"]: f for f in report["files"]}
    assert len(by_path) == len(report["files"]) == demo.n_images + 4
    assert by_path["Ruby/empty.jpg"]["reason"] == "empty_file"
    assert by_path["Ruby/notes.jpg"]["reason"] == "not_an_image"
    assert by_path["Emerald/cut off.jpg"]["reason"] == "truncated"
    assert by_path["loose.jpg"]["reason"] == "no_label"
    assert report["counts"]["ignored_hidden"] == 1
    written = sum(len(_read_split(examples.uri, s)) for s in ("train", "eval", "test"))
    assert written == report["counts"]["accepted"] == demo.n_images
    # The report's split is the split the example was written to.
    for split in ("train", "eval", "test"):
        for example in _read_split(examples.uri, split):
            assert by_path[_value(example, "source_path")]["split"] == split


def test_decoded_example_image_matches_the_source(demo, tmp_path):
    examples = run_image_example_gen(demo.out_dir, "manifest.csv", tmp_path, ingestion.IngestionOptions(split_seed=7))
    example = _read_split(examples.uri, "train")[0]
    source = Path(demo.out_dir) / _value(example, "source_path")
    decoded = tf.io.decode_image(example.features.feature["image"].bytes_list.value[0], channels=3)
    original = tf.io.decode_image(source.read_bytes(), channels=3)
    assert decoded.shape == original.shape
    assert example.features.feature["width"].int64_list.value[0] == original.shape[1]


def test_split_ratios_follow_the_output_config():
    gen = component.ImageExampleGen(input_base="/data", splits={"train": 8, "eval": 2})
    output_config = gen.exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY]
    if isinstance(output_config, str):
        output_config = proto_utils.json_to_proto(output_config, example_gen_pb2.Output())
    ratios = executor.split_ratios(output_config)
    assert ratios == {"train": 0.8, "eval": 0.2}


@pytest.mark.slow  # starts Beam worker processes
def test_multi_processing_direct_runner_gives_the_same_split(demo, tmp_path):
    """Worker processes, as the pipeline runs Beam on a many-core machine (pipeline/configs.py): same result."""
    args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    multi = run_image_example_gen(demo.out_dir, "manifest.csv", tmp_path / "multi", beam_args=args)
    single = run_image_example_gen(demo.out_dir, "manifest.csv", tmp_path / "single")
    for split in ("train", "eval", "test"):
        assert sorted(_value(e, "source_path") for e in _read_split(multi.uri, split)) == \
            sorted(_value(e, "source_path") for e in _read_split(single.uri, split))


def test_read_examples_keeps_only_what_it_is_asked_for(demo, tmp_path):
    examples = run_image_example_gen(demo.out_dir, "manifest.csv", tmp_path)
    every = ingestion.read_examples(examples.uri, "test", ("source_path", "label"))
    assert len(every) == len(_read_split(examples.uri, "test"))
    wanted = {e["source_path"] for e in every[::3]}
    kept = ingestion.read_examples(examples.uri, "test", ("source_path", "image"),
                                   keep=lambda e: e["source_path"] in wanted)
    assert {e["source_path"] for e in kept} == wanted and len(kept) == len(wanted)
    assert all(e["image"][:2] in (b"\xff\xd8", b"\x89P") for e in kept)  # JPEG or PNG bytes
