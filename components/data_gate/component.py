"""DataGate: stops the run, with a readable message, when ExampleValidator found anomalies.

ExampleValidator records anomalies but lets the pipeline go on; a model trained
on examples with unknown labels or missing images should not be. Transform
waits for this gate, so nothing downstream runs on bad data.
"""

import os
from typing import Dict, List

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

ANOMALIES_FILE = "SchemaDiff.pb"


class DataAnomaliesError(RuntimeError):
    """Raised to fail the run; the message lists every anomaly per split."""


def read_anomalies(anomalies: standard_artifacts.ExampleAnomalies) -> Dict[str, anomalies_pb2.Anomalies]:
    result = {}
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(anomalies.uri, f"Split-{split}", ANOMALIES_FILE)
        result[split] = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
    return result


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


@component
def DataGate(anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],  # noqa: N802 - TFX names components so
             fail_on_anomalies: Parameter[int] = 1):
    """Fails when `anomalies` holds any anomaly (unless fail_on_anomalies is 0: then it only logs)."""
    from absl import logging

    lines = describe(read_anomalies(anomalies))
    if not lines:
        logging.info("DataGate: no anomalies.")
        return
    message = ("The data does not match the schema, so the run stops before training:\n  " + "\n  ".join(lines)
               + "\nFix the data, or review and edit the curated schema if the change is intended.")
    if fail_on_anomalies:
        raise DataAnomaliesError(message)
    logging.warning("DataGate (not enforced): %s", message)
