"""ImportSchemaGen: an edited schema is imported again, an unchanged one is taken from the cache.

(The pipeline gives it the schema's sha256: pipeline/dag_test.py.)
"""
import hashlib

from components.import_schema_gen import component
from gemstone.schema import SCHEMA_DIR


def test_the_local_orchestrator_reimports_an_edited_schema_and_caches_an_unchanged_one(tmp_path):
    from tfx import v1 as tfx

    schema = tmp_path / "schema.pbtxt"
    original = (SCHEMA_DIR / "gemstone-demo" / "schema.pbtxt").read_bytes()
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(tmp_path / "metadata.db"))

    def run(content):
        schema.write_bytes(content)
        schema_gen = component.ImportSchemaGen(schema_file=str(schema), schema_sha256=hashlib.sha256(content).hexdigest())
        tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
            pipeline_name="schema-cache", pipeline_root=str(tmp_path / "root"), components=[schema_gen],
            enable_cache=True, metadata_connection_config=metadata))
        return sorted((tmp_path / "root" / "ImportSchemaGen" / "schema").glob("*/schema.pbtxt"))

    assert len(run(original)) == 1
    assert len(run(original)) == 1  # unchanged: taken from the cache
    edited = original.replace(b"max: 1024", b"max: 2048", 1)
    imported = run(edited)
    assert len(imported) == 2 and edited in [p.read_bytes() for p in imported]
