"""The TF.js layers format, read in pure Python, and its weights assigned to a Keras model.

Ours, not the `tensorflowjs` pip package: that package imports jax, flax and
tensorflow-decision-forests, which conflict with this TFX 1.16 stack. The UMD
.min.js form nsfwjs ships is unwrapped by node (NODE_ENV names it).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from gemstone.backbones.names import BackboneError, WeightMismatch, _one_line

# The node command, overridable for machines with node elsewhere (and for tests: a missing command forces failure).
NODE_ENV = "GEMSTONE_NODE"


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
