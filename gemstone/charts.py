"""The dashboard's charts (matplotlib), each returned as a base64 PNG to embed in a self-contained page."""
from __future__ import annotations

import base64
import io
from typing import Any, Dict, List, Tuple

import numpy as np

from gemstone.text import plural


def pyplot():
    """matplotlib's pyplot, drawing off screen (no display on servers and CI)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(figure) -> str:
    """The figure as a base64 PNG (closed after), to embed in a page."""
    plt = pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def confusion_cells(matrix: List[List[float]]) -> List[Tuple[int, int, str, float]]:
    """(true class id, predicted class id, text, share) of each non-empty cell: its photos and their share of the
    true class's photos, e.g. "3\n60%"."""
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return [(int(i), int(j), f"{counts[i, j]:g}\n{shares[i, j]:.0%}", float(shares[i, j]))
            for i, j in zip(*np.nonzero(counts))]


def confusion_chart(matrix: List[List[float]], classes: List[str]) -> str:
    """The matrix as a heatmap of shares of each true class, each non-empty cell giving its photos and share."""
    plt = pyplot()

    counts = np.asarray(matrix)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    # Room for two short lines in a cell: 0.3 inch a class (88 classes: a 28-inch figure, to zoom into).
    side = max(5.0, 0.3 * len(classes) + 2)
    figure, axes = plt.subplots(figsize=(side, side))
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = max(4, 10 - len(classes) // 12)
    axes.set_xticks(range(len(classes)), classes, rotation=90, fontsize=ticks)
    axes.set_yticks(range(len(classes)), classes, fontsize=ticks)
    for true_id, predicted_id, text, share in confusion_cells(matrix):
        axes.text(predicted_id, true_id, text, ha="center", va="center", fontsize=max(4, min(9, 80 // len(classes))),
                  color="white" if share > 0.5 else "black")
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix: photos, and their share of each true class")
    figure.colorbar(image, ax=axes, fraction=0.046)
    return png(figure)


def reliability_chart(calibration: Dict[str, Any]) -> str:
    plt = pyplot()

    figure, axes = plt.subplots(figsize=(5, 4.5))
    buckets = calibration["buckets"]
    axes.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    axes.plot([b["confidence"] for b in buckets], [b["accuracy"] for b in buckets], "o-", label="model")
    for b in buckets:
        axes.annotate(str(int(b["photos"])), (b["confidence"], b["accuracy"]), fontsize=7,
                      textcoords="offset points", xytext=(4, -10))
    axes.set_xlabel("top-1 confidence")
    axes.set_ylabel("accuracy")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_title(f"Reliability (ECE {calibration['ece']:.3f}); numbers = photos")
    axes.legend(loc="upper left")
    return png(figure)


def robustness_chart(robustness: Dict[str, Any]) -> str:
    plt = pyplot()

    rows = robustness["corruptions"]
    figure, axes = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    axes.barh([r["name"] for r in rows], [r["accuracy"] for r in rows], color="#4a7ab5")
    axes.axvline(robustness["clean"]["accuracy"], color="black", linestyle="--", label="clean photos")
    axes.set_xlim(0, 1)
    axes.invert_yaxis()
    axes.set_xlabel("accuracy")
    axes.set_title(f"Accuracy under corruptions ({plural(robustness['examples'], robustness['split'] + ' photo')})")
    axes.legend(loc="lower right")
    return png(figure)
