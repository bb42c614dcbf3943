"""Robustness: the trained model's accuracy on corrupted copies of the evaluation photos.

Runs after the Trainer, on the same split the Evaluator judges. For each
corruption in `corruptions.CORRUPTIONS` (noise, blur, JPEG 30 and 10,
brightness, colour temperature, down-scaling) it sends the corrupted photos
through the exported `serving_default` signature, exactly as a client would,
and records accuracy, accuracy relative to the clean photos, and how often the
answer stays the same. The clean predictions are kept per photo
(`predictions.jsonl`) for the report's worst confusions.

The blessing the Pusher reads: Robustness takes the Evaluator's blessing and
writes a `ModelBlessing` of its own, as the Evaluator writes one (custom
property `blessed`: 1 or 0, and BLESSED / NOT_BLESSED marker files), blessed
only when the Evaluator blessed the model AND the optional gate passed. Gate:
with `min_relative_accuracy` > 0 a model is not robust enough when any
corruption keeps less than that share of the clean accuracy. A rejected model
is not pushed, but the run goes on (and ends without error): the dashboard and
the model card say why. The blessing also records `evaluator_blessed`,
`robustness_passed` and the reasons (`blessing_message`, one per line).
"""

import json
import os
from typing import Dict, List

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.artifacts import RobustnessReport
from gemstone import contract

REPORT_FILE = contract.ROBUSTNESS_REPORT_FILE
PREDICTIONS_FILE = contract.ROBUSTNESS_PREDICTIONS_FILE
BATCH_SIZE = 64
KEYS = (contract.IMAGE_KEY, contract.LABEL_KEY, "source_path")


def predict(signature, images: List[bytes]) -> List[Dict[str, object]]:
    """The compact prediction record (gemstone.contract) of each photo, in batches."""
    import tensorflow as tf

    results = []
    for start in range(0, len(images), BATCH_SIZE):
        out = signature(**{contract.SERVING_INPUT: tf.constant(images[start:start + BATCH_SIZE])})
        results += [contract.compact(record) for record in contract.prediction_records(out)]
    return results


def open_set(signature, predictions: List[Dict[str, object]], max_flagged: float) -> Dict[str, object]:
    """The open-set verdicts of the known test photos (`predictions`) and of photos that are not gemstones at
    all (gemstone.non_gem_photos); None for a model without the open-set outputs."""
    from gemstone import non_gem_photos

    if not predictions or not contract.has_novelty(predictions[0]):
        return None
    non_gems = non_gem_photos.photos()
    answered = predict(signature, [photo.data for photo in non_gems])
    n = len(predictions)
    return {
        "known_photos": n,
        "flagged": sum(not p["known"] for p in predictions) / n,
        "flagged_by_reason": {q: sum(p["review_reason"] == q for p in predictions) / n
                              for q in contract.NOVELTY_QUESTIONS},
        "max_flagged": max_flagged,
        "non_gem_photos": {
            "photos": len(answered),
            "flagged": sum(not p["known"] for p in answered) / max(1, len(answered)),
            "not_a_gemstone": sum(p["review_reason"] == contract.NOT_A_GEMSTONE for p in answered)
            / max(1, len(answered)),
            "answers": [{"name": photo.name, **p} for photo, p in zip(non_gems, answered)]},
    }


def open_set_failures(report: Dict[str, object]) -> List[str]:
    """Too many known photos flagged as unknown: the model would send most of its work to review."""
    found = report.get("open_set")
    if not found or found["flagged"] <= found["max_flagged"]:
        return []
    return [f"open set: {found['flagged']:.1%} of the {found['known_photos']} known test photos were flagged as not "
            f"known (not a gemstone {found['flagged_by_reason'][contract.NOT_A_GEMSTONE]:.1%}, unfamiliar variety "
            f"{found['flagged_by_reason'][contract.UNFAMILIAR_VARIETY]:.1%}), over the {found['max_flagged']:.0%} "
            f"allowed"]


def _summary(labels: List[str], predictions: List[Dict[str, object]]) -> Dict[str, float]:
    n = max(1, len(labels))
    return {"accuracy": sum(p["label"] == l for p, l in zip(predictions, labels)) / n,
            "mean_confidence": sum(p["confidence"] for p in predictions) / n,
            "review_rate": sum(p["needs_review"] for p in predictions) / n}


def measure(serving_model_dir: str, examples_uri: str, split: str, max_examples: int, seed: int = 0,
            max_flagged: float = 0.1):
    """The robustness report (with the open-set verdicts: `open_set`) and the clean per-photo predictions."""
    import tensorflow as tf

    from components.robustness import corruptions
    from gemstone import ingestion

    signature = tf.saved_model.load(serving_model_dir).signatures[contract.SERVING_SIGNATURE]
    examples = [{k: v if k == contract.IMAGE_KEY else v.decode() for k, v in e.items()}
                for e in ingestion.read_examples(examples_uri, split, KEYS, limit=max_examples)]
    labels = [e[contract.LABEL_KEY] for e in examples]
    clean = predict(signature, [e[contract.IMAGE_KEY] for e in examples])
    decoded = [corruptions.decode(e[contract.IMAGE_KEY]) for e in examples]
    report = {"split": split, "examples": len(examples), "clean": _summary(labels, clean), "corruptions": [],
              "open_set": open_set(signature, clean, max_flagged)}
    for name, corruption, corrupted_photos in corruptions.corrupt_each(decoded, seed):
        corrupted = predict(signature, corrupted_photos)
        summary = _summary(labels, corrupted)
        clean_accuracy = report["clean"]["accuracy"]
        summary.update(
            name=name, description=corruption.description,
            relative_accuracy=summary["accuracy"] / clean_accuracy if clean_accuracy else 0.0,
            # Same answer as on the clean photo, right or wrong: stability of the prediction.
            agreement=sum(a["label"] == b["label"] for a, b in zip(clean, corrupted)) / max(1, len(clean)))
        report["corruptions"].append(summary)
    per_photo = [{"source_path": e["source_path"], "label": e["label"], "prediction": p} for e, p in zip(examples, clean)]
    return report, per_photo


def gate_failures(report: Dict[str, object], min_relative_accuracy: float) -> List[str]:
    return [f"{c['name']} ({c['description']}): accuracy {c['accuracy']:.3f} is {c['relative_accuracy']:.0%} "
            f"of the clean {report['clean']['accuracy']:.3f}, under the required {min_relative_accuracy:.0%}"
            for c in report["corruptions"] if c["relative_accuracy"] < min_relative_accuracy]


EVALUATOR_REJECTED = "Evaluator: the model did not pass its thresholds (accuracy floor, or regression against " \
                     "the latest blessed model); see the evaluation's validation result"


def bless(blessing: standard_artifacts.ModelBlessing, model: standard_artifacts.Model,
          evaluator_blessing: standard_artifacts.ModelBlessing, failures: List[str]) -> bool:
    """Writes the blessing the Pusher reads: blessed when the Evaluator blessed the model and no gate failed.

    Custom properties as the Evaluator sets them (`blessed`, the current and baseline model), so
    the latest-blessed-model resolvers (local and Kubeflow) can use it, plus why it was not blessed.
    """
    from tfx.components.evaluator import constants
    from tfx.utils import io_utils

    evaluator_blessed = evaluator_blessing.get_int_custom_property(
        constants.ARTIFACT_PROPERTY_BLESSED_KEY) == constants.BLESSED_VALUE
    blessed = evaluator_blessed and not failures
    reasons = [f"Robustness: {f}" for f in failures]
    if not evaluator_blessed:
        reasons.insert(0, EVALUATOR_REJECTED if evaluator_blessing.has_custom_property(
            constants.ARTIFACT_PROPERTY_BLESSED_KEY) else "Evaluator: recorded no verdict (no thresholds configured?)")
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
    if evaluator_blessing.has_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY):
        blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY,
                                            evaluator_blessing.get_string_custom_property(
                                                constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY))
        blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY,
                                         evaluator_blessing.get_int_custom_property(
                                             constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY))
    blessing.set_int_custom_property("evaluator_blessed", int(evaluator_blessed))
    blessing.set_int_custom_property("robustness_passed", int(not failures))
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY, "\n".join(reasons))
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                     constants.BLESSED_VALUE if blessed else constants.NOT_BLESSED_VALUE)
    io_utils.write_string_file(
        os.path.join(blessing.uri, constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME), "")
    return blessed


@component
def Robustness(model: InputArtifact[standard_artifacts.Model],  # noqa: N802 - TFX component naming
               examples: InputArtifact[standard_artifacts.Examples],
               model_blessing: InputArtifact[standard_artifacts.ModelBlessing],
               report: OutputArtifact[RobustnessReport],
               blessing: OutputArtifact[standard_artifacts.ModelBlessing],
               split: Parameter[str] = "test",
               max_examples: Parameter[int] = 2000,
               min_relative_accuracy: Parameter[float] = 0.0,
               max_flagged_known: Parameter[float] = 0.1):
    """Measures accuracy under each corruption and the open-set verdicts; blesses the model when the Evaluator
    did and the gates passed (robustness; at most `max_flagged_known` of the known test photos flagged).

    `model_blessing`: the Evaluator's. `blessing`: the one the Pusher reads. Never fails because of a gate.
    """
    import tensorflow as tf
    from absl import logging
    from tfx.utils import path_utils

    result, per_photo = measure(path_utils.serving_model_path(model.uri), examples.uri, split, max_examples,
                                max_flagged=max_flagged_known)
    result["gate"] = {"min_relative_accuracy": min_relative_accuracy, "max_flagged_known": max_flagged_known,
                      "failures": gate_failures(result, min_relative_accuracy) + open_set_failures(result)}
    with tf.io.gfile.GFile(os.path.join(report.uri, REPORT_FILE), "w") as f:
        json.dump(result, f, indent=1)
    with tf.io.gfile.GFile(os.path.join(report.uri, PREDICTIONS_FILE), "w") as f:
        f.write("".join(json.dumps(row) + "\n" for row in per_photo))
    logging.info("Robustness on %d '%s' photos: clean accuracy %.3f; %s", result["examples"], split,
                 result["clean"]["accuracy"],
                 ", ".join(f"{c['name']} {c['accuracy']:.3f}" for c in result["corruptions"]))
    if result["gate"]["failures"]:
        logging.warning("The model is not robust enough to push:\n  %s", "\n  ".join(result["gate"]["failures"]))
    blessed = bless(blessing, model, model_blessing, result["gate"]["failures"])
    logging.info("Robustness: the model is %s.", "blessed" if blessed else "not blessed, so it will not be pushed")
