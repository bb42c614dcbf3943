"""ImportSchemaGen: an edited schema is imported again, an unchanged one is taken from the cache."""
from components.import_schema_gen import component
from pipeline import configs


def test_the_local_orchestrator_reimports_an_edited_schema_and_caches_an_unchanged_one(tmp_path):
    from tfx import v1 as tfx

    schema = tmp_path / "schema.pbtxt"
    original = (configs.SCHEMA_DIR / "gemstone-demo" / "schema.pbtxt").read_bytes()
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(tmp_path / "metadata.db"))

    def run(content):
        schema.write_bytes(content)
        config = configs.PipelineConfig(home=str(tmp_path), data=str(tmp_path), backbone="none",
                                        schema_path=str(schema))
        schema_gen = component.ImportSchemaGen(schema_file=config.schema_path, schema_sha256=config.schema_sha256)
        tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
            pipeline_name="schema-cache", pipeline_root=str(tmp_path / "root"), components=[schema_gen],
            enable_cache=True, metadata_connection_config=metadata))
        return sorted((tmp_path / "root" / "ImportSchemaGen" / "schema").glob("*/schema.pbtxt"))

    assert len(run(original)) == 1
    assert len(run(original)) == 1  # unchanged: taken from the cache
    edited = original.replace(b"max: 1024", b"max: 2048", 1)
    imported = run(edited)
    assert len(imported) == 2 and edited in [p.read_bytes() for p in imported]
