"""One direction of imports: applications -> pipeline/ -> components/ -> the data library and modules/ -> the contract.

Every import statement in the project's code counts, at module level or inside
a function: a function-level import is a dependency all the same. The unit tests
beside the code (`x_test.py`) keep to it too: a test of a layer imports that layer
and the ones below, never one above (that test belongs with the layer it needs).
Only tests/ may reach any layer.
"""
import ast
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("gemstone", "modules", "components", "pipeline", "bench")

# Layer of each part, bottom first. A module may import its own layer's part and the layers
# below it; the data library and modules/ share a layer and do not import each other.
LAYERS = {"contract": 0, "library": 1, "modules": 1, "components": 2, "pipeline": 3, "apps": 4, "bench": 5}


def part_of(module: str) -> Optional[str]:
    """The architectural part a dotted module name belongs to, or None for third-party code."""
    top = module.split(".")[0]
    if top == "gemstone":
        if module in ("gemstone", "gemstone.contract"):
            return "contract"
        return "apps" if module.startswith("gemstone.apps") else "library"
    return top if top in PACKAGES else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, imported module) of every import in a file, at any depth."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                # `from gemstone import serve` imports the module gemstone.serve when there is one.
                yield node.lineno, f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base


def _is_module(dotted: str) -> bool:
    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_test(path: Path) -> bool:
    return path.name.endswith("_test.py") or path.name.startswith("test_") or path.name == "conftest.py"


def project_files() -> List[Path]:
    """The project's code; tests are left out (see unit_test_files)."""
    return [path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py")) if not _is_test(path)]


def unit_test_files() -> List[Path]:
    """The unit tests beside the code (tests/ is not among PACKAGES: it may reach any layer to check it)."""
    return [path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py")) if _is_test(path)]


def violations(files: List[Path], sideways: bool = False) -> List[str]:
    """Imports of a layer above the importer's, or of its own layer's other part (the data library and modules/
    do not import each other), unless `sideways`: a test of one may use the other to check it."""
    found = []
    for path in files:
        importer = part_of(module_name(path))
        for line, imported in imports_of(path):
            target = part_of(imported)
            if target is None or target == importer:
                continue
            if LAYERS[target] > LAYERS[importer] or (LAYERS[target] == LAYERS[importer] and not sideways):
                found.append(f"{path.relative_to(REPO)}:{line} ({importer}) imports {imported} ({target})")
    return found


def part_graph(files: List[Path]) -> Dict[str, set]:
    graph: Dict[str, set] = {}
    for path in files:
        importer = part_of(module_name(path))
        for _, imported in imports_of(path):
            target = part_of(imported)
            if target and target != importer:
                graph.setdefault(importer, set()).add(target)
    return graph


def cycles(graph: Dict[str, set]) -> List[List[str]]:
    found, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_goes_against_the_layers():
    assert violations(project_files()) == []


def test_no_unit_test_beside_the_code_imports_a_layer_above_it():
    """E.g. a component's test building the whole pipeline: that is the pipeline's test (pipeline/dag_test.py)."""
    assert violations(unit_test_files(), sideways=True) == []


def test_no_import_loop_between_parts():
    assert cycles(part_graph(project_files())) == []


def test_the_check_sees_function_level_and_upward_imports(tmp_path, monkeypatch):
    """The checker itself: an upward import inside a function is caught, a downward one is not."""
    fake = tmp_path / "components" / "fake"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "component.py").write_text(
        "from gemstone import contract\n"  # down: allowed
        "def f():\n"
        "    from pipeline import configs\n"  # up, and hidden in a function
        "    import gemstone.apps.serve\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    found = violations([fake / "component.py"])
    assert [v.split(" imports ")[1] for v in found] == ["pipeline (pipeline)", "gemstone.apps.serve (apps)"]
    # A test beside the code: up is refused there too; sideways (library <-> modules) is not.
    (fake / "component_test.py").write_text("from pipeline import dag\nfrom modules import model\n")
    (tmp_path / "gemstone").mkdir()
    (tmp_path / "gemstone" / "images_test.py").write_text("from modules import model\nfrom gemstone.apps import cli\n")
    tests = [fake / "component_test.py", tmp_path / "gemstone" / "images_test.py"]
    assert [v.split(" imports ")[1] for v in violations(tests, sideways=True)] == [
        "pipeline (pipeline)", "gemstone.apps (apps)"]
    assert cycles({"a": {"b"}, "b": {"a"}}) and not cycles({"a": {"b"}, "b": set()})


@pytest.mark.parametrize("module, part", [
    ("gemstone.contract", "contract"), ("gemstone.images", "library"), ("gemstone.apps.cli", "apps"),
    ("modules.trainer", "modules"), ("tensorflow", None)])
def test_parts(module, part):
    assert part_of(module) == part
