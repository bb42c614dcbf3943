"""Temperature scaling: makes the model's confidence mean what it says.

A network trained to low loss is over-confident; dividing its logits by one
scalar T > 1, fitted on the eval split, fixes most of it without changing any
prediction's ranking (Guo et al., 2017). T is baked into the exported
signatures. ECE (expected calibration error, 15 equal-width bins) is reported
before and after.
"""
import numpy as np

from gemstone import contract


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = softmax(logits, temperature)
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels] + 1e-12)))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = contract.ECE_BINS) -> float:
    return _ece(probabilities.max(axis=1), probabilities.argmax(axis=1) == labels, bins)


def _ece(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def ece_by_chance(confidence: np.ndarray, bins: int = contract.ECE_BINS, draws: int = 1000, seed: int = 0) -> dict:
    """The ECE that a perfectly calibrated model with these top-1 confidences shows by chance alone, on this
    many photos (each drawn right with probability its confidence): {"mean", "p95"} over `draws` draws.

    ECE is never 0 on a finite test set: on gem88's 527 test photos a perfect model shows about 0.04, and
    0.05 in one draw of twenty. An ECE under "p95" cannot be told apart from luck.
    """
    confidence = np.asarray(confidence, dtype=float)
    if confidence.size == 0:
        return {"mean": float("nan"), "p95": float("nan")}
    rng = np.random.default_rng(seed)
    eces = [_ece(confidence, rng.random(confidence.size) < confidence, bins) for _ in range(draws)]
    return {"mean": float(np.mean(eces)), "p95": float(np.percentile(eces, 95))}


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] minimising eval NLL: a coarse log-spaced grid, then a finer one around the best."""
    if len(labels) == 0:
        return 1.0
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 60))
    best = min(grid, key=lambda t: nll(logits, labels, t))
    fine = np.linspace(best / 1.15, best * 1.15, 41)
    return float(min(fine, key=lambda t: nll(logits, labels, t)))


def coverage_accuracy(probabilities: np.ndarray, labels: np.ndarray, thresholds) -> list:
    """For each review threshold: share of photos answered automatically, and accuracy on those."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    rows = []
    for threshold in thresholds:
        answered = confidence >= threshold
        rows.append({"threshold": float(threshold), "coverage": float(answered.mean()),
                     "accuracy": float(correct[answered].mean()) if answered.any() else None})
    return rows


def report(logits: np.ndarray, labels: np.ndarray, review_threshold: float) -> dict:
    """Fits T on (logits, labels) and describes the effect."""
    temperature = fit_temperature(logits, labels)
    before, after = softmax(logits), softmax(logits, temperature)
    return {
        "temperature": temperature,
        "examples": int(len(labels)),
        "accuracy": float((after.argmax(axis=1) == labels).mean()) if len(labels) else None,
        "ece_before": expected_calibration_error(before, labels),
        "ece_after": expected_calibration_error(after, labels),
        "nll_before": nll(logits, labels, 1.0),
        "nll_after": nll(logits, labels, temperature),
        "mean_confidence": float(after.max(axis=1).mean()),
        "review_threshold": float(review_threshold),
        "review_rate": float((after.max(axis=1) < review_threshold).mean()),
        "coverage_accuracy": coverage_accuracy(after, labels, [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    }
