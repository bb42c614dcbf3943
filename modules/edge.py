"""TFLite models for edge devices: float16 always, float32 when float16 disagrees, int8 when it agrees.

The edge model takes a decoded, resized RGB picture ([1, S, S, 3], floats in
0..1: decoding JPEG is the device's job) and computes the colour histogram
itself, with the same elementary ops as Transform, then returns calibrated
variety probabilities. The int8 model is kept only if its top-1 agrees with the
float model on at least MIN_AGREEMENT of the eval photos; `edge_report.json`
says what was kept and why.

float16 weights move the colour histogram's bin edges and, on the 88-class
model, changed the top-1 of 6.5 % of eval photos; when float16 agrees on less
than MIN_AGREEMENT, a float32 model (twice the size, same answers as the
SavedModel) is written beside it and the report says to use that one.

int8, of the kind `export(int8=...)` names (the Trainer's `edge_int8`), kept only when it agrees:
  - "dynamic_range" (default): int8 weights, float activations. No calibration,
    so it converts in seconds, and it runs on any TFLite CPU;
  - "full_integer": activations in int8 too, as integer-only accelerators (Edge
    TPU) need, calibrated on representative train photos. When it disagrees, the
    colour histogram's ops are kept in float (floor, segment sums of a few
    hundred bins do not survive int8 arithmetic) and that one is tried too.
    It has not been kept on any 88-class model so far (84 % at best), and its
    two conversions took 40 s of the demo's Trainer: hence on request only.
"""
import json
import os
import tempfile

import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from gemstone import contract  # noqa: E402
from modules import model as model_lib  # noqa: E402
from modules import novelty as novelty_lib  # noqa: E402
from modules import transform  # noqa: E402

MIN_AGREEMENT = 0.99
INT8_KINDS = contract.EDGE_INT8_KINDS
FOLDER = contract.EDGE_DIR


def edge_model(model: keras.Model, image_size: int, temperature: float,
               novelty: "novelty_lib.Novelty" = None) -> keras.Model:
    """image -> {probabilities} (and with `novelty`, the open-set `novelty` scores and `known`, as the SavedModel)."""
    image = keras.Input(shape=(image_size, image_size, 3), name="image")
    colour = keras.layers.Lambda(transform.colour_histogram, name="colour_histogram")(image)
    scorer = model_lib.with_image_features(model) if novelty is not None else model
    outputs = scorer({contract.IMAGE_XF: image, contract.COLOUR_XF: colour}, training=False)
    logits = outputs[contract.VARIETY_HEAD]
    result = {"probabilities": keras.layers.Softmax(name="probabilities")(logits / temperature)}
    if novelty is not None:
        scaled = keras.layers.Lambda(lambda t: novelty_lib.scores(t[0], t[1], novelty), name="novelty")(
            [outputs[model_lib.IMAGE_FEATURES], logits])
        result.update(novelty=scaled, known=keras.layers.Lambda(novelty_lib.known, name="known")(scaled))
    return keras.Model(image, result, name="gemstone_edge")


def _interpret(tflite_model: bytes, images: np.ndarray) -> dict:
    """Each output of the TFLite model's signature, by name, for every image (one at a time, as on a device)."""
    runner = tf.lite.Interpreter(model_content=tflite_model).get_signature_runner()
    outputs = {}
    for image in images:
        for name, value in runner(image=image[np.newaxis].astype(np.float32)).items():
            outputs.setdefault(name, []).append(value[0])
    return {name: np.stack(values) for name, values in outputs.items()}


def _agreement(tflite_model: bytes, eval_images: np.ndarray, reference: dict) -> dict:
    """Share of eval photos whose top-1 (and, with the open-set outputs, `known`) under the TFLite model is the
    SavedModel's (`reference`: the edge Keras model's outputs)."""
    outputs = _interpret(tflite_model, eval_images)
    result = {"top1_agreement": float((outputs["probabilities"].argmax(axis=1)
                                       == reference["probabilities"].argmax(axis=1)).mean())}
    if "known" in reference:
        result["known_agreement"] = float((outputs["known"].astype(bool) == reference["known"]).mean())
    return result


def _write(folder: str, name: str, data: bytes) -> None:
    with tf.io.gfile.GFile(os.path.join(folder, name), "wb") as f:
        f.write(data)


def _save_function(edge: keras.Model, image_size: int, folder: str) -> None:
    """The edge model as a SavedModel of one traced function and its weights: what every conversion reads.

    `TFLiteConverter.from_keras_model` saves the Keras model again for each
    conversion, tracing every layer: 44 s for InceptionV3 at 96 px, against 3 s
    for this, and the conversion itself takes 3 s more.
    """
    weights = tf.Module()
    weights.variables_ = list(edge.variables)  # tracked, so the function's captured weights are saved
    serve = tf.function(lambda image: edge(image, training=False), autograph=False,
                        input_signature=[tf.TensorSpec([1, image_size, image_size, 3], tf.float32, name="image")])
    tf.saved_model.save(weights, folder, signatures={"serving_default": serve.get_concrete_function()})


def _converter(saved: str) -> tf.lite.TFLiteConverter:
    return tf.lite.TFLiteConverter.from_saved_model(saved)


def _quantise(saved: str, representative: np.ndarray, float_tensors=None) -> bytes:
    """int8 TFLite; with `float_tensors`, those tensors' ops stay float (selective quantisation)."""
    def dataset():
        return ([image[np.newaxis].astype(np.float32)] for image in representative)

    converter = _converter(saved)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    if not float_tensors:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter.convert()
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=dataset,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=float_tensors))
    return debugger.get_nondebug_quantized_model()


def _histogram_tensors(tflite_model: bytes):
    names = [t["name"] for t in tf.lite.Interpreter(model_content=tflite_model).get_tensor_details()]
    return [n for n in names if "colour_histogram" in n]


def _dynamic_range(saved: str) -> bytes:
    """int8 weights, float activations: TFLite's default optimisation without a calibration set."""
    converter = _converter(saved)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def _int8(saved, representative, eval_images, reference, folder, kind: str = "dynamic_range") -> dict:
    """The `kind` of int8 model (full integer: then with the histogram in float if that disagrees)."""
    if kind == "dynamic_range":
        dynamic = _dynamic_range(saved)
        tried = {"dynamic_range": (dynamic, _agreement(dynamic, eval_images, reference))}
    else:
        full = _quantise(saved, representative)
        tried = {"full_integer": (full, _agreement(full, eval_images, reference))}
        if not _agrees(tried["full_integer"][1]):
            mixed = _quantise(saved, representative, _histogram_tensors(full))
            tried["histogram_in_float"] = (mixed, _agreement(mixed, eval_images, reference))
    report = {"agreement": {name: agreement for name, (_, agreement) in tried.items()}}
    kind, (model, agreement) = max(tried.items(), key=lambda kv: _least(kv[1][1]))
    report.update(bytes=len(model), **agreement, quantisation=kind, kept=_agrees(agreement))
    if report["kept"]:
        _write(folder, "model_int8.tflite", model)
    else:
        report["why_not_kept"] = (f"{_disagreement(agreement)} ({kind.replace('_', ' ')}), under "
                                  f"{MIN_AGREEMENT:.0%}: not kept")
    return report


def _least(agreement: dict) -> float:
    return min(agreement.values())


def _agrees(agreement: dict) -> bool:
    """Top-1 (and `known`, where the model has it) agree on at least MIN_AGREEMENT of the eval photos."""
    return _least(agreement) >= MIN_AGREEMENT


def _disagreement(agreement: dict) -> str:
    return "; ".join(f"{'top-1' if name == 'top1_agreement' else '`known`'} agrees with the SavedModel on "
                     f"{value:.1%} of eval photos" for name, value in agreement.items())


def export(model: keras.Model, image_size: int, temperature: float, representative: np.ndarray,
           eval_images: np.ndarray, out_dir: str, int8: str = "dynamic_range",
           novelty: "novelty_lib.Novelty" = None) -> dict:
    """Writes FOLDER/model_float16.tflite under out_dir, model_float32.tflite when float16 disagrees and
    model_int8.tflite when it agrees, and edge_report.json saying which and why."""
    if int8 not in INT8_KINDS:
        raise ValueError(f"int8={int8!r}: expected one of {', '.join(INT8_KINDS)}")
    edge = edge_model(model, image_size, temperature, novelty)
    folder = os.path.join(out_dir, FOLDER)
    tf.io.gfile.makedirs(folder)
    reference = {name: np.asarray(value) for name, value in edge.predict(eval_images, verbose=0).items()}
    with tempfile.TemporaryDirectory() as saved:
        _save_function(edge, image_size, saved)
        report = _convert(saved, image_size, representative, eval_images, reference, folder, int8)
    with tf.io.gfile.GFile(os.path.join(folder, contract.EDGE_REPORT_FILE), "w") as f:
        json.dump(report, f, indent=1)
    return report


def _convert(saved: str, image_size: int, representative: np.ndarray, eval_images: np.ndarray,
             reference: dict, folder: str, int8: str) -> dict:
    """float16 (float32 too when it disagrees), then int8, from the `saved` function; writes what is kept."""
    converter = _converter(saved)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    float16 = converter.convert()
    agreement = _agreement(float16, eval_images, reference)
    report = {"float16": {"bytes": len(float16), **agreement},
              "eval_photos": int(len(eval_images)), "min_agreement": MIN_AGREEMENT, "image_size": image_size,
              "input": f"[1, {image_size}, {image_size}, 3] float32 RGB in 0..1 (decoded, resized)"}
    _write(folder, "model_float16.tflite", float16)
    if not _agrees(agreement):
        float32 = _converter(saved).convert()
        report["float32"] = {"bytes": len(float32), **_agreement(float32, eval_images, reference),
                             "why": "float16 agrees on less than min_agreement: use model_float32.tflite"}
        _write(folder, "model_float32.tflite", float32)

    try:
        report["int8"] = _int8(saved, representative, eval_images, reference, folder, int8)
    except Exception as e:  # noqa: BLE001 - an unquantisable op must not lose the float16 model
        report["int8"] = {"kept": False, "why_not_kept": f"conversion failed: {type(e).__name__}: {e}"[:500]}
    return report
