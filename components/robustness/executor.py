"""Robustness executor: every evaluation photo, clean and under each corruption, through the model on Beam.

The photos are the split's first `max_examples`, in file order. One worker reads
them and Beam spreads them over the others; each photo is decoded once and
corrupted in every way (each corruption of each photo draws from its own random
stream: corruptions.corrupt), and RunInference sends every version through the
model's `serving_default`, as batch inference does (gemstone.inference), with
the photos that are not gemstones (gemstone.non_gem_photos) for the open-set
verdicts. The answers come back here, where the report, the gates' verdict and
the blessing are made (see component.py).
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any, Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
from absl import logging
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs

from components.robustness import corruptions
from gemstone import contract, ingestion
from gemstone.text import plural

REPORT_FILE = contract.ROBUSTNESS_REPORT_FILE
PREDICTIONS_FILE = contract.ROBUSTNESS_PREDICTIONS_FILE
BATCH_SIZE = 64
SEED = 0  # of the corruptions' random streams
KEYS = (contract.IMAGE_KEY, contract.LABEL_KEY, "source_path")

# Inputs, outputs and exec properties (component.py's spec).
MODEL_KEY = standard_component_specs.MODEL_KEY
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
MODEL_BLESSING_KEY = standard_component_specs.MODEL_BLESSING_KEY  # the Evaluator's
REPORT_KEY = "report"
BLESSING_KEY = standard_component_specs.BLESSING_KEY  # the one the Pusher reads
SPLIT_KEY = "split"
MAX_EXAMPLES_KEY = "max_examples"
MIN_RELATIVE_ACCURACY_KEY = "min_relative_accuracy"
MAX_FLAGGED_KNOWN_KEY = "max_flagged_known"

# What each answer is of: a test photo as it is, under a corruption (its name), or a photo that is no gemstone.
CLEAN, NON_GEM = "clean", "non_gem"

# (variant, position, label, name): what RunInference's key says of a photo. The name is a test photo's
# source_path, or a non-gem photo's name.
Key = Tuple[str, int, str, str]


def _read(split: str, examples_uri: str, limit: int) -> Iterator[Tuple[int, Dict[str, bytes]]]:
    """(position, example) of the split's first `limit` examples, in file order."""
    yield from enumerate(ingestion.iter_examples(examples_uri, split, KEYS, limit))


def _non_gem_photos(_) -> Iterator[Tuple[Key, bytes]]:
    """The photos that are not gemstones, assembled where they are classified (from packages the project's
    environment installs), not shipped from here: 70 photos, 3 MB, which Beam would pickle into the job."""
    from gemstone import non_gem_photos

    for position, photo in enumerate(non_gem_photos.photos()):
        yield (NON_GEM, position, "", photo.name), photo.data


def _versions(element: Tuple[int, Dict[str, bytes]], seed: int) -> Iterator[Tuple[Key, bytes]]:
    """The photo as it is and under each corruption, keyed by which variant it is."""
    position, example = element
    label, name = example[contract.LABEL_KEY].decode(), example["source_path"].decode()
    yield (CLEAN, position, label, name), example[contract.IMAGE_KEY]
    for corruption, data in corruptions.corrupt(corruptions.decode(example[contract.IMAGE_KEY]), position, seed):
        yield (corruption, position, label, name), data


def _answer(keyed) -> str:
    (variant, position, label, name), result = keyed
    return json.dumps({"variant": variant, "position": position, "label": label, "name": name,
                       "prediction": contract.compact(result.inference)})


def open_set(predictions: List[Dict[str, object]], non_gems: List[Tuple[str, Dict[str, object]]],
             max_flagged: float) -> Optional[Dict[str, object]]:
    """The open-set verdicts of the known test photos (`predictions`) and of photos that are not gemstones at
    all ((name, prediction) of each of gemstone.non_gem_photos); None for a model without the open-set outputs."""
    if not predictions or not contract.has_novelty(predictions[0]):
        return None
    answered = [p for _, p in non_gems]
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
            "answers": [{"name": name, **p} for name, p in non_gems]},
    }


def open_set_failures(report: Dict[str, object]) -> List[str]:
    """Too many known photos flagged as unknown: the model would send most of its work to review."""
    found = report.get("open_set")
    if not found or found["flagged"] <= found["max_flagged"]:
        return []
    return [f"open set: {found['flagged']:.1%} of the {plural(found['known_photos'], 'known test photo')} were "
            f"flagged as not known (not a gemstone {found['flagged_by_reason'][contract.NOT_A_GEMSTONE]:.1%}, "
            f"unfamiliar variety {found['flagged_by_reason'][contract.UNFAMILIAR_VARIETY]:.1%}), over the {found['max_flagged']:.0%} "
            f"allowed"]


def _summary(labels: List[str], predictions: List[Dict[str, object]]) -> Dict[str, float]:
    n = max(1, len(labels))
    return {"accuracy": sum(p["label"] == l for p, l in zip(predictions, labels)) / n,
            "mean_confidence": sum(p["confidence"] for p in predictions) / n,
            "review_rate": sum(p["needs_review"] for p in predictions) / n}


def report_of(answers: List[Dict[str, Any]], split: str, max_flagged: float):
    """The robustness report (with the open-set verdicts: `open_set`) and the clean per-photo predictions, from
    the answers of the Beam run (each {variant, position, label, name, prediction}), in any order."""
    by_variant = defaultdict(list)
    for answer in sorted(answers, key=lambda a: a["position"]):
        by_variant[answer["variant"]].append(answer)
    labels = [a["label"] for a in by_variant[CLEAN]]
    clean = [a["prediction"] for a in by_variant[CLEAN]]
    non_gems = [(a["name"], a["prediction"]) for a in by_variant[NON_GEM]]
    report = {"split": split, "examples": len(clean), "clean": _summary(labels, clean), "corruptions": [],
              "open_set": open_set(clean, non_gems, max_flagged)}
    for name, corruption in corruptions.CORRUPTIONS.items():
        corrupted = [a["prediction"] for a in by_variant[name]]
        summary = _summary(labels, corrupted)
        clean_accuracy = report["clean"]["accuracy"]
        summary.update(
            name=name, description=corruption.description,
            relative_accuracy=summary["accuracy"] / clean_accuracy if clean_accuracy else 0.0,
            # Same answer as on the clean photo, right or wrong: stability of the prediction.
            agreement=sum(a["label"] == b["label"] for a, b in zip(clean, corrupted)) / max(1, len(clean)))
        report["corruptions"].append(summary)
    per_photo = [{"source_path": a["name"], "label": a["label"], "prediction": a["prediction"]}
                 for a in by_variant[CLEAN]]
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


class Executor(base_beam_executor.BaseBeamExecutor):
    """Measures the model on the corrupted photos and the non-gem photos on Beam, then writes the report and
    the blessing. Never fails because of a gate."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 - TFX's name
        import tensorflow as tf
        from tfx.utils import path_utils

        self._log_startup(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        report = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        split, min_relative_accuracy = exec_properties[SPLIT_KEY], exec_properties[MIN_RELATIVE_ACCURACY_KEY]
        max_flagged_known = exec_properties[MAX_FLAGGED_KNOWN_KEY]

        answers = self.classify(path_utils.serving_model_path(model.uri),
                                artifact_utils.get_single_uri(input_dict[EXAMPLES_KEY]), split,
                                exec_properties[MAX_EXAMPLES_KEY])
        result, per_photo = report_of(answers, split, max_flagged_known)
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
        blessed = bless(artifact_utils.get_single_instance(output_dict[BLESSING_KEY]), model,
                        artifact_utils.get_single_instance(input_dict[MODEL_BLESSING_KEY]), result["gate"]["failures"])
        logging.info("Robustness: the model is %s.", "blessed" if blessed else "not blessed, so it will not be pushed")

    def classify(self, serving_model_dir: str, examples_uri: str, split: str, max_examples: int,
                 seed: int = SEED) -> List[Dict[str, Any]]:
        """The answers ({variant, position, label, name, prediction}) of the model, on the Beam runner, to the
        split's first `max_examples` photos as they are and under each corruption, and to the non-gem photos."""
        import tensorflow as tf
        from tfx.dsl.io import fileio

        from gemstone import inference

        staging = os.path.join(self._get_tmp_dir(), "robustness-answers")
        handler = KeyedModelHandler(inference.GemstoneModelHandler(serving_model_dir, max_batch_size=BATCH_SIZE))
        try:
            with self._make_beam_pipeline() as pipeline:
                photos = (pipeline
                          | "Split" >> beam.Create([split])
                          | "Read" >> beam.FlatMap(_read, examples_uri, max_examples)
                          | "Spread" >> beam.Reshuffle())
                non_gems = (pipeline
                            | "NotGemstones" >> beam.Create([NON_GEM])
                            | "Assemble" >> beam.FlatMap(_non_gem_photos))
                _ = ((photos | "Corrupt" >> beam.FlatMap(_versions, seed), non_gems)
                     | "Photos" >> beam.Flatten()
                     | "Classify" >> RunInference(handler)
                     | "Answers" >> beam.Map(_answer)
                     | "Write" >> beam.io.WriteToText(os.path.join(staging, "answers"), file_name_suffix=".jsonl"))
            return [json.loads(line) for path in sorted(tf.io.gfile.glob(os.path.join(staging, "answers*")))
                    for line in tf.io.gfile.GFile(path).read().splitlines() if line.strip()]
        finally:
            inference.release_shared_models()
            if fileio.exists(staging):
                fileio.rmtree(staging)
