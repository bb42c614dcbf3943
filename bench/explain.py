"""Saliency maps on the 88-class model: the sanity checks side by side, and what an explanation costs.

For each method of modules/saliency.py, on BENCH_PHOTOS test photos of the pushed model of
BENCH_PIPELINE_NAME (default gem88), both checks of modules/saliency_checks.py (model randomisation:
median Spearman of the maps against those of the network with its head and top blocks re-initialised,
under 0.5; deletion: blanking the 20 % most salient pixels against 20 % random ones, at least 1.5 times
the drop of the named variety's probability) and the seconds per photo of the map alone.

    BENCH_PIPELINE_NAME=gem88 BENCH_PHOTOS=100 python -m bench explain
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from bench import common

PIPELINE_NAME = os.environ.get("BENCH_PIPELINE_NAME") or "gem88"
PHOTOS = int(os.environ.get("BENCH_PHOTOS", "100"))
CHOSEN = [m for m in os.environ.get("BENCH_METHODS", "").split(",") if m]  # default: every method


def test_images(model_dir, size: int, count: int) -> np.ndarray:
    """`count` test photos (every n-th of the split, so all varieties show) as the model reads them."""
    from pathlib import Path

    import tensorflow as tf

    from bench import model_quality
    from gemstone import contract
    from modules import transform

    paths = [p for p, _ in model_quality.photo_splits()["test"]]
    chosen = paths[::max(1, len(paths) // count)][:count]
    photos = [model_quality._normalised(Path(p).read_bytes()) for p in chosen]
    return np.concatenate([transform.model_inputs(tf.constant(photos[s:s + 32]), size)[contract.IMAGE_XF].numpy()
                           for s in range(0, len(photos), 32)])


def run():
    from gemstone import contract, paths
    from modules import export, saliency, saliency_checks

    version = paths.latest_version_dir(paths.serving_dir(PIPELINE_NAME))
    if version is None:
        print(f"explain: skipped, no pushed model for {PIPELINE_NAME} (`make run` first)")
        return None
    model = export.load_keras_model(str(version), compile=False)
    temperature = json.loads((version / contract.MODEL_ASSETS_DIR / contract.CALIBRATION_FILE).read_text())[
        "temperature"]
    backbone = json.loads((version / contract.MODEL_ASSETS_DIR / contract.BACKBONE_FILE).read_text())["backbone"]
    size = model.input[contract.IMAGE_XF].shape[1]
    images = test_images(version, size, PHOTOS)
    rows = []
    methods = CHOSEN or (saliency.METHODS if saliency.parts_of(model) else saliency.ANY_MODEL_METHODS)
    for method in methods:
        started = time.time()
        saliency_checks.maps_and_classes(method, model, images[:16], backbone, temperature=temperature)
        seconds = (time.time() - started) / 16
        rows.append({**saliency_checks.check(method, model, images, temperature, backbone),
                     "seconds_per_photo": round(seconds, 3)})
    return common.record("explain", rows, notes=(
        f"The pushed model of {PIPELINE_NAME} (version {version.name}, {backbone} at {size} px), {len(images)} test "
        f"photos; randomisation passes under a median Spearman of {saliency_checks.MAX_SPEARMAN}, deletion at a "
        f"ratio of {saliency_checks.MIN_DELETION_RATIO} or more. seconds_per_photo: the map alone, batches of 16, "
        f"{os.cpu_count()} cores."))


if __name__ == "__main__":
    run()
