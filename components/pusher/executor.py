"""Pusher executor: TFX's, except that it does not push again the model the newest version already holds.

When nothing changed since a run that pushed a model, the Trainer's output comes
from the cache and is blessed again: TFX's Pusher would copy the same model into
a new version folder (tens of MB, and a running server swaps to the same model).
Here a blessed model is first compared with the newest version under the
serving folder, file by file; when that version holds it already, nothing is
pushed, and the PushedModel artifact says which version serves it
(contract.ALREADY_SERVING_VERSION_PROPERTY and _DESTINATION_PROPERTY; `pushed`
is 0, as TFX writes it for a model it did not push). A model an older version
holds is pushed again: making it the newest is a rollback, and a push.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, Iterator, List, Optional

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from gemstone import contract

PUSHED_MODEL_KEY = standard_component_specs.PUSHED_MODEL_KEY
PUSH_DESTINATION_KEY = standard_component_specs.PUSH_DESTINATION_KEY


def newest_version(base_directory: str) -> Optional[str]:
    """The newest complete version folder under a TF Serving base folder (the highest number), or None."""
    if not fileio.isdir(base_directory):
        return None
    names = [name.rstrip("/") for name in fileio.listdir(base_directory)]
    for name in sorted((n for n in names if n.isdigit()), key=int, reverse=True):
        if fileio.exists(os.path.join(base_directory, name, contract.SAVED_MODEL_FILE)):
            return os.path.join(base_directory, name)
    return None


def _relative_files(folder: str) -> Iterator[str]:
    for directory, _, files in fileio.walk(folder):
        for name in files:
            yield os.path.relpath(os.path.join(directory, name), folder)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with fileio.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def holds_model(version_dir: str, model_dir: str) -> bool:
    """Whether a version folder holds every file of the model, byte for byte (it may hold more: the model card)."""
    for name in _relative_files(model_dir):
        ours, theirs = os.path.join(model_dir, name), os.path.join(version_dir, name)
        if not fileio.exists(theirs) or fileio.stat(ours).length != fileio.stat(theirs).length:
            return False
        if _sha256(ours) != _sha256(theirs):
            return False
    return True


class Executor(tfx_pusher.Executor):
    """TFX's Pusher executor; a blessed model the newest version already holds is not pushed again."""

    def serving_version(self, input_dict: Dict[str, List[types.Artifact]],
                        exec_properties: Dict[str, Any]) -> Optional[str]:
        """The newest version folder, when it already holds the model; else None."""
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            return None
        newest = newest_version(destination.filesystem.base_directory)
        return newest if newest and holds_model(newest, self.GetModelPath(input_dict)) else None

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:  # noqa: N802 - TFX's name
        serving = self.serving_version(input_dict, exec_properties) if self.CheckBlessing(input_dict) else None
        if serving is None:
            super().Do(input_dict, output_dict, exec_properties)
            return
        pushed = artifact_utils.get_single_instance(output_dict[PUSHED_MODEL_KEY])
        self._MarkNotPushed(pushed)
        pushed.set_string_custom_property(contract.ALREADY_SERVING_VERSION_PROPERTY, os.path.basename(serving))
        pushed.set_string_custom_property(contract.ALREADY_SERVING_DESTINATION_PROPERTY, serving)
        logging.info("Pusher: version %s already holds this model: nothing pushed.", serving)
