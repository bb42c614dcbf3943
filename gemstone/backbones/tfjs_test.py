"""gemstone.backbones' TF.js reader and mapping, on a small model: both file forms, quantizations, mismatches."""
import base64
import json
import os
import shutil

import numpy as np
import pytest

import tf_keras as keras  # noqa: E402

from gemstone import backbones  # noqa: E402


def small_model(last_filters=6, seed=0):
    """Conv2D(no bias) + BN(no gamma), twice, then a Conv2D with bias: InceptionV3's building blocks.
    Layer names are Keras' automatic ones, so a second copy is named differently (as in real life)."""
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(scale=False)(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Conv2D(last_filters, 3, use_bias=False)(x)
    x = keras.layers.BatchNormalization(scale=False)(x)
    x = keras.layers.Activation("relu")(x)
    outputs = keras.layers.Conv2D(4, 1, use_bias=True)(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for w in layer.weights:
            if "moving_variance" in w.name:
                values.append(rng.uniform(0.5, 2.0, w.shape).astype(np.float32))
            else:
                values.append(rng.normal(0, 0.5, w.shape).astype(np.float32))
        if values:
            layer.set_weights(values)
    return model


def quantize(x):
    lo, hi = float(x.min()), float(x.max())
    scale = (hi - lo) / 255 or 1.0
    q = np.round((x - lo) / scale).astype(np.uint8)
    return q, {"min": lo, "scale": scale, "dtype": "uint8"}


def tfjs_parts(model):
    """(model.json dict, shard bytes, {weight name: scale}) in TF.js's layers format, uint8-quantized."""
    layers = [{"name": layer.name, "class_name": type(layer).__name__, "config": {"name": layer.name}}
              for layer in model.layers]
    specs, blobs, scales = [], [], {}
    for layer in model.layers:
        for w in layer.weights:
            name = f"{layer.name}/{w.name.split(':')[0].rsplit('/', 1)[-1]}"
            q, quantization = quantize(w.numpy())
            specs.append({"name": name, "shape": list(w.shape), "dtype": "float32", "quantization": quantization})
            blobs.append(q.tobytes())
            scales[name] = quantization["scale"]
    model_json = {"format": "layers-model",
                  "modelTopology": {"class_name": "Model", "keras_version": "2.2.4",
                                    "model_config": {"class_name": "Model", "config": {"layers": layers}}},
                  "weightsManifest": [{"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"], "weights": specs}]}
    return model_json, b"".join(blobs), scales


def write_standard(model, folder):
    model_json, data, scales = tfjs_parts(model)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(model_json))
    half = len(data) // 2
    (folder / "group1-shard1of2.bin").write_bytes(data[:half])
    (folder / "group1-shard2of2.bin").write_bytes(data[half:])
    return scales


def write_umd(model, folder):
    """As nsfwjs ships it: model.min.js exports the model object, each shard a base64 string."""
    model_json, data, scales = tfjs_parts(model)
    model_json["weightsManifest"][0]["paths"] = ["group1-shard1of2", "group1-shard2of2"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.min.js").write_text(f"module.exports = {json.dumps(model_json)};\n")
    half = len(data) // 2
    for i, part in enumerate((data[:half], data[half:]), 1):
        (folder / f"group1-shard{i}of2.min.js").write_text(f'module.exports = "{base64.b64encode(part).decode()}";\n')
    return scales


def test_standard_format_round_trip(tmp_path):
    source = small_model()
    scales = write_standard(source, tmp_path / "tfjs")
    model_json, arrays = backbones.load_tfjs_layers_model(tmp_path / "tfjs")

    target = small_model(seed=1)  # same architecture, other weights, other layer names
    assert [layer.name for layer in target.layers] != [layer.name for layer in source.layers]
    result = backbones.assign_weights(target, model_json, arrays)
    assert len(result["assigned"]) == 5 and result["ignored"] == []
    for (tfjs_name, _), src, dst in zip(result["assigned"], [l for l in source.layers if l.weights],
                                        [l for l in target.layers if l.weights]):
        for w_src, w_dst in zip(src.weights, dst.weights):
            name = f"{tfjs_name}/{w_src.name.split(':')[0].rsplit('/', 1)[-1]}"
            assert np.abs(w_src.numpy() - w_dst.numpy()).max() <= scales[name] / 2 + 1e-6, name

    x = np.random.default_rng(2).normal(size=(4, 12, 12, 3)).astype(np.float32)
    expected, got = source(x, training=False).numpy(), target(x, training=False).numpy()
    assert np.corrcoef(expected.ravel(), got.ravel())[0, 1] > 0.999
    assert np.abs(expected - got).max() < 0.05 * np.abs(expected).max()


def test_umd_package_format_gives_the_same_arrays(tmp_path):
    node = os.environ.get(backbones.NODE_ENV) or shutil.which("node")
    if not node:
        pytest.skip(f"node not found: needed to read the .min.js form (set {backbones.NODE_ENV} or install Node.js)")
    model = small_model()
    write_standard(model, tmp_path / "standard")
    write_umd(model, tmp_path / "umd")
    json_a, arrays_a = backbones.load_tfjs_layers_model(tmp_path / "standard")
    json_b, arrays_b = backbones.load_tfjs_layers_model(tmp_path / "umd")
    assert json_b["modelTopology"] == json_a["modelTopology"]
    assert arrays_a.keys() == arrays_b.keys() and len(arrays_a) == 10
    for name in arrays_a:
        np.testing.assert_array_equal(arrays_a[name], arrays_b[name])


def test_other_quantizations():
    values = {"f32": np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5, "i32": np.array([3, -7], np.int32),
              "f16": np.array([0.5, -1.25, 3.0], np.float16)}
    q16 = np.array([0, 1000, 65535], np.uint16)
    model_json = {"weightsManifest": [
        {"paths": ["a"], "weights": [{"name": "l/kernel", "shape": [2, 3], "dtype": "float32"},
                                     {"name": "l/count", "shape": [2], "dtype": "int32"}]},
        {"paths": ["b"], "weights": [{"name": "m/bias", "shape": [3], "dtype": "float32",
                                      "quantization": {"dtype": "float16"}},
                                     {"name": "m/beta", "shape": [3], "dtype": "float32",
                                      "quantization": {"dtype": "uint16", "min": -1.0, "scale": 0.001}}]}]}
    data = values["f32"].tobytes() + values["i32"].tobytes() + values["f16"].tobytes() + q16.astype("<u2").tobytes()
    arrays = backbones.read_tfjs_weights(model_json, data)
    np.testing.assert_array_equal(arrays["l/kernel"], values["f32"])
    assert arrays["l/count"].dtype == np.int32 and arrays["l/count"].tolist() == [3, -7]
    np.testing.assert_array_equal(arrays["m/bias"], values["f16"].astype(np.float32))
    np.testing.assert_allclose(arrays["m/beta"], q16 * 0.001 - 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="manifest describes"):
        backbones.read_tfjs_weights(model_json, data + b"\0")
    with pytest.raises(ValueError, match="end inside weight m/beta"):
        backbones.read_tfjs_weights(model_json, data[:-1])


def test_shape_mismatch_names_the_layers(tmp_path):
    source = small_model(last_filters=6)
    write_standard(source, tmp_path / "tfjs")
    model_json, arrays = backbones.load_tfjs_layers_model(tmp_path / "tfjs")
    target = small_model(last_filters=7)  # one more filter in the second conv
    with pytest.raises(backbones.WeightMismatch) as error:
        backbones.assign_weights(target, model_json, arrays)
    tfjs_conv, keras_conv = source.layers[4].name, target.layers[4].name
    assert f"TF.js layer {tfjs_conv} " in str(error.value) and f"Keras layer {keras_conv} " in str(error.value)
    assert "kernel shape (3, 3, 8, 6) in TF.js, (3, 3, 8, 7) in Keras" in str(error.value)
