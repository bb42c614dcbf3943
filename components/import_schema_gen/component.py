"""ImportSchemaGen: TFX's (same executor, same id), with the schema file's content hash as an exec property.

ImportSchemaGen's cache key has the file's path, not its content: without
the hash, an edited schema would be ignored in favour of the cached import.
The executor copies the file into the Schema artifact, which is the
snapshot of the schema this run used.

TFX's ImportSchemaGen adds nothing to BaseComponent but its spec, its executor
and an __init__ that builds its own spec; this one is a BaseComponent with the
wider spec and the same executor, so it calls its parent's __init__ as is.
"""
from __future__ import annotations

from tfx import types
from tfx.components.schema_gen.import_schema_gen import component as import_schema_gen
from tfx.dsl.components.base import base_component
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

SCHEMA_SHA256_KEY = "schema_sha256"


class ImportSchemaGenSpec(standard_component_specs.ImportSchemaGenSpec):
    """TFX's ImportSchemaGen parameters plus the schema's sha256 (a cache key only: the executor does not read it)."""

    PARAMETERS = {
        **standard_component_specs.ImportSchemaGenSpec.PARAMETERS,
        SCHEMA_SHA256_KEY: ExecutionParameter(type=str),
    }


class ImportSchemaGen(base_component.BaseComponent):
    """Imports a curated schema file into the pipeline; re-imports it when its content changes."""

    SPEC_CLASS = ImportSchemaGenSpec
    EXECUTOR_SPEC = import_schema_gen.ImportSchemaGen.EXECUTOR_SPEC  # TFX's: copies the file into the artifact

    def __init__(self, schema_file: str, schema_sha256: str):
        spec = ImportSchemaGenSpec(schema_file=schema_file, schema_sha256=schema_sha256,
                                   schema=types.Channel(type=standard_artifacts.Schema))
        super().__init__(spec=spec)
