"""Does a photo look like anything the model learned? Two scores, fitted by the Trainer, computed in the graph.

Two questions (gemstone.contract.NOVELTY_QUESTIONS), one score each:
  - not_a_gemstone: how far the photo's ImageNet features lie from every variety's training photos: the
    squared Mahalanobis distance to the nearest class mean of the average-pooled features of one tap of
    the pretrained network, with one covariance shared by the classes and shrunk by Ledoit-Wolf (Lee et
    al., NeurIPS 2018). Generic features tell a cat, a landscape or a brick wall from a gemstone almost
    perfectly, with no training (bench/HISTORY.md: AUROC about 0.999);
  - unfamiliar_variety: the trained head's own evidence, the entropy of its calibrated answer (chosen side
    by side with the maximum probability, the maximum logit, the energy, the experts' disagreement and
    distances on the head's features in bench/open_set.py): generic features cannot tell an unknown variety
    from its known look-alikes.
Each score is scaled so that 0 is the median eval photo and 1 its threshold; a photo is `known` when both
are below 1. The thresholds are set on the eval photos (held out from what the scores were fitted on) so
that together they flag about FLAGGED_SHARE of known photos.

`Novelty` holds the fitted numbers; `scores` is the one definition of the maths, run eagerly on numpy
arrays when fitting and traced into the exported signatures and the TFLite models.
"""
import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import dataclasses  # noqa: E402
from typing import Dict, Tuple  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gemstone import contract  # noqa: E402

# Which pooled features answer "is this a gemstone at all", by backbone: (tap, pooling).
FEATURE_TAP = {"efficientnet_lite2": ("block19", "avg"), "inception_v3": ("mixed5", "avg")}
# Share of known photos the two thresholds together may flag on the eval photos.
FLAGGED_SHARE = 0.05


@dataclasses.dataclass
class Novelty:
    """What the exported graph needs to score a photo: numbers only (the maths is `scores`)."""
    columns: Tuple[int, int]  # the slice of the model's pooled image features the distance reads
    whitening: np.ndarray  # [D, D] the Cholesky factor L of the shared precision (L L^T = precision)
    means: np.ndarray  # [C, D] class means, whitened (x @ L)
    temperature: float  # the calibration's, for the head's probabilities
    centre: np.ndarray  # [2] median eval score per question
    threshold: np.ndarray  # [2] raw score at which a question is answered yes

    def summary(self) -> Dict[str, object]:
        """What novelty.json records of it (the arrays stay in the graph)."""
        return {"questions": list(contract.NOVELTY_QUESTIONS), "not_a_gemstone": {
            "score": "squared Mahalanobis distance of pooled ImageNet features to the nearest variety's mean",
            "feature_columns": list(self.columns), "dimensions": int(self.whitening.shape[0])},
            "unfamiliar_variety": {"score": UNFAMILIAR_SCORE},
            "centre": [float(c) for c in self.centre], "threshold": [float(t) for t in self.threshold]}


UNFAMILIAR_SCORE = "entropy of the calibrated variety probabilities"


def _mahalanobis(features, novelty: Novelty):
    start, stop = novelty.columns
    z = tf.matmul(tf.cast(features[:, start:stop], tf.float32), tf.constant(novelty.whitening, tf.float32))
    means = tf.constant(novelty.means, tf.float32)
    squared = (tf.reduce_sum(tf.square(z), axis=1, keepdims=True) - 2.0 * tf.matmul(z, means, transpose_b=True)
               + tf.reduce_sum(tf.square(means), axis=1)[tf.newaxis, :])
    return tf.reduce_min(squared, axis=1)


def _unfamiliar(logits, novelty: Novelty):
    """The entropy of the calibrated answer: a photo of a variety the head never learned spreads its
    probability over the look-alikes it did learn (bench/open_set.py measures it against the other candidates)."""
    log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32) / novelty.temperature)
    return -tf.reduce_sum(tf.exp(log_p) * log_p, axis=1)


def raw_scores(features, logits, novelty: Novelty):
    """[B, 2] raw scores (higher: less like what the model learned) of pooled features and variety logits."""
    return tf.stack([_mahalanobis(features, novelty), _unfamiliar(logits, novelty)], axis=1)


def scores(features, logits, novelty: Novelty):
    """[B, 2] scaled scores: 0 a typical eval photo, 1 the threshold."""
    centre = tf.constant(novelty.centre, tf.float32)
    return (raw_scores(features, logits, novelty) - centre) / tf.constant(novelty.threshold - novelty.centre,
                                                                          tf.float32)


def known(scaled):
    """[B] bool: no question answered yes."""
    return tf.reduce_all(scaled < 1.0, axis=1)


def review_reason(scaled, confident):
    """[B] string: the first of REVIEW_REASONS that holds, "" for none (the prediction record makes it null)."""
    reasons = tf.constant(list(contract.REVIEW_REASONS) + [""])
    holds = tf.concat([scaled >= 1.0, ~confident[:, tf.newaxis], tf.ones_like(confident)[:, tf.newaxis]], axis=1)
    return tf.gather(reasons, tf.argmax(tf.cast(holds, tf.int32), axis=1, output_type=tf.int32))


def _gaussian(features: np.ndarray, labels: np.ndarray, classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """Class means ([C, D]; a class without photos gets none: its mean is far from everything) and the
    Cholesky factor of the shared, Ledoit-Wolf-shrunk precision."""
    from sklearn.covariance import LedoitWolf

    present = np.unique(labels)
    means = np.zeros((classes, features.shape[1]))
    for c in present:
        means[c] = features[labels == c].mean(axis=0)
    precision = LedoitWolf().fit(features - means[labels]).precision_
    absent = np.setdiff1d(np.arange(classes), present)
    whitening = np.linalg.cholesky(precision)
    whitened = means @ whitening
    if len(absent):
        whitened[absent] = 1e6
    return whitened.astype(np.float32), whitening.astype(np.float32)


def thresholds(eval_raw: np.ndarray, flagged_share: float = FLAGGED_SHARE) -> np.ndarray:
    """Per question, the raw score above which the same share of eval photos is flagged, the largest share
    for which together they flag at most `flagged_share` of them (as the scores overlap, each flags between
    half of it and all of it). Too few eval photos to flag any share: the highest scores, which flag none."""
    for each in np.linspace(flagged_share, 0.0, 101)[:-1]:
        candidate = np.quantile(eval_raw, 1.0 - each, axis=0)
        if (eval_raw > candidate).any(axis=1).mean() <= flagged_share:
            return candidate
    return eval_raw.max(axis=0)


def fit(train_features: np.ndarray, train_labels: np.ndarray, eval_features: np.ndarray, eval_logits: np.ndarray,
        columns: Tuple[int, int], classes: int, temperature: float,
        flagged_share: float = FLAGGED_SHARE) -> Tuple[Novelty, Dict[str, object]]:
    """The scores fitted on the training photos' pooled features, thresholds set on the eval photos'; and a
    report of the eval photos' flag rates (novelty.json)."""
    start, stop = columns
    means, whitening = _gaussian(train_features[:, start:stop].astype(np.float64), train_labels, classes)
    unscaled = Novelty(columns, whitening, means, float(temperature), np.zeros(2), np.ones(2))
    eval_raw = raw_scores(eval_features, eval_logits, unscaled).numpy()
    threshold = thresholds(eval_raw, flagged_share)
    centre = np.median(eval_raw, axis=0)
    novelty = dataclasses.replace(unscaled, centre=centre, threshold=np.maximum(threshold, centre + 1e-6))
    flagged = eval_raw > novelty.threshold
    report = {**novelty.summary(), "fitted_on_photos": int(len(train_labels)), "eval_photos": int(len(eval_raw)),
              "eval_flagged": {question: float(flagged[:, i].mean())
                               for i, question in enumerate(contract.NOVELTY_QUESTIONS)},
              "eval_flagged_either": float(flagged.any(axis=1).mean()), "target_flagged_share": flagged_share}
    return novelty, report
