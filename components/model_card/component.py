"""ModelCard: writes model_card.md and model_card.json beside every pushed model version.

What a reviewer needs before trusting a version: intended use and limits, the
data it learned from, its metrics overall and per class (weak spots first),
its calibration, its edge models, and where each of those came from (lineage).
"""
import datetime
import json
import os
from typing import Any, Dict

from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from gemstone import contract

INTENDED_USE = ("Suggests the variety and mineral family of a gemstone from a photograph, with a confidence, "
                "to speed up a gemmologist's work. Predictions flagged needs_review must be checked by an expert.")
LIMITS = ("Not a gemmological test: a photograph cannot separate natural from synthetic or treated stones, "
          "nor look-alikes of the same colour (e.g. ruby and red spinel) reliably. Trained only on the classes "
          "listed; any other stone is still given one of them.")


def _read_json(path: str) -> Dict[str, Any]:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def evaluation_summary(evaluation_uri: str) -> Dict[str, Any]:
    """Overall metrics and per-class metrics of the candidate, from TFMA's output."""
    from gemstone import report

    def named(values):  # per-class-id metrics (tuple keys) are the dashboard's, not the card's
        return {k: v for k, v in values.items() if isinstance(k, str)}

    metrics = report.load_metrics(evaluation_uri)
    per_class = {name.split(":", 1)[1]: named(m["candidate"]) for name, m in metrics.items()
                 if name.startswith("label:")}
    return {"overall": named(metrics.get("overall", {"candidate": {}})["candidate"]), "per_class": per_class}


def build_card(version_dir: str, model_uri: str, evaluation_uri: str, examples_uri: str) -> Dict[str, Any]:
    evaluation = evaluation_summary(evaluation_uri)
    data = _read_json(os.path.join(examples_uri, contract.INGESTION_REPORT_FILE))
    weak = sorted(evaluation["per_class"].items(), key=lambda kv: kv[1].get("sparse_categorical_accuracy", 1.0))
    return {
        "model": os.path.basename(os.path.dirname(version_dir.rstrip("/"))),
        "version": os.path.basename(version_dir.rstrip("/")),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "intended_use": INTENDED_USE,
        "limits": LIMITS,
        "data": {"root": data.get("data_root"), "counts": data.get("counts"), "splits": data.get("splits"),
                 "classes": sorted(data.get("per_class", {}))},
        "metrics": {"overall": evaluation["overall"],
                    "weakest_classes": [{"label": k, **v} for k, v in weak[:5]]},
        "calibration": _read_json(os.path.join(version_dir, "assets.extra", "calibration.json")),
        "backbone": _read_json(os.path.join(version_dir, "assets.extra", "backbone.json")),
        "edge_models": _read_json(os.path.join(version_dir, "tflite", "edge_report.json")),
        "lineage": {"examples": examples_uri, "model": model_uri, "evaluation": evaluation_uri},
    }


def to_markdown(card: Dict[str, Any]) -> str:
    overall = card["metrics"]["overall"]
    lines = [f"# Model card: {card['model']} version {card['version']}", "", f"Created {card['created']}.", "",
             "## Intended use", "", card["intended_use"], "", "## Limits", "", card["limits"], "",
             "## Data", "", f"From `{card['data']['root']}`: {json.dumps(card['data']['counts'])}; "
             f"{len(card['data']['classes'])} classes.", "", "## Metrics (test split)", ""]
    lines += [f"- {name}: {value:.4g}" for name, value in sorted(overall.items())]
    lines += ["", "Weakest classes:", ""]
    lines += [f"- {c['label']}: accuracy {c.get('sparse_categorical_accuracy', float('nan')):.3f} "
              f"on {int(c.get('example_count', 0))} photos" for c in card["metrics"]["weakest_classes"]]
    backbone = card.get("backbone") or {}
    if backbone:
        provenance = backbone.get("provenance") or {}
        lines += ["", "## Backbone", "", f"{backbone['backbone']}, started from `{backbone['weights']}`."]
        if provenance:
            package = " ".join(str(provenance[k]) for k in ("package", "version") if provenance.get(k))
            lines += [f"Weights from {provenance.get('source', '?')} {package}; sha256 "
                      f"{provenance.get('weights_sha256', '?')}; ImageNet's layers: "
                      f"{provenance.get('imagenet_layers', '?')}; quantization: {provenance.get('quantization', '?')}."]
        if "fine_tuning_kept" in backbone:
            lines += ["Fine-tuning of the top blocks was " + ("kept (it raised the eval accuracy)."
                      if backbone["fine_tuning_kept"] else "dropped (it did not raise the eval accuracy): frozen.")]
    calibration = card["calibration"]
    if calibration:
        lines += ["", "## Calibration", "", f"Temperature {calibration['temperature']:.3f}; ECE "
                  f"{calibration['ece_before']:.3f} before, {calibration['ece_after']:.3f} after scaling "
                  f"(eval split, {calibration['examples']} photos); review rate {calibration['review_rate']:.1%}."]
    if card["edge_models"]:
        lines += ["", "## Edge models", "", "```json", json.dumps(card["edge_models"], indent=1), "```"]
    lines += ["", "## Lineage", ""] + [f"- {k}: `{v}`" for k, v in card["lineage"].items()]
    return "\n".join(lines) + "\n"


@component
def ModelCard(model: InputArtifact[standard_artifacts.Model],  # noqa: N802 - TFX component naming
              evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
              examples: InputArtifact[standard_artifacts.Examples],
              pushed_model: InputArtifact[standard_artifacts.PushedModel]):
    """Writes the card into the pushed version folder; does nothing when the model was not pushed."""
    import tensorflow as tf
    from absl import logging

    if not pushed_model.get_int_custom_property("pushed"):
        logging.info("ModelCard: the model was not pushed; no card.")
        return
    version_dir = pushed_model.get_string_custom_property("pushed_destination")
    card = build_card(version_dir, model.uri, evaluation.uri, examples.uri)
    with tf.io.gfile.GFile(os.path.join(version_dir, "model_card.json"), "w") as f:
        json.dump(card, f, indent=1)
    with tf.io.gfile.GFile(os.path.join(version_dir, contract.MODEL_CARD_FILE), "w") as f:
        f.write(to_markdown(card))
    logging.info("ModelCard: wrote %s/%s", version_dir, contract.MODEL_CARD_FILE)
