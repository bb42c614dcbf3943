"""The ingestion code's fingerprint: what it covers, and that it moves exactly when that code does."""
import shutil
from pathlib import Path

import pytest

from components.image_example_gen import component, executor, fingerprint
from gemstone import contract, data_report, image_stats, images, ingestion, manifests, schema, splits, taxonomy

# Files that are not ingestion code: editing them must leave the cache alone.
UNRELATED = [Path("components", "image_example_gen", "component.py"), Path("gemstone", "apps", "cli.py"),
             Path("gemstone", "__init__.py"), Path("pipeline", "dag.py"), Path("modules", "trainer.py")]


def _rel(module):
    """The module's file relative to the project root, as its import names it (gemstone/schema links to schema/)."""
    parts = module.__name__.split(".")
    return Path(*parts, "__init__.py") if hasattr(module, "__path__") else Path(*parts[:-1], parts[-1] + ".py")


def _copy(files, dest):
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fingerprint.ROOT / rel, dest / rel)
    return dest


@pytest.fixture
def checkout(tmp_path):
    """Another checkout of the ingestion code (and a few unrelated files), somewhere else."""
    return _copy(fingerprint.ingestion_files() + UNRELATED, tmp_path / "elsewhere")


def test_it_covers_the_executor_what_it_imports_within_the_project_and_the_family_map():
    expected = {_rel(m) for m in (executor, ingestion, manifests, images, splits, taxonomy, image_stats, data_report,
                                  contract, schema)}
    expected.add(taxonomy.DEFAULT_FAMILY_MAP.resolve().relative_to(fingerprint.ROOT))
    assert set(fingerprint.ingestion_files()) == expected


def test_another_checkout_of_the_same_code_has_the_same_fingerprint(checkout):
    assert fingerprint.ingestion_fingerprint(checkout) == fingerprint.ingestion_fingerprint()
    # Line endings as a Windows checkout writes them do not change it either.
    path = checkout / "gemstone" / "splits.py"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert fingerprint.ingestion_fingerprint(checkout) == fingerprint.ingestion_fingerprint()


def test_one_byte_changed_in_any_ingestion_file_changes_it(checkout):
    before = fingerprint.ingestion_fingerprint(checkout)
    seen = {before}
    for rel in fingerprint.ingestion_files(checkout):
        path = checkout / rel
        original = path.read_bytes()
        # In a module, a byte of its docstring (the file must still parse: imports are read from it).
        i = original.index(b'"""') + 3 if rel.suffix == ".py" else 0
        path.write_bytes(original[:i] + bytes([original[i] ^ 1]) + original[i + 1:])
        changed = fingerprint.ingestion_fingerprint(checkout)
        assert changed not in seen, rel
        seen.add(changed)
        path.write_bytes(original)
        assert fingerprint.ingestion_fingerprint(checkout) == before, rel


def test_editing_other_code_leaves_it_alone(checkout):
    before = fingerprint.ingestion_fingerprint(checkout)
    for rel in UNRELATED:
        with open(checkout / rel, "a") as f:
            f.write("\n# an edit that does not touch ingestion\n")
    assert fingerprint.ingestion_fingerprint(checkout) == before


def test_a_module_newly_imported_by_ingestion_code_is_covered(checkout):
    (checkout / "gemstone" / "exif.py").write_text("ORIENTATION = 274\n")
    with open(checkout / "gemstone" / "images.py", "a") as f:
        f.write("\n\ndef _orientation():\n    from gemstone.exif import ORIENTATION\n    return ORIENTATION\n")
    assert Path("gemstone", "exif.py") in fingerprint.ingestion_files(checkout)
    before = fingerprint.ingestion_fingerprint(checkout)
    (checkout / "gemstone" / "exif.py").write_text("ORIENTATION = 0x0112\n")
    assert fingerprint.ingestion_fingerprint(checkout) != before


def test_the_component_carries_it_as_an_exec_property():
    gen = component.ImageExampleGen(input_base="/data")
    value = gen.exec_properties[executor.INGESTION_CODE_KEY]
    assert value == fingerprint.ingestion_fingerprint()
    assert len(value) == 64 and set(value) <= set("0123456789abcdef")
