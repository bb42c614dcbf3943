"""The pretrained model's head, trained several ways on the Trainer's own cached features, over seeds.

A change to the head (stage 1, the refit, their schedules) moves test top-1
by about 0.02, as much as the seed does; a whole pipeline run per seed and per
variant takes a quarter of an hour. This benchmark runs the Trainer's own
first step once (`trainer.transfer_features`: the training and eval photos
with their augmented views through the frozen network; the test photos as
they are) on a run's inputs, then `transfer.fit` for each variant and seed on
those features, a few minutes each. Only the head's seed varies (its first
weights, dropout, shuffling); the views are those of the run's seed.
Fine-tuning (stage 2) is left out: it was kept in 2 of 12 runs, and it needs
the backbone again.

Each variant is a set of overrides of the Trainer's custom_config. Test split:
top-1, top-3, ECE after the Trainer's calibration (the temperature from the
held-out eval logits), and the ECE a perfectly calibrated model would stay
under 19 times in 20 (modules/calibration.py's ece_by_chance).

    BENCH_PIPELINE_NAME=gem88-r2 BENCH_SEEDS=0,1 BENCH_VARIANTS=default,smoothing0.1 python -m bench head_variants
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from bench import common

PIPELINE_NAME = os.environ.get("BENCH_PIPELINE_NAME") or "gem88"
SEEDS = [int(s) for s in os.environ.get("BENCH_SEEDS", "0,1").split(",") if s]
# key -> (what it is, overrides of the run's custom_config).
VARIANTS = {
    "stage1": ("stage 1 only (eval held out)", {"refit_with_eval": False}),
    "default": ("stage 1, then the refit on train + eval (default)", {"refit_with_eval": True}),
    "unweighted": ("the default, every photo weighing the same", {"imbalance": "none"}),
    "dropout0.3": ("the default, image expert's dropout 0.3 (before 2026-11-27)", {"image_expert_dropout": 0.3}),
    "dropout0.7": ("the default, image expert's dropout 0.7", {"image_expert_dropout": 0.7}),
    "smoothing0.1": ("the default, labels smoothed by 0.1", {"label_smoothing": 0.1}),
    "members3": ("the default with three pairs of experts, averaged", {"ensemble_members": 3}),
}
# The figures averaged over seeds.
MEAN_OF = ("top1", "top3", "macro_f1", "ece", "fit_seconds")
# Which variants to run (BENCH_VARIANTS=default,smoothing0.1); all by default.
CHOSEN = [v for v in os.environ.get("BENCH_VARIANTS", ",".join(VARIANTS)).split(",") if v]


def _features(fn_args, config, test_files):
    """(tf_transform_output, the Trainer's TransferFeatures, the test photos' features)."""
    import tensorflow_transform as tft
    import tf_keras as keras

    from modules import inputs, trainer, transfer

    keras.utils.set_random_seed(int(config["seed"]))
    transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    # Every eval view, whichever way the run went: the variants may refit.
    features = trainer.transfer_features(fn_args, transform_output, {**config, "refit_with_eval": True})
    test_photos = inputs.input_dataset(test_files, transform_output, int(config["batch_size"]), False,
                                        int(config["seed"]))
    test = transfer.cache(features.parts, test_photos, 1, None, 0, "test", keep_cut_maps=False)
    return transform_output, features, test


def _scores(logits, labels, temperature) -> dict:
    from bench import model_quality
    from modules import calibration

    return model_quality.label_scores(calibration.softmax(logits, temperature), labels)


def head_variant(transform_output, features, test, config: dict, seed: int, work: str) -> dict:
    """One variant at one seed: the Trainer's transfer.fit on the cached features; its test scores."""
    import tf_keras as keras

    from gemstone import contract
    from modules import calibration, trainer, transfer

    keras.utils.set_random_seed(seed)
    parts = trainer.build_transfer(transform_output, config)  # the head's first weights: this seed's
    started = time.time()
    fitted = transfer.fit(parts, features.train, features.eval, features.photos, config,
                          trainer.transfer_class_weights(config, features.class_counts), work,
                          refit_on=features.eval_all_views if config["refit_with_eval"] else None)
    seconds = time.time() - started
    temperature = calibration.fit_temperature(fitted.eval_logits, features.eval.variety)
    logits = parts.head.predict(test.head_inputs(), batch_size=256, verbose=0)[contract.VARIETY_HEAD]
    return {**_scores(logits, test.variety, temperature), "temperature": round(temperature, 2),
            "fit_seconds": round(seconds, 1)}


def run():
    from gemstone.apps import metadata
    from modules import trainer

    unknown = sorted(set(CHOSEN) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"head_variants: unknown BENCH_VARIANTS {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    try:
        store = metadata.open_store(PIPELINE_NAME)
    except FileNotFoundError as error:
        print(f"head_variants: skipped, {error} (`make run` first, or BENCH_PIPELINE_NAME=<a run>)")
        return None
    with tempfile.TemporaryDirectory(prefix="head-variants-") as work:
        fn_args = metadata.trainer_fn_args(store, work, {"fine_tune_epochs": 0})
        config = trainer.effective_config(fn_args)
        transform_output, features, test = _features(fn_args, config, metadata.trainer_split_files(store, "test"))
        rows = []
        for key in CHOSEN:
            name, overrides = VARIANTS[key]
            scores = [head_variant(transform_output, features, test, {**config, **overrides}, seed, work)
                      for seed in SEEDS]
            rows += [{"variant": name, "seed": seed, **s} for seed, s in zip(SEEDS, scores)]
            rows.append({"variant": name, "seed": "mean",
                         **{key: round(float(np.mean([s[key] for s in scores])), 3) for key in MEAN_OF}})
    return common.record("head_variants", rows, notes=(
        f"{PIPELINE_NAME}'s Trainer inputs; frozen features cached once ({max(1, int(config['views']))} views of the "
        f"training and eval photos, the run's seed); the head trained per variant and seed (no fine-tuning); "
        f"test split ({len(test.variety)} photos). {os.cpu_count()} cores."))


if __name__ == "__main__":
    run()
