"""TFLite models for edge devices: float16 always, full-integer int8 when it agrees with the SavedModel.

The edge model takes a decoded, resized RGB picture ([1, S, S, 3], floats in
0..1: decoding JPEG is the device's job) and computes the colour histogram
itself, with the same elementary ops as Transform, then returns calibrated
variety probabilities. The int8 model is kept only if its top-1 agrees with the
float model on at least MIN_AGREEMENT of the eval photos; `edge_report.json`
says what was kept and why.
"""
import json
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from modules import features, transform  # noqa: E402

MIN_AGREEMENT = 0.99
FOLDER = "tflite"


def edge_model(model: keras.Model, image_size: int, temperature: float) -> keras.Model:
    image = keras.Input(shape=(image_size, image_size, 3), name="image")
    colour = keras.layers.Lambda(transform.colour_histogram, name="colour_histogram")(image)
    logits = model({features.IMAGE_XF: image, features.COLOUR_XF: colour}, training=False)[features.VARIETY_HEAD]
    probabilities = keras.layers.Softmax(name="probabilities")(logits / temperature)
    return keras.Model(image, probabilities, name="gemstone_edge")


def _interpret(tflite_model: bytes, images: np.ndarray) -> np.ndarray:
    interpreter = tf.lite.Interpreter(model_content=tflite_model)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for image in images:
        interpreter.set_tensor(source["index"], image[np.newaxis].astype(source["dtype"]))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target["index"])[0])
    return np.stack(outputs)


def export(model: keras.Model, image_size: int, temperature: float, representative: np.ndarray,
           eval_images: np.ndarray, out_dir: str) -> dict:
    """Writes FOLDER/model_float16.tflite (and model_int8.tflite if it agrees) under out_dir."""
    edge = edge_model(model, image_size, temperature)
    folder = os.path.join(out_dir, FOLDER)
    tf.io.gfile.makedirs(folder)
    reference = edge.predict(eval_images, verbose=0).argmax(axis=1)

    converter = tf.lite.TFLiteConverter.from_keras_model(edge)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    float16 = converter.convert()
    report = {"float16": {"bytes": len(float16),
                          "top1_agreement": float((_interpret(float16, eval_images).argmax(1) == reference).mean())},
              "eval_photos": int(len(eval_images)), "min_agreement": MIN_AGREEMENT, "image_size": image_size,
              "input": f"[1, {image_size}, {image_size}, 3] float32 RGB in 0..1 (decoded, resized)"}
    with tf.io.gfile.GFile(os.path.join(folder, "model_float16.tflite"), "wb") as f:
        f.write(float16)

    try:
        converter = tf.lite.TFLiteConverter.from_keras_model(edge)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[np.newaxis].astype(np.float32)] for image in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        int8 = converter.convert()
        agreement = float((_interpret(int8, eval_images).argmax(1) == reference).mean())
        report["int8"] = {"bytes": len(int8), "top1_agreement": agreement, "kept": agreement >= MIN_AGREEMENT}
        if agreement >= MIN_AGREEMENT:
            with tf.io.gfile.GFile(os.path.join(folder, "model_int8.tflite"), "wb") as f:
                f.write(int8)
        else:
            report["int8"]["why_not_kept"] = (f"top-1 agrees with the SavedModel on {agreement:.1%} of eval photos, "
                                              f"under {MIN_AGREEMENT:.0%}: keeping float16 only")
    except Exception as e:  # noqa: BLE001 - an unquantisable op must not lose the float16 model
        report["int8"] = {"kept": False, "why_not_kept": f"conversion failed: {type(e).__name__}: {e}"[:500]}
    with tf.io.gfile.GFile(os.path.join(folder, "edge_report.json"), "w") as f:
        json.dump(report, f, indent=1)
    return report
