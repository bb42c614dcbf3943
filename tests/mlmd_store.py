"""ML Metadata as TFX leaves it, written by hand for tests: artifacts, and executions of pipeline nodes.

Each execution is attributed to its pipeline's context and its node's context (`<pipeline>.<node id>`),
with input and output events keyed as TFX keys them: what gemstone/apps/metadata.py reads.
"""
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from gemstone.apps import metadata

COMPLETE = metadata_store_pb2.Execution.COMPLETE
CACHED = metadata_store_pb2.Execution.CACHED


def store(path: Path) -> metadata_store.MetadataStore:
    """A writable SQLite store at `path` (created with its folder)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    return metadata_store.MetadataStore(config)


def artifact(mlmd, type_name: str, uri: str, **int_properties) -> int:
    """A bare artifact of `type_name` with integer custom properties; its id."""
    type_id = mlmd.put_artifact_type(metadata_store_pb2.ArtifactType(name=type_name))
    record = metadata_store_pb2.Artifact(type_id=type_id, uri=uri)
    for key, value in int_properties.items():
        record.custom_properties[key].int_value = value
    return mlmd.put_artifacts([record])[0]


def published(mlmd, tfx_artifact) -> int:
    """A TFX Artifact as TFX publishes it (its type and properties, LIVE, the TFX version that wrote it); its id."""
    from tfx import version
    from tfx.types import artifact_utils

    tfx_artifact.set_string_custom_property(artifact_utils.ARTIFACT_TFX_VERSION_CUSTOM_PROPERTY_KEY,
                                            version.__version__)
    record = metadata_store_pb2.Artifact()
    record.CopyFrom(tfx_artifact.mlmd_artifact)
    record.type_id = mlmd.put_artifact_type(tfx_artifact.artifact_type)
    record.state = metadata_store_pb2.Artifact.LIVE
    return mlmd.put_artifacts([record])[0]


def _context(mlmd, kind: str, name: str) -> int:
    type_id = mlmd.put_context_type(metadata_store_pb2.ContextType(name=kind))
    found = mlmd.get_context_by_type_and_name(kind, name)
    return found.id if found else mlmd.put_contexts([metadata_store_pb2.Context(type_id=type_id, name=name)])[0]


def execution(mlmd, pipeline: str, component: str, state, inputs=(), outputs=(), component_class=None) -> int:
    """One execution of the node `component` (of `component_class`, by default its namesake) of `pipeline`, with
    (key, artifact id) input and output events, attributed to its pipeline and node contexts as TFX does."""
    type_name = f"tfx.components.{component_class or component}"
    type_id = mlmd.put_execution_type(metadata_store_pb2.ExecutionType(name=type_name))
    [execution_id] = mlmd.put_executions([metadata_store_pb2.Execution(type_id=type_id, last_known_state=state)])
    for kind, name in ((metadata.PIPELINE_CONTEXT, pipeline), (metadata.NODE_CONTEXT, f"{pipeline}.{component}")):
        mlmd.put_attributions_and_associations(
            [], [metadata_store_pb2.Association(context_id=_context(mlmd, kind, name), execution_id=execution_id)])
    events = []
    for kind, pairs in ((metadata_store_pb2.Event.INPUT, inputs), (metadata_store_pb2.Event.OUTPUT, outputs)):
        for key, artifact_id in pairs:
            event = metadata_store_pb2.Event(artifact_id=artifact_id, execution_id=execution_id, type=kind)
            event.path.steps.add().key = key
            events.append(event)
    mlmd.put_events(events)
    return execution_id
