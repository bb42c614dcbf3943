"""The dashboard's open-set section: what the model refuses, and what review buys.

Read from the Robustness component's report (the known test photos' and the
non-gem photos' open-set verdicts) and its per-photo prediction records:
  - how many known test photos were flagged, and why, against the gate's limit;
  - a histogram of the not-a-gemstone score of the test photos against that of
    photos that are not gemstones at all, with the threshold;
  - the risk-coverage curve: the accuracy of the answers accepted without review
    against the share accepted, as the confidence threshold moves, the
    pipeline's review threshold marked.
"""
from __future__ import annotations

import html
from typing import Any, Dict, List, Optional

import numpy as np

from gemstone import contract
from gemstone.charts import png, pyplot
from gemstone.text import plural

COVERAGE_THRESHOLDS = np.linspace(0.0, 0.99, 100)


def risk_coverage(photos: List[Dict[str, Any]], review_threshold: float) -> Optional[Dict[str, Any]]:
    """Share of photos accepted without review, and their accuracy, at each confidence threshold: a photo is
    accepted when its confidence reaches the threshold and it is known (where the model says)."""
    usable = [p for p in photos if p.get("confidence") is not None]
    if not usable:
        return None
    confidence = np.array([p["confidence"] for p in usable])
    right = np.array([p["predicted"] == p["label"] for p in usable])
    known = np.array([p.get("known", True) is not False for p in usable])

    def at(threshold):
        accepted = known & (confidence >= threshold)
        return float(accepted.mean()), float(right[accepted].mean()) if accepted.any() else None

    curve = [at(t) for t in COVERAGE_THRESHOLDS]
    coverage, accuracy = at(review_threshold)
    return {"thresholds": COVERAGE_THRESHOLDS.tolist(), "coverage": [c for c, _ in curve],
            "accuracy": [a for _, a in curve], "review_threshold": review_threshold,
            "at_review_threshold": {"coverage": coverage, "accuracy": accuracy}, "photos": len(usable),
            "accuracy_of_all": float(right.mean())}


def collect(robustness: Optional[Dict[str, Any]], photos: List[Dict[str, Any]],
            review_threshold: Optional[float]) -> Optional[Dict[str, Any]]:
    """The section's figures; None for a model without the open-set outputs (exported before them)."""
    found = (robustness or {}).get("open_set")
    if not found:
        return None
    test_scores = [p["novelty"][contract.NOT_A_GEMSTONE] for p in photos if p.get("novelty")]
    non_gem = found["non_gem_photos"]
    return {**{k: v for k, v in found.items() if k != "non_gem_photos"},
            "non_gem": {k: v for k, v in non_gem.items() if k != "answers"},
            "test_not_a_gemstone": test_scores,
            "non_gem_not_a_gemstone": [a["novelty"][contract.NOT_A_GEMSTONE] for a in non_gem["answers"]],
            "non_gem_missed": [a["name"] for a in non_gem["answers"] if a["known"]],
            "risk_coverage": risk_coverage(photos, review_threshold) if review_threshold is not None else None}


def novelty_chart(section: Dict[str, Any]) -> str:
    plt = pyplot()

    test, non_gem = np.array(section["test_not_a_gemstone"]), np.array(section["non_gem_not_a_gemstone"])
    # A log scale: non-gem photos score tens to hundreds of times the threshold.
    values = np.concatenate([test, non_gem])
    low, high = max(1e-2, float(np.percentile(values, 1)) if len(values) else 1e-2), max(10.0, float(values.max()))
    bins = np.geomspace(low, high, 40)
    figure, axes = plt.subplots(figsize=(7, 3.2))
    axes.hist(np.clip(test, low, None), bins=bins, alpha=0.7, color="#4a7ab5",
              label=f"test photos of known varieties ({len(test)})")
    axes.hist(np.clip(non_gem, low, None), bins=bins, alpha=0.7, color="#c0504d",
              label=f"photos that are not gemstones ({len(non_gem)})")
    axes.axvline(1.0, color="black", linestyle="--", label="threshold: above it, 'not a gemstone photo'")
    axes.set_xscale("log")
    axes.set_xlabel("not-a-gemstone score (0: a typical known photo, 1: the threshold)")
    axes.set_ylabel("photos")
    axes.legend(loc="upper right", fontsize=8)
    return png(figure)


def risk_coverage_chart(curve: Dict[str, Any]) -> str:
    plt = pyplot()

    figure, axes = plt.subplots(figsize=(5.5, 4))
    points = [(c, a) for c, a in zip(curve["coverage"], curve["accuracy"]) if a is not None]
    axes.plot([c for c, _ in points], [a for _, a in points], color="#4a7ab5")
    mark = curve["at_review_threshold"]
    if mark["accuracy"] is not None:
        axes.plot(mark["coverage"], mark["accuracy"], "o", color="#c0504d",
                  label=f"review threshold {curve['review_threshold']:g}: {mark['coverage']:.0%} accepted, "
                        f"accuracy {mark['accuracy']:.3f}")
    axes.axhline(curve["accuracy_of_all"], color="grey", linestyle=":", label="accuracy with no review")
    axes.set_xlim(0, 1)
    axes.set_ylim(min(0.5, curve["accuracy_of_all"] - 0.05), 1.0)
    axes.set_xlabel("share of photos answered without expert review")
    axes.set_ylabel("accuracy of those answers")
    axes.legend(loc="lower left", fontsize=8)
    return png(figure)


def section_html(section: Optional[Dict[str, Any]]) -> str:
    if section is None:
        return ("<h2>Open set</h2><p>This model was exported before the open-set outputs: it names a variety for "
                "any photo, gemstone or not.</p>")
    reasons = section["flagged_by_reason"]
    non_gem = section["non_gem"]
    parts = [
        "<h2>Open set: photos the model does not know</h2>",
        f"<p>{section['flagged']:.1%} of the {plural(section['known_photos'], 'test photo')}, all of varieties the "
        f"model learned, were flagged as not known (not a gemstone photo {reasons[contract.NOT_A_GEMSTONE]:.1%}, an "
        f"unfamiliar variety {reasons[contract.UNFAMILIAR_VARIETY]:.1%}); a model is not pushed above "
        f"{section['max_flagged']:.0%}. Of {plural(non_gem['photos'], 'photo')} that are not gemstones at all "
        f"(sample photos shipped with scikit-image, scikit-learn and matplotlib), {non_gem['flagged']:.1%} were flagged, "
        f"{non_gem['not_a_gemstone']:.1%} as not a gemstone photo.</p>",
    ]
    if section["non_gem_missed"]:
        parts.append("<p>Not flagged: " + ", ".join(html.escape(n) for n in section["non_gem_missed"]) + ".</p>")
    parts.append(f'<img alt="not-a-gemstone scores" src="data:image/png;base64,{novelty_chart(section)}">')
    curve = section.get("risk_coverage")
    if curve:
        parts += ["<h3>What review buys (risk-coverage)</h3>",
                  "<p>Each point: the photos answered without review at one confidence threshold (known ones "
                  "only), and how often those answers are right.</p>",
                  f'<img alt="risk-coverage curve" src="data:image/png;base64,{risk_coverage_chart(curve)}">']
    return "\n".join(parts)
