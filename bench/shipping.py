"""Shipping benchmarks on the pushed demo model, side by side in one run.

1. Batch inference: `gemstone batch-infer` (Beam RunInference, batched; DirectRunner
   in memory and with worker processes) against a naive loop calling Keras'
   `model.predict` one photo at a time, and a plain loop calling the serving
   signature one photo at a time, on the same 1,000 photos.
2. REST: p50/p99 latency and throughput of `gemstone serve` under a bounded
   load (4 concurrent clients) on loopback.
3. Edge: TFLite float16 / int8 against the SavedModel: size, latency, top-1 agreement.

Needs a pushed model: run `make demo` first (bench/__main__ runs the demo benchmark before this one).
"""
from __future__ import annotations

import base64
import json
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import common
from gemstone import contract, paths
from gemstone.apps import batch_infer, serve

PIPELINE_NAME = "gemstone-demo"
# Peak FP32 throughput of one core of this CPU class (AVX2/AVX-512 FMA at ~2.5 GHz), for a share-of-peak figure.
PEAK_GFLOPS_PER_CORE = 80.0


def _photos(n: int):
    photos = sorted(paths.demo_data_dir().rglob("*.jpg"))
    return (photos * (n // max(1, len(photos)) + 1))[:n]


def _flops_per_image(version: Path) -> float:
    from modules import export

    return flops_per_image(export.load_keras_model(str(version)))


def flops_per_image(model) -> float:
    """Forward-pass FLOPs of the network on one photo (decoding and histograms not counted).

    TF's profiler (its public tf.compat.v1 API) needs fully known shapes and a graph without
    function calls, whose insides it would not count: the Keras model, rebuilt from its config,
    is traced for a batch of one, its layers inline in the graph. (The same count as freezing the
    graph first with TensorFlow's private convert_to_constants, on the demo and 88-class models.)
    """
    import tensorflow as tf

    specs = {i.name.split(":")[0]: tf.TensorSpec([1] + list(i.shape[1:]), i.dtype) for i in model.inputs}
    graph = tf.function(lambda inputs: model(inputs, training=False)).get_concrete_function(specs).graph
    calls = sorted({op.type for op in graph.get_operations() if op.type.endswith("PartitionedCall")})
    if calls:
        raise ValueError(f"the traced model calls functions ({', '.join(calls)}): the profiler would not count them")
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return float(tf.compat.v1.profiler.profile(graph, options=options).total_float_ops)


def _keras_predict_loop(version: Path, photos) -> float:
    """What a first script does: the Keras model, `model.predict` on one photo at a time.

    The photo goes through Transform's own preprocessing first, so the inputs are exactly
    those of serving; the seconds count the whole loop.
    """
    import tensorflow as tf

    from modules import export, transform

    model = export.load_keras_model(str(version))
    image_size = model.input[contract.IMAGE_XF].shape[1]

    def one(photo):
        return model.predict(transform.model_inputs(tf.constant([photo.read_bytes()]), image_size), verbose=0)

    one(photos[0])  # warm up
    started = time.perf_counter()
    for photo in photos:
        one(photo)
    return time.perf_counter() - started


def batch_vs_naive(version: Path, n: int = 1000) -> list:
    import tensorflow as tf

    photos = _photos(n)
    serving = tf.saved_model.load(str(version)).signatures["serving_default"]
    serving(images=tf.constant([photos[0].read_bytes()]))  # warm up
    started = time.perf_counter()
    for photo in photos:  # one photo, one call to the serving signature: no Keras overhead
        serving(images=tf.constant([photo.read_bytes()]))
    timings = {"plain loop: serving_default, 1 photo per call": time.perf_counter() - started}
    timings = {"naive loop: Keras model.predict, 1 photo per call": _keras_predict_loop(version, photos), **timings}

    folder = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    for i, photo in enumerate(photos):
        (folder / f"{i:05d}.jpg").write_bytes(photo.read_bytes())
    for mode in ("in_memory", "multi_processing"):
        started = time.perf_counter()
        result = batch_infer.run(str(version), str(folder), str(folder / f"out-{mode}"), batch_size=64,
                                 beam_args=["--runner=DirectRunner", f"--direct_running_mode={mode}"])
        timings[f"gemstone batch-infer, DirectRunner {mode}"] = time.perf_counter() - started
        assert result["predictions"] == n, result
    flops = _flops_per_image(version)
    cores = os.cpu_count() or 1
    naive = timings["naive loop: Keras model.predict, 1 photo per call"]
    return [{"method": name, "images": n, "seconds": round(seconds, 2), "images_per_s": round(n / seconds, 1),
             "speed_vs_naive": round(naive / seconds, 2), "mflops_per_image": round(flops / 1e6, 1),
             "share_of_fp32_peak": f"{(n / seconds) * flops / (PEAK_GFLOPS_PER_CORE * 1e9 * cores):.2%}"}
            for name, seconds in timings.items()]


def rest_latency(base: Path, requests: int = 200, clients: int = 4) -> list:
    server = serve.make_server(str(base), port=0, log_dir=tempfile.mkdtemp())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/models/{base.name}:predict"
    bodies = [json.dumps({"instances": [{"b64": base64.b64encode(p.read_bytes()).decode()}]}).encode()
              for p in _photos(requests)]

    def call(body):
        started = time.perf_counter()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        return time.perf_counter() - started

    call(bodies[0])  # loads the model
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(pool.map(call, bodies))
    wall = time.perf_counter() - started
    server.shutdown()
    return [{"requests": requests, "concurrent_clients": clients,
             "p50_ms": round(1000 * statistics.median(latencies), 1),
             "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
             "requests_per_s": round(requests / wall, 1)}]


def edge_models(version: Path, n: int = 100) -> list:
    import numpy as np
    import tensorflow as tf

    report = json.loads((version / contract.EDGE_DIR / contract.EDGE_REPORT_FILE).read_text())
    loaded = tf.saved_model.load(str(version))
    photos = _photos(n)
    size = int(report["image_size"])
    from modules import transform

    # The picture exactly as Transform makes it for training and serving (antialiased resize).
    images = np.stack([transform.decode_and_resize(tf.constant([p.read_bytes()]), size).numpy()[0]
                       for p in photos]).astype(np.float32)
    saved_model_bytes = sum(f.stat().st_size for f in (version / "variables").iterdir()) + \
        (version / "saved_model.pb").stat().st_size
    started = time.perf_counter()
    serving = loaded.signatures[contract.SERVING_SIGNATURE]
    reference = np.array([np.argmax(contract.prediction_records(serving(**{contract.SERVING_INPUT: tf.constant([p.read_bytes()])}))[0]
                                    ["probabilities"]) for p in photos])
    rows = [{"model": "SavedModel (with Transform graph)", "bytes": saved_model_bytes,
             "ms_per_image": round(1000 * (time.perf_counter() - started) / n, 2), "top1_agreement": 1.0}]
    for name in ("float16", "int8"):
        path = version / contract.EDGE_DIR / f"model_{name}.tflite"
        if not path.exists():
            rows.append({"model": f"TFLite {name}", "bytes": report.get(name, {}).get("bytes", ""),
                         "ms_per_image": "", "top1_agreement": report.get(name, {}).get("top1_agreement", ""),
                         "note": "not kept: " + report.get(name, {}).get("why_not_kept", "")[:80]})
            continue
        interpreter = tf.lite.Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        started = time.perf_counter()
        predicted = []
        for image in images:
            interpreter.set_tensor(source["index"], image[np.newaxis])
            interpreter.invoke()
            predicted.append(interpreter.get_tensor(target["index"])[0].argmax())
        kind = report[name].get("quantisation", "")
        rows.append({"model": f"TFLite {name}" + (f" ({kind.replace('_', ' ')})" if kind else ""),
                     "bytes": path.stat().st_size,
                     "ms_per_image": round(1000 * (time.perf_counter() - started) / n, 2),
                     "top1_agreement": round(float((np.array(predicted) == reference).mean()), 3)})
    return rows


def run():
    base = paths.serving_dir(PIPELINE_NAME)
    version = paths.latest_version_dir(base)
    if version is None:
        print("shipping: skipped, no pushed demo model (run `make demo` first)")
        return None
    cores = os.cpu_count()
    common.record("batch_inference", batch_vs_naive(version),
                  notes=f"{cores} cores; model {version}. Same photos, same SavedModel.")
    common.record("rest_serving", rest_latency(base), notes=f"{cores} cores; gemstone serve on loopback.")
    return common.record("edge_models", edge_models(version), notes="100 demo photos, one at a time.")


if __name__ == "__main__":
    run()
