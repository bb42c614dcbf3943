"""The TFLite export: the float16 model always, each model's agreement measured, int8 kept only when it agrees."""
import json

import numpy as np
import pytest
import tf_keras as keras

from gemstone import contract
from modules import edge, novelty, transform
from modules import model as model_lib

SIZE = 32


@pytest.mark.parametrize("kind, agreements, tried", [
    ("dynamic_range", (0.995,), ["dynamic_range"]),
    ("dynamic_range", (0.95,), ["dynamic_range"]),
    ("full_integer", (0.992,), ["full_integer"]),
    ("full_integer", (0.9, 0.95), ["full_integer", "histogram_in_float"]),
    ("full_integer", (0.9, 0.991), ["full_integer", "histogram_in_float"]),
])
def test_int8_makes_the_kind_asked_for_tries_the_histogram_in_float_after_a_full_integer_miss_and_keeps_the_best(
        kind, agreements, tried, tmp_path, monkeypatch):
    scores = {name.encode(): {"top1_agreement": agreement} for name, agreement in zip(tried, agreements)}
    monkeypatch.setattr(edge, "_dynamic_range", lambda saved: b"dynamic_range")
    monkeypatch.setattr(edge, "_quantise", lambda saved, representative, float_tensors=None:
                        b"histogram_in_float" if float_tensors else b"full_integer")
    monkeypatch.setattr(edge, "_histogram_tensors", lambda model: ["colour_histogram/floor"])
    monkeypatch.setattr(edge, "_agreement", lambda model, images, reference: scores[model])

    report = edge._int8("saved", None, None, None, str(tmp_path), kind)

    assert list(report["agreement"]) == tried and report["top1_agreement"] == max(agreements)
    best = max(range(len(agreements)), key=lambda i: agreements[i])
    assert report["quantisation"] == tried[best] and report["kept"] == (agreements[best] >= edge.MIN_AGREEMENT)
    written = tmp_path / "model_int8.tflite"
    assert (written.read_bytes() == tried[best].encode()) if report["kept"] else not written.exists()


def test_an_unknown_int8_kind_is_refused_before_any_conversion(tmp_path):
    with pytest.raises(ValueError, match="int8='int4': expected one of dynamic_range, full_integer"):
        edge.export(None, SIZE, 1.0, None, None, str(tmp_path), int8="int4")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(SIZE, 4, 2, transform.COLOUR_FEATURE_SIZE)
    rng = np.random.default_rng(0)
    images = rng.random((24, SIZE, SIZE, 3)).astype(np.float32)
    outputs = model_lib.with_image_features(model)(
        {contract.IMAGE_XF: images, contract.COLOUR_XF: transform.colour_histogram(images)},
        training=False)  # as the Trainer measures them (else the augmentation layers are on)
    features, logits = outputs[model_lib.IMAGE_FEATURES].numpy(), outputs[contract.VARIETY_HEAD].numpy()
    fitted, _ = novelty.fit(features[:12], np.arange(12) % 4, features[12:], logits[12:], (0, features.shape[1]), 4,
                            1.5, flagged_share=0.3)
    out = tmp_path_factory.mktemp("edge")
    report = edge.export(model, SIZE, 1.5, images[:12], images[12:], str(out), novelty=fitted)
    return model, images[12:], out / edge.FOLDER, report, fitted


@pytest.mark.slow  # TFLite conversions, int8 perhaps through TFLite's quantization debugger: minutes on 2 cores
def test_the_float16_model_answers_like_the_keras_model_open_set_verdict_included(exported):
    model, eval_images, folder, report, fitted = exported
    reference = edge.edge_model(model, SIZE, 1.5, fitted).predict(eval_images, verbose=0)
    tflite = edge._interpret((folder / "model_float16.tflite").read_bytes(), eval_images)
    probabilities = tflite["probabilities"]
    assert probabilities.shape == reference["probabilities"].shape
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    assert report["float16"]["top1_agreement"] == float(
        (probabilities.argmax(1) == reference["probabilities"].argmax(1)).mean())
    assert tflite["novelty"].shape == (len(eval_images), 2) and tflite["known"].dtype == bool
    assert report["float16"]["known_agreement"] == float((tflite["known"] == reference["known"]).mean())
    assert 0 < reference["known"].mean() < 1  # the premise: some photos are flagged, some are not
    # float32 is written exactly when float16 disagrees too often.
    least = min(report["float16"]["top1_agreement"], report["float16"]["known_agreement"])
    assert (folder / "model_float32.tflite").exists() == (least < edge.MIN_AGREEMENT)


@pytest.mark.slow
def test_int8_is_kept_exactly_when_it_agrees_and_the_report_says_so(exported):
    _, _, folder, report, _ = exported
    on_disk = json.loads((folder / contract.EDGE_REPORT_FILE).read_text())
    assert on_disk == json.loads(json.dumps(report))
    int8 = report["int8"]
    assert (folder / "model_int8.tflite").exists() == int8["kept"]
    if int8["kept"]:
        assert int8["top1_agreement"] >= edge.MIN_AGREEMENT
    else:
        assert "why_not_kept" in int8


@pytest.mark.slow
def test_the_edge_model_computes_the_colour_histogram_itself(exported):
    """Same picture, same histogram: the edge model's Lambda is Transform's function."""
    model, eval_images, _, _, _ = exported
    wrapped = edge.edge_model(model, SIZE, 1.0)
    layer = wrapped.get_layer("colour_histogram")
    assert np.allclose(keras.Model(wrapped.input, layer.output)(eval_images[:2]).numpy(),
                       transform.colour_histogram(eval_images[:2]).numpy())
