"""What TFDV cannot see inside an image: brightness, contrast, saturation, sharpness, colour.

Each accepted photo is measured once at ingestion. The numbers go into its
tf.Example as float features (so StatisticsGen, ExampleValidator and the
drift check treat them like any other feature) and into the data report, where
`compare_splits` looks for a class whose eval or test photos differ from its
training photos (darker, blurrier, ...), and `plot` draws them for people.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Iterable, List, Optional

import numpy as np
from PIL import Image

from gemstone import contract

_MEASURE_SIDE = 256  # measured on a copy this size, so sharpness is comparable across resolutions
NUMERIC = ("brightness", "contrast", "saturation", "sharpness", "aspect_ratio")
# A class's split is flagged when its mean lies this many pooled standard
# deviations from train (a large effect) AND the difference is far beyond
# sampling noise for so few photos (z > SHIFT_Z: a class has ~6 eval photos,
# and 88 classes x 2 splits x 5 statistics are tested).
SHIFT_THRESHOLD = 1.0
SHIFT_Z = 4.0
MIN_IMAGES = 3


@dataclasses.dataclass(frozen=True)
class ImageStats:
    brightness: float  # mean HSV value, 0..1
    contrast: float  # standard deviation of luminance, 0..1
    saturation: float  # mean HSV saturation, 0..1
    sharpness: float  # log10(1 + variance of the Laplacian) at 256 px
    aspect_ratio: float  # width / height
    hue_histogram: tuple  # contract.HUE_BINS saturation-weighted hue frequencies, summing to 1 (or all 0 if grey)

    def numeric(self) -> Dict[str, float]:
        return {name: getattr(self, name) for name in NUMERIC}


def measure(rgb: Image.Image) -> ImageStats:
    """Measures an RGB picture (any size)."""
    aspect = rgb.width / rgb.height
    small = rgb.copy()
    small.thumbnail((_MEASURE_SIDE, _MEASURE_SIDE))
    hsv = np.asarray(small.convert("HSV"), dtype=np.float32) / 255.0
    grey = np.asarray(small.convert("L"), dtype=np.float32) / 255.0
    laplacian = (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1])
    sharpness = math.log10(1.0 + float(laplacian.var()) * 1e4) if laplacian.size else 0.0
    hue_bin = np.minimum((hsv[..., 0] * contract.HUE_BINS).astype(int), contract.HUE_BINS - 1)
    weights = hsv[..., 1] * hsv[..., 2]  # grey and dark pixels say little about hue
    histogram = np.bincount(hue_bin.ravel(), weights=weights.ravel(), minlength=contract.HUE_BINS)
    total = histogram.sum()
    histogram = histogram / total if total > 0 else histogram
    return ImageStats(
        brightness=round(float(hsv[..., 2].mean()), 4),
        contrast=round(float(grey.std()), 4),
        saturation=round(float(hsv[..., 1].mean()), 4),
        sharpness=round(sharpness, 4),
        aspect_ratio=round(aspect, 4),
        hue_histogram=tuple(round(float(v), 4) for v in histogram),
    )


def compare_splits(rows: Iterable[dict], reference: str = "train") -> Dict[str, object]:
    """Per class and split, the mean of each statistic, and the shifts worth a look.

    `rows` are accepted files of the data report: `label`, `split` and `stats`.
    A shift is flagged when a class's eval/test mean of a statistic lies more
    than SHIFT_THRESHOLD pooled standard deviations from its train mean (with
    at least MIN_IMAGES photos on each side).
    """
    values: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    for row in rows:
        per_split = values.setdefault(row["label"], {}).setdefault(row["split"], {})
        for name in NUMERIC:
            per_split.setdefault(name, []).append(row["stats"][name])
    means, shifts = {}, []
    for label in sorted(values):
        means[label] = {split: {name: round(float(np.mean(v)), 4) for name, v in stats.items()}
                        for split, stats in sorted(values[label].items())}
        base = values[label].get(reference)
        if not base or len(base[NUMERIC[0]]) < MIN_IMAGES:
            continue
        for split, stats in sorted(values[label].items()):
            if split == reference or len(stats[NUMERIC[0]]) < MIN_IMAGES:
                continue
            for name in NUMERIC:
                a, b = np.asarray(base[name]), np.asarray(stats[name])
                pooled = math.sqrt((a.var() + b.var()) / 2) or 1e-6
                effect = (b.mean() - a.mean()) / pooled
                z = effect / math.sqrt(1 / len(a) + 1 / len(b))
                if abs(effect) > SHIFT_THRESHOLD and abs(z) > SHIFT_Z:
                    shifts.append({"label": label, "split": split, "statistic": name,
                                   "reference_mean": round(float(a.mean()), 4), "mean": round(float(b.mean()), 4),
                                   "effect_size": round(float(effect), 2), "z": round(float(z), 1),
                                   "message": f"{label}: {split} photos have {'higher' if effect > 0 else 'lower'} "
                                              f"{name} than {reference} ({b.mean():.3g} vs {a.mean():.3g})"})
    return {"means": means, "shifts": shifts, "threshold_effect_size": SHIFT_THRESHOLD, "threshold_z": SHIFT_Z}


def class_hue_histograms(rows: Iterable[dict]) -> Dict[str, List[float]]:
    """Average hue histogram of each class's accepted photos."""
    sums: Dict[str, np.ndarray] = {}
    counts: Dict[str, int] = {}
    for row in rows:
        sums[row["label"]] = sums.get(row["label"], np.zeros(contract.HUE_BINS)) + np.asarray(row["stats"]["hue_histogram"])
        counts[row["label"]] = counts.get(row["label"], 0) + 1
    return {label: [round(float(v), 4) for v in sums[label] / counts[label]] for label in sorted(sums)}


def plot(rows: List[dict], path, title: str = "Image statistics") -> Optional[str]:
    """A PNG: each statistic per split (box plots), and each class's average hue histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import hsv_to_rgb

    if not rows:
        return None
    splits = sorted({r["split"] for r in rows}, key=lambda s: (s != "train", s))
    hues = class_hue_histograms(rows)
    fig = plt.figure(figsize=(15, 4 + 0.22 * len(hues)))
    grid = fig.add_gridspec(2, len(NUMERIC), height_ratios=[1, max(1.0, 0.08 * len(hues))])
    for i, name in enumerate(NUMERIC):
        ax = fig.add_subplot(grid[0, i])
        ax.boxplot([[r["stats"][name] for r in rows if r["split"] == s] for s in splits], labels=splits)
        ax.set_title(name)
    ax = fig.add_subplot(grid[1, :])
    labels = list(hues)
    left = np.zeros(len(labels))
    for b in range(contract.HUE_BINS):
        widths = np.array([hues[label][b] for label in labels])
        ax.barh(labels, widths, left=left, color=hsv_to_rgb(((b + 0.5) / contract.HUE_BINS, 0.85, 0.9)))
        left += widths
    ax.set_xlabel("share of saturated colour by hue")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)
