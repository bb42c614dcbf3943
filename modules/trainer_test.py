"""The Trainer: when early stopping may stop it, and the transfer-learning path from FnArgs to the export contract."""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from gemstone import contract
from modules import end_to_end, inputs, saliency, trainer, transform
from modules import model as model_lib

SIZE = 16


def _photos(brightness, labels):
    """Grey photos of the given brightness, with the labels given (variety and family alike)."""
    images = tf.constant(np.broadcast_to(np.array(brightness, np.float32)[:, None, None, None],
                                         (len(labels), SIZE, SIZE, 3)).copy())
    inputs = {contract.IMAGE_XF: images, contract.COLOUR_XF: transform.colour_histogram(images)}
    y = tf.constant(labels, tf.int64)
    return tf.data.Dataset.from_tensor_slices((inputs, {contract.VARIETY_HEAD: y, contract.FAMILY_HEAD: y}))


@pytest.mark.slow  # trains
def test_early_stopping_waits_for_the_learning_rate_to_decay_then_stops(tmp_path):
    """Eval labels are the reverse of the training labels: eval loss gets worse from the first epoch.

    Watched from the start, training would stop after patience + 1 epochs. It is
    watched from the middle of the cosine decay, then stops `patience` epochs later.
    """
    # Seeded, so every run is the same one: late in the decay eval loss moves by only
    # hundredths an epoch, either way, and one unseeded run in about fifteen failed.
    keras.utils.set_random_seed(0)
    brightness = np.tile([0.2, 0.8], 16)
    train = _photos(brightness, (brightness > 0.5).astype(int)).batch(8)
    val = _photos(brightness, (brightness < 0.5).astype(int)).batch(8)
    model = model_lib.build_model(SIZE, 2, 2, transform.COLOUR_FEATURE_SIZE, learning_rate=1e-2)
    config = {**contract.TRAINER_DEFAULTS, "epochs": 8, "patience": 2, "batch_size": 8, "imbalance": "none"}
    history = end_to_end.fit(model, train, val, config, np.array([16, 16]), str(tmp_path))
    losses = history["val_loss"]
    assert np.argmin(losses) == 0, f"the premise: eval loss is lowest at the first epoch, got {losses}"
    assert len(losses) == 8 // 2 + 2 + 1  # watched from epoch 4 (0-based), stopped 2 epochs without improving


@pytest.mark.slow  # EfficientNet-Lite2 over the photos, two short training stages and an export: a minute or two
@pytest.mark.parametrize("scope, stage2", [("top_blocks", ["stage2_fine_tune"]),
                                           # the thorough profile: the features again, and the head on them
                                           ("whole_network", ["stage2_whole_network", "features_again",
                                                              "stage1_head_again"])])
def test_transfer_learning_trains_both_stages_and_exports_the_contract(demo_photos, tmp_path, scope, stage2):
    """run_fn on the default backbone (EfficientNet-Lite2 at a small input, random weights): the whole transfer
    path, from TFX's FnArgs to a SavedModel whose `serving_default` answers with the prediction record."""
    import json

    from tfx.components.trainer import fn_args_utils
    from tfx.types import artifact_utils, standard_artifacts

    from tests import contract_model

    rows = contract_model.rows_of(demo_photos)
    examples, graph = standard_artifacts.Examples(), standard_artifacts.TransformGraph()
    examples.uri, graph.uri = str(tmp_path / "examples"), str(tmp_path / "transform_graph")
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    contract_model.write_examples(rows, demo_photos, Path(examples.uri))
    contract_model.transform_graph(rows, demo_photos, Path(graph.uri), image_size=75)
    config = {"backbone": "efficientnet_lite2", "weights": "", "views": 2, "epochs": 2, "fine_tune_epochs": 1,
              "batch_size": 16, "edge_models": False, "fine_tune_scope": scope}
    fn_args = fn_args_utils.get_common_fn_args(
        {"examples": [examples], "transform_graph": [graph]},
        {"train_args": "{}", "eval_args": "{}", "custom_config": json.dumps(config)}, str(tmp_path / "work"))
    fn_args.serving_model_dir, fn_args.model_run_dir = str(tmp_path / "serving"), str(tmp_path / "run")
    fn_args.custom_config = config

    trainer.run_fn(fn_args)

    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert "fine_tuning_kept" in history  # stage 2 ran, and whether it was kept is recorded
    assert history["refit_loss"]  # stage 3 ran: the head again, on training and eval photos
    timings = json.loads((tmp_path / "run" / trainer.TIMINGS_FILE).read_text())
    assert list(timings) == ["features_train", "features_eval", "stage1_head", *stage2, "stage3_refit",
                             "novelty", "export", "gallery"]
    assert all(seconds >= 0 for seconds in timings.values()) and timings["stage1_head"] > 0, timings
    backbone = json.loads((tmp_path / "serving" / contract.MODEL_ASSETS_DIR / contract.BACKBONE_FILE).read_text())
    assert backbone["backbone"] == "efficientnet_lite2" and backbone["fine_tune_scope"] == scope
    explanations = backbone["explanations"]  # for the card: the explain signature's method, in words
    assert explanations["summary"] == saliency.SUMMARIES[explanations["method"]]
    signature = tf.saved_model.load(fn_args.serving_model_dir).signatures[contract.SERVING_SIGNATURE]
    photos = [(demo_photos / r["path"]).read_bytes() for r in rows[:3]]
    records = contract.prediction_records(signature(**{contract.SERVING_INPUT: tf.constant(photos)}))
    families = {r["label"]: r["family"] for r in rows}
    assert len(records) == 3 and all(r["family"] == families[r["label"]] for r in records)
    # The open-set verdict, fitted on the photos' pooled features: thresholds set on the eval photos.
    assert all(contract.has_novelty(r) and len(r["novelty"]) == 2 for r in records)
    fitted = json.loads((tmp_path / "serving" / contract.MODEL_ASSETS_DIR / contract.NOVELTY_FILE).read_text())
    assert fitted["eval_flagged_either"] <= fitted["target_flagged_share"] + 1e-9
    assert fitted["not_a_gemstone"]["dimensions"] == 208  # block19, average-pooled
    # The gallery: typical training photos of each variety the training photos show, as thumbnails.
    folder = tmp_path / "serving" / contract.MODEL_ASSETS_DIR / contract.GALLERY_DIR
    shown = json.loads((folder / contract.GALLERY_FILE).read_text())
    assert set(shown) == {r["label"] for r in rows}
    assert all(1 <= len(files) <= 3 and all((folder / f).is_file() for f in files) for files in shown.values())


def test_input_dataset_gives_the_same_photos_in_the_same_order_however_the_split_was_written(demo_photos, tmp_path):
    """Beam writes a split's examples in no fixed order; the Trainer reads them in one order (content_ordered)."""
    from tests import contract_model

    rows = contract_model.rows_of(demo_photos)
    contract_model.transform_graph(rows, demo_photos, tmp_path / "graph", image_size=SIZE)
    transform_output = tft.TFTransformOutput(str(tmp_path / "graph"))
    # The same photos in two orders, the second also in two files.
    contract_model.write_examples(rows, demo_photos, tmp_path / "written", splits=("train",))
    contract_model.write_examples(rows[::-1][:5], demo_photos, tmp_path / "rewritten", splits=("train",))
    (tmp_path / "rewritten" / "Split-train" / "data.gz").rename(tmp_path / "rewritten" / "Split-train" / "a.gz")
    contract_model.write_examples(rows[::-1][5:], demo_photos, tmp_path / "rewritten", splits=("train",))

    def read(folder):
        batches = list(inputs.input_dataset([str(folder / "Split-train" / "*")], transform_output, 4, False, 0))
        return (np.concatenate([y[contract.VARIETY_HEAD].numpy() for _, y in batches]),
                np.concatenate([x[contract.COLOUR_XF].numpy() for x, _ in batches]))

    labels, colours = read(tmp_path / "written")
    labels_again, colours_again = read(tmp_path / "rewritten")
    assert len(labels) == len(rows)  # every photo, once
    np.testing.assert_array_equal(labels, labels_again)
    np.testing.assert_array_equal(colours, colours_again)
    # Not the order written: the varieties are mixed, not one after the other.
    assert not np.array_equal(labels, np.sort(labels)) and not np.array_equal(labels, np.sort(labels)[::-1])
