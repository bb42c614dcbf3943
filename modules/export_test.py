"""The exported signatures (the export contract): one answer per photo, its family the family of its variety."""
import csv

import numpy as np
import pytest
import tensorflow as tf

from gemstone import contract
from tests.contract_model import REVIEW_THRESHOLD


@pytest.fixture(scope="module")
def answers(contract_model, demo_photos):
    """(prediction records, {variety: family}) for every demo photo, through `serving_default`."""
    with open(demo_photos / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    signature = tf.saved_model.load(str(contract_model / "1")).signatures[contract.SERVING_SIGNATURE]
    photos = tf.constant([(demo_photos / r["path"]).read_bytes() for r in rows])
    return contract.prediction_records(signature(**{contract.SERVING_INPUT: photos})), \
        {r["label"]: r["family"] for r in rows}


def test_the_family_is_the_family_of_the_variety_with_its_varieties_summed(answers):
    records, family_of = answers
    for record in records:
        assert record["family"] == family_of[record["label"]]
        same_family = [p for c, p in zip(record["classes"], record["probabilities"]) if family_of[c] == record["family"]]
        assert abs(record["family_confidence"] - sum(same_family)) < 1e-5
        assert record["family_confidence"] >= record["confidence"] - 1e-6


def test_top_k_is_ranked_and_the_answer_is_its_first(answers):
    records, _ = answers
    for record in records:
        assert len(record["top_k_labels"]) == contract.TOP_K
        assert record["top_k_scores"] == sorted(record["top_k_scores"], reverse=True)
        assert record["label"] == record["top_k_labels"][0]
        assert abs(record["confidence"] - max(record["probabilities"])) < 1e-6
        assert abs(sum(record["probabilities"]) - 1.0) < 1e-4


def test_needs_review_below_the_threshold_or_when_not_known(answers):
    records, _ = answers
    assert all(r["needs_review"] == (r["confidence"] < REVIEW_THRESHOLD or not r["known"]) for r in records)


def test_the_open_set_verdict_is_known_exactly_when_both_scores_are_under_1_and_says_why_not(answers):
    records, _ = answers
    for r in records:
        not_a_gemstone, unfamiliar = r["novelty"]
        assert r["known"] == (not_a_gemstone < 1 and unfamiliar < 1)
        expected = (contract.NOT_A_GEMSTONE if not_a_gemstone >= 1 else contract.UNFAMILIAR_VARIETY
                    if unfamiliar >= 1 else contract.LOW_CONFIDENCE if r["confidence"] < REVIEW_THRESHOLD else None)
        assert r["review_reason"] == expected
    # Fitted on these very photos to flag about 5 % of them: most are known, and the flags are not all alike.
    known = np.mean([r["known"] for r in records])
    assert 0.85 <= known < 1.0
    compact = contract.compact(records[0])
    assert set(compact["novelty"]) == set(contract.NOVELTY_QUESTIONS) and compact["known"] == records[0]["known"]


def test_a_model_exported_before_the_open_set_outputs_still_answers_without_them(tmp_path, demo_photos):
    from tests import contract_model as builder

    version = builder.build(demo_photos, tmp_path, open_set=False)
    signature = tf.saved_model.load(str(version)).signatures[contract.SERVING_SIGNATURE]
    photo = next(demo_photos.rglob("*.jpg")).read_bytes()
    record = contract.prediction_records(signature(**{contract.SERVING_INPUT: tf.constant([photo])}))[0]
    assert not contract.has_novelty(record) and "known" not in contract.compact(record)
    assert record["needs_review"] == (record["confidence"] < REVIEW_THRESHOLD)


def test_the_answers_depend_on_the_photo(answers):
    records, _ = answers
    assert len({tuple(np.round(r["probabilities"], 4)) for r in records}) > len(records) // 2


def test_keras_rebuilds_the_saved_model_from_its_config_and_it_answers_as_the_signature(contract_model, demo_photos):
    # export.save keeps no per-layer traces (loading is 7x faster); Keras must still load the model
    # (the Tuner test and bench/shipping do), which needs the custom layers registered.
    from modules import export
    from modules import augmentation
    from modules import transform

    version = str(contract_model / "1")
    rebuilt = export.load_keras_model(version, compile=False)
    assert rebuilt.get_layer("photo_conditions").__class__ is augmentation.RandomPhotoConditions
    photos = sorted(demo_photos.rglob("*.jpg"))[:4]
    images = tf.constant([p.read_bytes() for p in photos])
    logits = rebuilt(transform.model_inputs(images, rebuilt.input[contract.IMAGE_XF].shape[1]),
                     training=False)[contract.VARIETY_HEAD]
    served = tf.saved_model.load(version).signatures[contract.SERVING_SIGNATURE](**{contract.SERVING_INPUT: images})
    # The contract model is calibrated at temperature 1: the signature's probabilities are the softmax.
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), served["probabilities"].numpy(), atol=1e-5)


@pytest.mark.slow  # builds, saves and reloads a pretrained network
@pytest.mark.parametrize("members", [1, 3])
def test_keras_rebuilds_the_pretrained_model_with_its_experts(tmp_path, members):
    # The experts' log-probabilities are Activation layers: their function must be one Keras can name in
    # the config (bench/shipping's Keras loop loads the pushed model; tf.nn.log_softmax could not be rebuilt).
    from modules import export, transform
    from modules import model as model_lib

    size = 75
    parts = model_lib.build_transfer_model(size, 5, 2, transform.COLOUR_FEATURE_SIZE, members=members)
    export.save(parts.model, None, str(tmp_path))
    rebuilt = export.load_keras_model(str(tmp_path), compile=False)
    images = tf.random.stateless_uniform([2, size, size, 3], seed=[6, 7])
    inputs = {contract.IMAGE_XF: images, contract.COLOUR_XF: transform.colour_histogram(images)}
    for head in (contract.VARIETY_HEAD, contract.FAMILY_HEAD):
        np.testing.assert_allclose(rebuilt(inputs, training=False)[head].numpy(),
                                   parts.model(inputs, training=False)[head].numpy(), atol=1e-5)


def test_explain_answers_as_serving_default_and_maps_where_it_looked_at_the_photos_aspect_ratio(contract_model,
                                                                                              demo_photos):
    import io

    from PIL import Image

    loaded = tf.saved_model.load(str(contract_model / "1"))
    square = next(demo_photos.rglob("*.jpg")).read_bytes()
    buffer = io.BytesIO()
    Image.open(io.BytesIO(square)).resize((200, 100)).save(buffer, format="PNG")  # a wide photo, as PNG
    photos = tf.constant([square, buffer.getvalue()])
    explained = loaded.signatures[contract.EXPLAIN_SIGNATURE](**{contract.SERVING_INPUT: photos})
    served = loaded.signatures[contract.SERVING_SIGNATURE](**{contract.SERVING_INPUT: photos})
    for name in ("label", "confidence", "known"):
        np.testing.assert_array_equal(explained[name].numpy(), served[name].numpy())
    maps = explained[contract.SALIENCY_OUTPUT].numpy()
    side = maps.shape[1]
    assert maps.shape == (2, side, side) and maps.min() >= 0 and np.isclose(maps.max(axis=(1, 2)), 1.0).all()
    heatmaps = [Image.open(io.BytesIO(png)) for png in explained[contract.HEATMAP_OUTPUT].numpy()]
    assert heatmaps[0].size == (side, side) and heatmaps[1].size == (side, side // 2)
    assert all(h.mode == "L" for h in heatmaps)
