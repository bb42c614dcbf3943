"""Open set on the 88-class photos: does the model say when a photo is not one it knows?

Three questions, side by side in one run (on a pipeline run's own inputs,
BENCH_PIPELINE_NAME, default gem88):

  1. The pushed model, as a client meets it (its serving signature): the share
     of the known test photos it flags (not a gemstone, unfamiliar variety), and
     of photos that are not gemstones at all (gemstone.non_gem_photos, shipped
     with scikit-image, scikit-learn and matplotlib) it flags, with the AUROC of
     its not-a-gemstone score between the two; its float16 TFLite model's
     agreement with it on `known`, photo by photo.
  2. Held-out varieties: HELD_OUT varieties (chosen by a fixed seed, spread over
     the mineral families) are left out of the head's training, on the Trainer's
     own cached features (trainer.transfer_features, computed once); for each
     seed, the AUROC of every candidate score between the held-out varieties'
     test photos and the known varieties' test photos, and the shares flagged
     at a threshold that flags 2.5 % of the held-out eval photos of known
     varieties (with the head from before the refit, as the Trainer sets it).
  3. The same candidates' AUROC on every photo of the held-out varieties
     (training, eval and test photos: none of them was learnt), a steadier figure.

    BENCH_PIPELINE_NAME=gem88 BENCH_SEEDS=0,1 python -m bench open_set
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from bench import common

PIPELINE_NAME = os.environ.get("BENCH_PIPELINE_NAME") or "gem88"
SEEDS = [int(s) for s in os.environ.get("BENCH_SEEDS", "0,1").split(",") if s]
HELD_OUT = 10
HELD_OUT_SEED = 0  # fixed: the same varieties for every seed and run
# The eval photos' share each candidate's threshold flags (the Trainer's two thresholds share FLAGGED_SHARE).
FLAG_SHARE = 0.025


def held_out_varieties(classes, family_map, count: int = HELD_OUT, seed: int = HELD_OUT_SEED) -> list:
    """`count` varieties, one family at a time in a shuffled order, each a random variety of it."""
    from gemstone import taxonomy

    rng = np.random.default_rng(seed)
    by_family = {}
    for name in sorted(classes):
        by_family.setdefault(taxonomy.family_of(name, family_map), []).append(name)
    families = [by_family[f] for f in rng.permutation(sorted(by_family))]
    chosen = []
    while len(chosen) < count and any(families):
        for varieties in families:
            left = [v for v in varieties if v not in chosen]
            if left and len(chosen) < count:
                chosen.append(left[int(rng.integers(len(left)))])
    return sorted(chosen)


def _lse(z):
    top = z.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]


def _softmax(z):
    return np.exp(z - _lse(z)[:, None])


def _whitened_distance(fit_x, fit_y, x, classes):
    """Squared Mahalanobis distance to the nearest class mean (shared Ledoit-Wolf covariance)."""
    from sklearn.covariance import LedoitWolf

    means = np.stack([fit_x[fit_y == c].mean(0) if (fit_y == c).any() else np.full(fit_x.shape[1], 1e6)
                      for c in range(classes)])
    whitening = np.linalg.cholesky(LedoitWolf().fit(fit_x - means[fit_y]).precision_)
    z, m = x @ whitening, means @ whitening
    return ((z ** 2).sum(1)[:, None] - 2 * z @ m.T + (m ** 2).sum(1)[None]).min(1)


def candidate_scores(outputs: dict, temperature: float, penultimate, fit) -> dict:
    """Every candidate's score (higher: less familiar) from the head's outputs (logits, the held-out classes
    masked), its standardised pooled features, and (features, labels, classes) to fit distances on."""
    product, image, colour = (outputs[k] for k in ("variety", "variety_image", "variety_colour"))
    p = _softmax(product / temperature)
    p_image, p_colour = _softmax(image), _softmax(colour)
    return {
        "maximum probability (MSP)": -p.max(1),
        "maximum logit": -product.max(1),
        "energy (log-sum-exp of the logits)": -_lse(product),
        "entropy of the calibrated answer (the pipeline's)": -(p * np.log(p + 1e-12)).sum(1),
        "experts' disagreement (Bhattacharyya)": -np.sqrt(p_image * p_colour).sum(1),
        "class-conditional Mahalanobis on the head's pooled features": _whitened_distance(
            fit[0], fit[1], penultimate, fit[2]),
    }


def _auroc(known, novel) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(novel))], np.r_[known, novel]))


def held_out_rows(features, test, transform_output, config, classes, held, seeds, work) -> list:
    """Per seed and candidate: AUROC and flag shares of the held-out varieties against the known ones."""
    import tf_keras as keras

    from modules import calibration, trainer, transfer

    held_ids = np.array([classes.index(v) for v in held])
    mask = np.isin(np.arange(len(classes)), held_ids)

    def known(cached):
        return cached.rows(~np.isin(cached.variety, held_ids))

    def novel(cached):
        return cached.rows(np.isin(cached.variety, held_ids))

    views = max(1, int(config["views"]))
    photos = len(features.train.variety) // views
    train_k, eval_k, eval_views_k = known(features.train), known(features.eval), known(features.eval_all_views)
    counts = np.bincount(train_k.variety[:len(train_k.variety) // views], minlength=len(classes)).astype(float)
    everything_novel = [novel(features.train.first_view(photos)), novel(features.eval), novel(test)]
    rows = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        seeded = {**config, "seed": seed, "fine_tune_epochs": 0}
        parts = trainer.build_transfer(transform_output, seeded)
        first = parts.head.get_weights()
        weights = trainer.transfer_class_weights(seeded, counts)
        transfer.fit(parts, train_k, eval_k, int(counts.sum()), seeded, weights, work)

        def outputs(cached):
            raw = parts.head.predict(cached.head_inputs(), batch_size=256, verbose=0)
            return {k: np.where(mask[None], -1e9, v) for k, v in raw.items() if k != "family"}

        def pooled(cached):
            return parts.head.get_layer("feature_norm")(cached.head_inputs()["image_features"], training=False).numpy()

        before_refit = outputs(eval_k)  # the thresholds' photos: held out, as the Trainer sets them
        temperature = calibration.fit_temperature(before_refit["variety"], eval_k.variety)
        fit_rows = train_k.first_view(len(train_k.variety) // views)
        fit = (pooled(fit_rows), fit_rows.variety, len(classes))
        eval_scores = candidate_scores(before_refit, temperature, pooled(eval_k), fit)
        transfer._refit(parts, [train_k, eval_views_k], first, seeded, weights)
        test_known, test_novel = known(test), novel(test)
        scores = {name: candidate_scores(outputs(c), temperature, pooled(c), fit)
                  for name, c in (("known", test_known), ("novel", test_novel))}
        all_novel = [candidate_scores(outputs(c), temperature, pooled(c), fit) for c in everything_novel]
        top1 = float((outputs(test_known)["variety"].argmax(1) == test_known.variety).mean())
        for candidate, eval_score in eval_scores.items():
            threshold = np.quantile(eval_score, 1.0 - FLAG_SHARE)
            known_score, novel_score = scores["known"][candidate], scores["novel"][candidate]
            rows.append({
                "candidate": candidate, "seed": seed,
                "auroc_held_out_test": round(_auroc(known_score, novel_score), 3),
                "auroc_held_out_all_photos": round(_auroc(known_score, np.concatenate(
                    [s[candidate] for s in all_novel])), 3),
                "known_test_flagged": round(float((known_score > threshold).mean()), 3),
                "held_out_test_flagged": round(float((novel_score > threshold).mean()), 3),
                "known_top1": round(top1, 3)})
    return rows


def pushed_model_row(test_files) -> dict:
    """The pushed model as a client meets it: flags on known test photos and on non-gem photos; TFLite `known`."""
    import json
    from pathlib import Path

    import tensorflow as tf

    from gemstone import contract, non_gem_photos, paths
    from bench import model_quality
    from modules import edge, transform

    version = paths.latest_version_dir(paths.serving_dir(PIPELINE_NAME))
    serving = tf.saved_model.load(str(version)).signatures[contract.SERVING_SIGNATURE]

    def answer(photos):
        records = []
        for start in range(0, len(photos), 64):
            out = serving(**{contract.SERVING_INPUT: tf.constant(photos[start:start + 64])})
            records += contract.prediction_records(out)
        return records

    test_photos = [model_quality._normalised(Path(p).read_bytes()) for p in test_files]
    test = answer(test_photos)
    if not contract.has_novelty(test[0]):
        return {"model_version": version.name, "note": "exported before the open-set outputs"}
    non_gem = answer([p.data for p in non_gem_photos.photos()])
    not_gem_score = lambda records: np.array([r["novelty"][0] for r in records])  # noqa: E731
    row = {"model_version": version.name, "known_test_photos": len(test),
           "known_test_flagged": round(float(np.mean([not r["known"] for r in test])), 3),
           **{f"known_test_{reason}": round(float(np.mean([r["review_reason"] == reason for r in test])), 3)
              for reason in contract.NOVELTY_QUESTIONS},
           "non_gem_photos": len(non_gem),
           "non_gem_flagged": round(float(np.mean([not r["known"] for r in non_gem])), 3),
           "non_gem_auroc": round(_auroc(not_gem_score(test), not_gem_score(non_gem)), 4)}
    tflite = version / edge.FOLDER / "model_float16.tflite"
    if tflite.exists():
        size = json.loads((version / edge.FOLDER / contract.EDGE_REPORT_FILE).read_text())["image_size"]
        images = transform.model_inputs(tf.constant(test_photos), size)[contract.IMAGE_XF].numpy()
        known = edge._interpret(tflite.read_bytes(), images)["known"].astype(bool)
        row["tflite_float16_known_agreement"] = round(float((known == np.array([r["known"] for r in test])).mean()), 4)
    return row


def run():
    from gemstone import contract, taxonomy
    from gemstone.apps import metadata
    from modules import inputs, trainer, transfer

    try:
        store = metadata.open_store(PIPELINE_NAME)
    except FileNotFoundError as error:
        print(f"open_set: skipped, {error} (`make run` first, or BENCH_PIPELINE_NAME=<a run>)")
        return None
    test_files = metadata.trainer_split_files(store, "test")  # the examples' file patterns
    with tempfile.TemporaryDirectory(prefix="open-set-") as work:
        fn_args = metadata.trainer_fn_args(store, work, {"fine_tune_epochs": 0})
        config = {**trainer.effective_config(fn_args), "refit_with_eval": True, "fine_tune_epochs": 0}
        import tensorflow_transform as tft
        import tf_keras as keras

        keras.utils.set_random_seed(int(config["seed"]))
        transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
        classes = [c.decode() if isinstance(c, bytes) else c
                   for c in transform_output.vocabulary_by_name(contract.LABEL_VOCAB)]
        held = held_out_varieties(classes, taxonomy.load_family_map())
        features = trainer.transfer_features(fn_args, transform_output, config)
        test = transfer.cache(features.parts, inputs.input_dataset(test_files, transform_output,
                                                                   int(config["batch_size"]), False, 0),
                              1, None, 0, "test", keep_cut_maps=False)
        rows = held_out_rows(features, test, transform_output, config, classes, held, SEEDS, work)
    means = []
    for candidate in dict.fromkeys(r["candidate"] for r in rows):
        mine = [r for r in rows if r["candidate"] == candidate]
        means.append({"candidate": candidate, "seed": "mean", **{
            k: round(float(np.mean([r[k] for r in mine])), 3) for k in mine[0] if k not in ("candidate", "seed")}})
    common.record("open_set_held_out", rows + means, notes=(
        f"{PIPELINE_NAME}'s Trainer inputs; the head trained without {', '.join(held)} (chosen by seed "
        f"{HELD_OUT_SEED}, spread over the families), on the cached features of the other varieties; test "
        f"split. Flag shares at a threshold that flags {FLAG_SHARE:.1%} of the known eval photos."))
    from bench import model_quality

    test_photos = [path for path, _ in model_quality.photo_splits()["test"]]
    return common.record("open_set_pushed_model", [pushed_model_row(test_photos)], notes=(
        f"The pushed model of {PIPELINE_NAME}: its serving signature on the test photos (all of known varieties) "
        f"and on photos that are not gemstones (gemstone.non_gem_photos)."))


if __name__ == "__main__":
    run()
