"""ModelCard: writes model_card.md and model_card.json for every candidate model, pushed or not.

What a reviewer needs before trusting a version: the verdict (blessed and
pushed, or why not: the Evaluator's failed thresholds, the robustness gate's
failed corruptions), intended use and limits, the data it learned from, its
metrics overall and per class (weak spots first), its calibration, its edge
models, and where each of those came from (lineage). The card is the
component's output artifact at every run; a pushed version gets a copy beside
its SavedModel.
"""
import datetime
import json
import os
from typing import Any, Dict, List, Optional

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.artifacts import ModelCardDocument, RobustnessReport
from gemstone import contract
from gemstone.text import plural

INTENDED_USE = ("Suggests the variety and mineral family of a gemstone from a photograph, with a confidence, "
                "to speed up a gemmologist's work. Predictions flagged needs_review must be checked by an expert.")
LIMITS = ("Not a gemmological test: a photograph cannot separate natural from synthetic or treated stones, "
          "nor look-alikes of the same colour (e.g. ruby and red spinel) reliably. Trained only on the classes "
          "listed below. A photo that is not of a gemstone, or of a variety not listed, is answered with the "
          "closest variety listed and flagged `known: false` when the model sees it (see Open set below), "
          "but an unfamiliar variety that looks like a listed one is often not flagged.")


def _read_json(path: str) -> Dict[str, Any]:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def evaluation_summary(evaluation_uri: str) -> Dict[str, Any]:
    """Overall and per-class metrics of the candidate, and the overall ones of the baseline (the latest blessed model)
    when the Evaluator compared the two, from TFMA's output."""
    from gemstone import evaluation_results

    def named(values):  # per-class-id metrics (tuple keys) are the dashboard's, not the card's
        return {k: v for k, v in values.items() if isinstance(k, str)}

    metrics = evaluation_results.load_metrics(evaluation_uri)
    per_class = {name.split(":", 1)[1]: named(m["candidate"]) for name, m in metrics.items()
                 if name.startswith(f"{contract.LABEL_KEY}:")}
    overall = metrics.get("overall", {})
    return {"overall": named(overall.get("candidate", {})), "baseline": named(overall.get("baseline", {})),
            "per_class": per_class}


def weakest_classes(per_class: Dict[str, Dict[str, float]], shown: int = 5) -> List[Dict[str, Any]]:
    """The `shown` classes of lowest accuracy, lowest first; a class every test photo of which was named right
    (accuracy 1.0) is no weak spot, whatever the others'."""
    weak = sorted(((name, m) for name, m in per_class.items() if m.get(contract.ACCURACY, 1.0) < 1.0),
                  key=lambda kv: (kv[1][contract.ACCURACY], kv[0]))
    return [{"label": name, **metrics} for name, metrics in weak[:shown]]


def verdict(blessing, evaluation_uri: str, robustness_uri: str, pushed_to: Optional[str],
            already_serving: Optional[str] = None) -> Dict[str, Any]:
    """Blessed (the blessing's `blessed` custom property, as the Pusher reads it), pushed where, and why not.

    `already_serving`: the version folder that already held the model, when the Pusher pushed nothing for that."""
    import tensorflow_model_analysis as tfma

    from gemstone import verdict as verdict_lib

    blessed = verdict_lib.is_blessed(blessing)
    reasons = [] if blessed else verdict_lib.rejection_reasons(
        verdict_lib.validation_failures(tfma.load_validation_result(evaluation_uri)),
        verdict_lib.robustness_failures(_read_json(os.path.join(robustness_uri, contract.ROBUSTNESS_REPORT_FILE))))
    return {"blessed": blessed, "pushed": pushed_to is not None, "pushed_to": pushed_to,
            "already_serving": already_serving, "reasons": reasons}


def build_card(model_dir: str, model_uri: str, evaluation_uri: str, examples_uri: str,
               verdict: Dict[str, Any], robustness: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """`model_dir`: the SavedModel the card describes (the pushed version folder, or the candidate's);
    `robustness`: the Robustness component's report (the open-set figures on the test photos)."""
    evaluation = evaluation_summary(evaluation_uri)
    data = _read_json(os.path.join(examples_uri, contract.INGESTION_REPORT_FILE))
    novelty = _read_json(os.path.join(model_dir, contract.MODEL_ASSETS_DIR, contract.NOVELTY_FILE))
    test_open_set = (robustness or {}).get("open_set")
    pushed_to = (verdict.get("pushed_to") or "").rstrip("/")
    return {
        "model": os.path.basename(os.path.dirname(pushed_to)) if pushed_to else None,
        "version": os.path.basename(pushed_to) if pushed_to else None,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "verdict": verdict,
        "intended_use": INTENDED_USE,
        "limits": LIMITS,
        "data": {"root": data.get("data_root"), "counts": data.get("counts"), "splits": data.get("splits"),
                 "classes": sorted(data.get("per_class", {}))},
        "metrics": {"overall": evaluation["overall"],
                    **({"baseline": evaluation["baseline"]} if evaluation["baseline"] else {}),
                    "weakest_classes": weakest_classes(evaluation["per_class"])},
        "calibration": _read_json(os.path.join(model_dir, contract.MODEL_ASSETS_DIR, contract.CALIBRATION_FILE)),
        "backbone": _read_json(os.path.join(model_dir, contract.MODEL_ASSETS_DIR, contract.BACKBONE_FILE)),
        "open_set": {"fitted": novelty, "test": {k: v for k, v in test_open_set.items() if k != "non_gem_photos"},
                     "non_gem": {k: v for k, v in test_open_set["non_gem_photos"].items() if k != "answers"}}
        if novelty and test_open_set else ({"fitted": novelty} if novelty else {}),
        "edge_models": _read_json(os.path.join(model_dir, contract.EDGE_DIR, contract.EDGE_REPORT_FILE)),
        "lineage": {"examples": examples_uri, "model": model_uri, "evaluation": evaluation_uri},
    }


def _verdict_lines(verdict: Dict[str, Any]) -> List[str]:
    if verdict["blessed"]:
        if verdict["pushed"]:
            pushed = f"pushed to `{verdict['pushed_to']}`."
        elif verdict.get("already_serving"):
            pushed = f"not pushed again: `{verdict['already_serving']}` already holds this model."
        else:
            pushed = "not pushed."
        return ["Blessed: it passed the Evaluator's thresholds and the robustness gate; " + pushed]
    return ["**Not blessed, so not pushed.** Why:", ""] + [
        f"- {reason}" for reason in verdict["reasons"] or ["(see the Evaluator's and Robustness' logs)"]]


def metric_lines(overall: Dict[str, float]) -> List[str]:
    """The overall metrics in words a gemmologist reads: accuracy on how many test photos, top-3, then the rest."""
    photos = int(overall.get(contract.EXAMPLE_COUNT, 0))
    lines = []
    if contract.ACCURACY in overall:
        accuracy = overall[contract.ACCURACY]
        lines.append(f"- Accuracy on {plural(photos, 'test photo')}: {100 * accuracy:.1f} % named correctly "
                     f"({accuracy:.3f})")
    if contract.TOP_K_ACCURACY in overall:
        top_k = overall[contract.TOP_K_ACCURACY]
        lines.append(f"- Top-{contract.TOP_K} accuracy: the right variety among the first {contract.TOP_K} named "
                     f"for {100 * top_k:.1f} % of them ({top_k:.3f})")
    shown = (contract.ACCURACY, contract.TOP_K_ACCURACY, contract.EXAMPLE_COUNT)
    lines += [f"- {name}: {value:.4g}" for name, value in sorted(overall.items()) if name not in shown]
    return lines


def open_set_lines(open_set: Dict[str, Any]) -> List[str]:
    """How the model says a photo is not one it knows: its thresholds and how often they flag what."""
    fitted = open_set.get("fitted")
    if not fitted:
        return ["", "## Open set", "", "This model has no open-set outputs: it names a variety for any photo."]
    eval_flagged = fitted["eval_flagged"]
    lines = ["", "## Open set", "",
             "Every answer says whether the photo looks like anything the model learned (`known`), and if not "
             "why (`review_reason`): `not_a_gemstone` when its ImageNet features are far from every variety's "
             f"training photos ({fitted['not_a_gemstone']['score']}), `unfamiliar_variety` when the answer is "
             f"too uncertain ({fitted['unfamiliar_variety']['score']}). Thresholds "
             f"{fitted['threshold'][0]:.4g} and {fitted['threshold'][1]:.4g} (raw scores), set on "
             f"{plural(fitted['eval_photos'], 'eval photo')} to flag {fitted['target_flagged_share']:.0%} of known photos "
             f"together: they flagged {eval_flagged[contract.NOT_A_GEMSTONE]:.1%} and "
             f"{eval_flagged[contract.UNFAMILIAR_VARIETY]:.1%} there ({fitted['eval_flagged_either']:.1%} either)."]
    test, non_gem = open_set.get("test"), open_set.get("non_gem")
    if test:
        lines.append(f"On the {plural(test['known_photos'], 'test photo')}, all of known varieties: "
                     f"{test['flagged']:.1%} flagged (at most {test['max_flagged']:.0%} allowed).")
    if non_gem:
        lines.append(f"On {plural(non_gem['photos'], 'photo')} that are not gemstones: {non_gem['flagged']:.1%} "
                     f"flagged, {non_gem['not_a_gemstone']:.1%} as not a gemstone photo.")
    return lines


def to_markdown(card: Dict[str, Any]) -> str:
    overall = card["metrics"]["overall"]
    title = (f"# Model card: {card['model']} version {card['version']}" if card["version"]
             else "# Model card: candidate model (not pushed)")
    lines = [title, "", f"Created {card['created']}.", "", "## Verdict", ""] + _verdict_lines(card["verdict"]) + [
             "", "## Intended use", "", card["intended_use"], "", "## Limits", "", card["limits"], "",
             "## Data", "", f"From `{card['data']['root']}`: {json.dumps(card['data']['counts'])}; "
             f"{plural(len(card['data']['classes']), 'class')}:", "", ", ".join(card["data"]["classes"]) + ".", "",
             "## Metrics (test split)", ""]
    lines += metric_lines(overall)
    baseline = card["metrics"].get("baseline") or {}
    if contract.ACCURACY in baseline:
        lines.append(f"- The latest blessed model, which it was compared with: accuracy "
                     f"{baseline[contract.ACCURACY]:.3f}")
    lines += ["", "Weakest classes:" if card["metrics"]["weakest_classes"] else "No class had a test photo named wrong.",
              ""]
    lines += [f"- {c['label']}: accuracy {c.get(contract.ACCURACY, float('nan')):.3f} "
              f"on {plural(int(c.get(contract.EXAMPLE_COUNT, 0)), 'photo')}"
              for c in card["metrics"]["weakest_classes"]]
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
            scope = "the whole network" if backbone.get("fine_tune_scope") == "whole_network" else "the top blocks"
            lines += [f"Fine-tuning of {scope} was " + ("kept (it raised the eval accuracy)."
                      if backbone["fine_tuning_kept"] else "dropped (it did not raise the eval accuracy): frozen.")]
        if backbone.get("tuner_values"):
            values = ", ".join(f"{name} {value}" for name, value in backbone["tuner_values"].items())
            lines += [f"Trained with the Tuner's best values (its other trials: the Tuner's outputs): {values}."]
        if backbone.get("refit_with_eval"):
            lines += ["The head was then trained again on the training and eval photos together; the calibration "
                      "below was measured on the eval photos before that, while they were held out."]
    explanations = backbone.get("explanations")
    if explanations:
        lines += ["", "## Explanations", "", f"Where the model looked (the `explain` signature: `:explain`, `gemstone "
                  f"explain`, the upload page and the dashboard's overlays): {explanations['summary']} "
                  f"(`{explanations['method']}`)."]
    calibration = card["calibration"]
    if calibration:
        lines += ["", "## Calibration", "", f"Temperature {calibration['temperature']:.3f}; ECE "
                  f"{calibration['ece_before']:.3f} before, {calibration['ece_after']:.3f} after scaling "
                  f"(eval split, {plural(calibration['examples'], 'photo')}); review rate "
                  f"{calibration['review_rate']:.1%}."]
    lines += open_set_lines(card.get("open_set") or {})
    if card["edge_models"]:
        lines += ["", "## Edge models", "", "```json", json.dumps(card["edge_models"], indent=1), "```"]
    lines += ["", "## Lineage", ""] + [f"- {k}: `{v}`" for k, v in card["lineage"].items()]
    return "\n".join(lines) + "\n"


@component
def ModelCard(model: InputArtifact[standard_artifacts.Model],  # noqa: N802 - TFX component naming
              evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
              examples: InputArtifact[standard_artifacts.Examples],
              blessing: InputArtifact[standard_artifacts.ModelBlessing],
              robustness: InputArtifact[RobustnessReport],
              pushed_model: InputArtifact[standard_artifacts.PushedModel],
              card: OutputArtifact[ModelCardDocument]):
    """Writes the card into its artifact, and into the pushed version folder when the model was pushed.

    `blessing`: the one the Pusher read (Robustness'); `robustness`: its report, for the gate's failures.
    """
    import tensorflow as tf
    from absl import logging
    from tfx.utils import path_utils

    from gemstone import verdict as verdict_lib

    version_dir = verdict_lib.pushed_to(pushed_model)
    # The version that already serves the model keeps the card of the run that pushed it.
    already_serving = pushed_model.get_string_custom_property(contract.ALREADY_SERVING_DESTINATION_PROPERTY) or None
    content = build_card(version_dir or path_utils.serving_model_path(model.uri), model.uri, evaluation.uri,
                         examples.uri, verdict(blessing, evaluation.uri, robustness.uri, version_dir, already_serving),
                         _read_json(os.path.join(robustness.uri, contract.ROBUSTNESS_REPORT_FILE)))
    for folder in [card.uri] + ([version_dir] if version_dir else []):
        with tf.io.gfile.GFile(os.path.join(folder, contract.MODEL_CARD_JSON_FILE), "w") as f:
            json.dump(content, f, indent=1)
        with tf.io.gfile.GFile(os.path.join(folder, contract.MODEL_CARD_FILE), "w") as f:
            f.write(to_markdown(content))
        logging.info("ModelCard: wrote %s/%s", folder, contract.MODEL_CARD_FILE)
    if not content["verdict"]["blessed"]:
        logging.warning("ModelCard: the model was not blessed, so it is not pushed:\n  %s",
                        "\n  ".join(content["verdict"]["reasons"]))
