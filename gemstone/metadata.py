"""Reading a pipeline's ML Metadata (MLMD) store: executions, their outcome and timing."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from gemstone import paths

_STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


@dataclasses.dataclass(frozen=True)
class ExecutionRecord:
    id: int
    component: str  # the TFX node id, e.g. "Trainer"
    state: str  # COMPLETE, CACHED, FAILED, RUNNING, ...
    started: float  # seconds since the epoch
    finished: float

    @property
    def seconds(self) -> float:
        return max(0.0, self.finished - self.started)


def open_store(pipeline_name: str, home: Optional[str] = None) -> metadata_store.MetadataStore:
    path = Path(paths.metadata_path(pipeline_name, home))
    if not path.exists():
        raise FileNotFoundError(f"no metadata for pipeline '{pipeline_name}' at {path}: has it run?")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def executions(store: metadata_store.MetadataStore) -> List[ExecutionRecord]:
    """Every component execution, oldest first."""
    # An execution's type is the component class, e.g. "tfx.components.trainer.component.Trainer".
    type_names = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    records = []
    for e in sorted(store.get_executions(), key=lambda e: e.id):
        records.append(ExecutionRecord(
            id=e.id, component=type_names.get(e.type_id, str(e.type_id)), state=_STATE_NAMES.get(e.last_known_state, "UNKNOWN"),
            started=e.create_time_since_epoch / 1000.0, finished=e.last_update_time_since_epoch / 1000.0))
    return records
