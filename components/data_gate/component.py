"""DataGate: stops the run, with a readable message, when ExampleValidator did not bless the data.

ExampleValidator records its verdict per split on its anomalies artifact (the
`blessed` custom property: {split: 1 or 0}; 0 when the split has any anomaly)
but lets the pipeline go on; a model trained on examples with unknown labels or
missing images should not be. Transform waits for this gate, so nothing
downstream runs on bad data. The message lists every anomaly of the splits
that were not blessed.
"""

import os
from typing import Dict, List

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_validator import executor as example_validator
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

BLESSED_KEY = example_validator.ARTIFACT_PROPERTY_BLESSED_KEY  # 'blessed'


class DataAnomaliesError(RuntimeError):
    """Raised to fail the run; the message lists every anomaly per split."""


def verdict(anomalies: standard_artifacts.ExampleAnomalies) -> Dict[str, bool]:
    """{split: blessed} as ExampleValidator recorded it; empty when it recorded no verdict.

    Read back from ML Metadata the values are floats (1.0 / 0.0): compared as numbers.
    """
    recorded = anomalies.get_json_value_custom_property(BLESSED_KEY) if anomalies.has_custom_property(
        BLESSED_KEY) else None
    if not isinstance(recorded, dict):
        return {}
    return {split: value == example_validator.BLESSED_VALUE for split, value in recorded.items()}


def read_anomalies(anomalies: standard_artifacts.ExampleAnomalies, split: str) -> anomalies_pb2.Anomalies:
    """The anomalies ExampleValidator wrote for `split` (what it found, to say why)."""
    path = os.path.join(artifact_utils.get_split_uri([anomalies], split), example_validator.DEFAULT_FILE_NAME)
    return anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))


def describe(per_split: Dict[str, anomalies_pb2.Anomalies]) -> List[str]:
    """One line per anomaly: split, feature, what is wrong."""
    lines = []
    for split, anomalies in sorted(per_split.items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            lines.append(f"split '{split}', feature '{feature}': {info.short_description}. {info.description}".strip())
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            lines.append(f"split '{split}': {info.short_description}. {info.description}".strip())
    return lines


def problems(anomalies: standard_artifacts.ExampleAnomalies) -> List[str]:
    """Why the data is refused, one line each; empty when ExampleValidator blessed every split it checked."""
    blessed = verdict(anomalies)
    if not blessed:
        if not artifact_utils.decode_split_names(anomalies.split_names):
            return []  # every split excluded: nothing was validated, as ExampleValidator then records nothing
        return [f"ExampleValidator recorded no '{BLESSED_KEY}' verdict on its anomalies artifact ({anomalies.uri})"]
    lines = []
    for split in sorted(s for s, ok in blessed.items() if not ok):
        found = describe({split: read_anomalies(anomalies, split)})
        lines += found or [f"split '{split}': not blessed by ExampleValidator"]
    return lines


@component
def DataGate(anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],  # noqa: N802 - TFX names components so
             fail_on_anomalies: Parameter[int] = 1):
    """Fails when ExampleValidator did not bless a split (unless fail_on_anomalies is 0: then it only logs)."""
    from absl import logging

    lines = problems(anomalies)
    if not lines:
        logging.info("DataGate: ExampleValidator blessed every split: no anomalies.")
        return
    message = ("The data does not match the schema, so the run stops before training:\n  " + "\n  ".join(lines)
               + "\nFix the data, or review and edit the curated schema if the change is intended.")
    if fail_on_anomalies:
        raise DataAnomaliesError(message)
    logging.warning("DataGate (not enforced): %s", message)
