"""Model quality on the 88-class photos: the pipeline's model, its ablations, and the random-forest baseline.

All are judged on the same held-out test split: the pipeline's own
(stratified, near-duplicate groups kept together), read from the ingestion
report of the run. The baseline is Chow and Reyes-Aldasoro (Minerals 2022): a
random forest on an RGB 8x8x8 colour histogram plus a uniform-LBP histogram.
The ablations run the Trainer module again on the run's own inputs (same
examples, same Transform graph) with one setting changed:
  - no colour features: the network sees the picture alone;
  - no progressive unfreezing: a pretrained backbone fine-tuned all at once.
    It needs pretrained weights (BENCH_WEIGHTS=<no-top weights file> for
    BENCH_BACKBONE, default mobilenet_v2); without them the row says so.

Runs `make run DATA=<photos> PIPELINE_NAME=gem88` first (through the tfx CLI),
timing it, unless BENCH_SKIP_RUN=1 reuses the last run (its wall time then
comes from ML Metadata).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import common
from gemstone import metadata, paths, taxonomy

PIPELINE_NAME = "gem88"
# Review thresholds whose coverage/accuracy trade-off is reported (the pipeline's default is 0.6).
REVIEW_THRESHOLDS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
REPO = Path(__file__).resolve().parents[1]


def _tfx(env, *args):
    """Runs the tfx CLI from pipeline/; a failure shows the end of its output."""
    tfx = str(Path(sys.executable).parent / "tfx")
    result = subprocess.run([tfx, *args], cwd=REPO / "pipeline", env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"tfx {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")


def _run_pipeline() -> float:
    # The tfx CLI keeps its registry under LOCAL_HOME: the same one `make run` uses.
    local_home = os.environ.get("LOCAL_HOME", str(paths.gemstone_home() / "tfx-cli"))
    env = dict(os.environ, GEMSTONE_PIPELINE_NAME=PIPELINE_NAME, GEMSTONE_DATA=str(common.REAL_DATA),
               LOCAL_HOME=local_home)
    verb = "update" if (Path(local_home) / PIPELINE_NAME).exists() else "create"
    _tfx(env, "pipeline", verb, "--engine", "local", "--pipeline_path", "local_runner.py")
    started = time.time()
    _tfx(env, "run", "create", "--engine", "local", "--pipeline_name", PIPELINE_NAME)
    return time.time() - started


def _test_split():
    """(paths, labels) of the test split and (paths, labels) of train, from the newest ingestion report."""
    root = paths.pipeline_root(PIPELINE_NAME) / "ImageExampleGen" / "examples"
    newest = max(root.iterdir(), key=lambda p: int(p.name))
    report = json.loads((newest / "ingestion_report.json").read_text())
    split = {}
    for f in report["files"]:
        if f["status"] == "accepted":
            split.setdefault(f["split"], []).append((str(common.REAL_DATA / f["path"]), f["label"]))
    return split


def metrics(probabilities: np.ndarray, classes, labels, family_map, seconds: float) -> dict:
    from sklearn.metrics import f1_score

    from modules import calibration

    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[label] for label in labels])
    ranked = np.argsort(-probabilities, axis=1)
    predicted = [classes[i] for i in ranked[:, 0]]
    family = lambda name: taxonomy.family_of(name, family_map)  # noqa: E731
    return {
        "top1": round(float((ranked[:, 0] == y).mean()), 3),
        "top3": round(float((ranked[:, :3] == y[:, None]).any(axis=1).mean()), 3),
        "family_accuracy": round(float(np.mean([family(p) == family(t) for p, t in zip(predicted, labels)])), 3),
        "macro_f1": round(float(f1_score(y, ranked[:, 0], average="macro")), 3),
        "ece": round(calibration.expected_calibration_error(probabilities, y), 3),
        "train_seconds": round(seconds, 1),
    }


def _features(path: str) -> np.ndarray:
    from PIL import Image
    from skimage.feature import local_binary_pattern

    from gemstone import images

    loaded = images.load_image_file(path, max_side=256)
    import io

    with Image.open(io.BytesIO(loaded.data)) as picture:
        rgb = np.asarray(picture.convert("RGB"))
    histogram = np.histogramdd(rgb.reshape(-1, 3), bins=(8, 8, 8), range=((0, 256),) * 3)[0].ravel()
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    lbp = local_binary_pattern(grey, P=8, R=1, method="uniform")
    texture = np.histogram(lbp, bins=10, range=(0, 10))[0]
    return np.concatenate([histogram / histogram.sum(), texture / texture.sum()])


def random_forest(split, family_map) -> dict:
    from sklearn.ensemble import RandomForestClassifier

    train_x = np.stack([_features(p) for p, _ in split["train"]])
    train_y = [label for _, label in split["train"]]
    started = time.time()
    forest = RandomForestClassifier(n_estimators=500, n_jobs=-1, random_state=0).fit(train_x, train_y)
    seconds = time.time() - started
    test_x = np.stack([_features(p) for p, _ in split["test"]])
    probabilities = forest.predict_proba(test_x)
    return metrics(probabilities, list(forest.classes_), [label for _, label in split["test"]], family_map, seconds)


def _transform_features(saved_model_dir, examples_uri, split_name):
    """(colour features, labels) of a split's examples, through the model's own Transform graph."""
    import tensorflow as tf

    from modules import features

    transform = tf.saved_model.load(str(saved_model_dir)).signatures["transform_features"]
    files = sorted(tf.io.gfile.glob(f"{examples_uri}/Split-{split_name}/*"))
    label_spec = {features.LABEL_KEY: tf.io.FixedLenFeature([], tf.string)}
    colour, labels = [], []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(64):
        colour.append(transform(examples=batch)[features.COLOUR_XF].numpy())
        labels += [label.decode() for label in tf.io.parse_example(batch, label_spec)[features.LABEL_KEY].numpy()]
    return np.concatenate(colour), labels


def extra_trees_on_pipeline_features(family_map) -> dict:
    """Extra-trees on the pipeline's own colour and texture histograms (Transform's), without the network.

    Separates what the features give from what the network adds (the data's
    README reports about 0.66 top-1 for extra-trees on similar histograms).
    """
    from sklearn.ensemble import ExtraTreesClassifier

    version = paths.latest_version_dir(paths.serving_dir(PIPELINE_NAME))
    examples = metadata.latest_evaluation(metadata.open_store(PIPELINE_NAME)).examples
    train_x, train_y = _transform_features(version, examples, "train")
    test_x, test_y = _transform_features(version, examples, "test")
    started = time.time()
    trees = ExtraTreesClassifier(n_estimators=500, n_jobs=-1, random_state=0).fit(train_x, train_y)
    seconds = time.time() - started
    return metrics(trees.predict_proba(test_x), list(trees.classes_), test_y, family_map, seconds)


def _classify(saved_model_dir, split):
    """Variety probabilities and class names of the test split, through a SavedModel's serving_default."""
    import tensorflow as tf

    from gemstone import images

    serving = tf.saved_model.load(str(saved_model_dir)).signatures["serving_default"]
    probabilities, classes = [], None
    batch = [p for p, _ in split["test"]]
    for start in range(0, len(batch), 64):
        photos = [images.load_image_file(p).data for p in batch[start:start + 64]]
        out = serving(images=tf.constant(photos))
        probabilities.append(out["probabilities"].numpy())
        classes = [c.decode() for c in out["classes"].numpy()[0]]
    return np.concatenate(probabilities), classes


def _last_run_seconds() -> float:
    """Wall time of the pipeline's newest run, from ML Metadata."""
    run = metadata.runs(metadata.open_store(PIPELINE_NAME))[-1]
    return max(e.finished for e in run.executions) - run.started


def pipeline_model(split, family_map, seconds):
    """The pushed model's metrics row, and its review-threshold trade-off on the test split."""
    from modules import calibration

    version = paths.latest_version_dir(paths.serving_dir(PIPELINE_NAME))
    probabilities, classes = _classify(version, split)
    labels = [label for _, label in split["test"]]
    row = metrics(probabilities, classes, labels, family_map, seconds)
    row["model_version"] = version.name
    index = {c: i for i, c in enumerate(classes)}
    trade_off = calibration.coverage_accuracy(probabilities, np.array([index[label] for label in labels]),
                                              REVIEW_THRESHOLDS)
    return row, [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in trade_off]


def retrained(split, family_map, overrides: dict) -> dict:
    """The Trainer module run again on the last run's inputs with `overrides` in its custom_config."""
    from modules import trainer

    with tempfile.TemporaryDirectory(prefix="ablation-") as work:
        fn_args = metadata.trainer_fn_args(metadata.open_store(PIPELINE_NAME), work,
                                           {"edge_models": False, **overrides})
        started = time.time()
        trainer.run_fn(fn_args)
        seconds = time.time() - started
        probabilities, classes = _classify(fn_args.serving_model_dir, split)
    return metrics(probabilities, classes, [label for _, label in split["test"]], family_map, seconds)


def _unfreezing_rows(split, family_map) -> list:
    weights = os.environ.get("BENCH_WEIGHTS", "")
    backbone = os.environ.get("BENCH_BACKBONE", "mobilenet_v2")
    if not weights:
        reason = ("not measured: needs pretrained weights (BENCH_WEIGHTS=<no-top weights file>), "
                  "and no machine here can download ImageNet's")
        return [{"method": f"ablation: {backbone}, no progressive unfreezing", "note": reason}]
    return [
        {"method": f"{backbone} + {Path(weights).name}, progressive unfreezing (Trainer only)",
         **retrained(split, family_map, {"backbone": backbone, "weights": weights})},
        {"method": f"ablation: {backbone} + {Path(weights).name}, everything unfrozen at once (Trainer only)",
         **retrained(split, family_map, {"backbone": backbone, "weights": weights,
                                         "progressive_unfreezing": False})},
    ]


def run():
    if not common.REAL_DATA.is_dir():
        print(f"model_quality: skipped, real photos not found at {common.REAL_DATA}")
        return None
    seconds = _last_run_seconds() if os.environ.get("BENCH_SKIP_RUN") == "1" else _run_pipeline()
    split = _test_split()
    family_map = taxonomy.load_family_map()
    pipeline_row, trade_off = pipeline_model(split, family_map, seconds)
    common.record("review_threshold", trade_off, notes=(
        f"The pipeline model on the test split of gemstones-88 ({len(split['test'])} photos): share of photos "
        f"answered without review (calibrated confidence >= threshold) and accuracy on those."))
    rows = [
        {"method": "pipeline model (make run, whole pipeline wall time)", **pipeline_row},
        {"method": "ablation: no colour features (Trainer only)",
         **retrained(split, family_map, {"colour_features": False})},
        *_unfreezing_rows(split, family_map),
        {"method": "random forest, RGB 8x8x8 + uniform LBP (Chow & Reyes-Aldasoro 2022)",
         **random_forest(split, family_map)},
        {"method": "extra-trees on this pipeline's histograms (Transform's colour features, no network)",
         **extra_trees_on_pipeline_features(family_map)},
    ]
    return common.record("model_quality", rows, notes=(
        f"gemstones-88, test split of the pipeline ({len(split['test'])} photos; near-duplicate groups kept "
        f"together); {os.cpu_count()} cores. train_seconds: whole `make run` for the pipeline model (ingestion "
        f"to dashboard), training and export for the ablations, fit only for the forest."))


if __name__ == "__main__":
    run()
