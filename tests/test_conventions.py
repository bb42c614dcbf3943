"""The test suite's own conventions: tests sit beside what they test, and every test asserts something."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = ("gemstone", "components", "modules", "pipeline", "bench")


def _test_files():
    for package in CODE + ("tests",):
        for path in sorted((REPO / package).rglob("*.py")):
            if path.name.startswith("test_") or path.name.endswith("_test.py"):
                yield path


def _tests(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            yield node


def _asserts(node: ast.FunctionDef) -> bool:
    """An assert statement, an `assert_*` call (numpy.testing), or `pytest.raises` / `fail` / `warns`."""
    for child in ast.walk(node):
        if isinstance(child, ast.Assert):
            return True
        if isinstance(child, ast.Attribute) and (child.attr in ("raises", "fail", "warns")
                                                 or child.attr.startswith("assert_")):
            return True
    return False


def test_every_test_asserts_something():
    silent = [f"{path.relative_to(REPO)}::{node.name}" for path in _test_files() for node in _tests(path)
              if not _asserts(node)]
    assert silent == []


def test_unit_tests_sit_beside_the_module_they_test():
    """`x_test.py` next to `x.py`; tests/ is only for the end-to-end and cross-cutting tests (`test_*.py`)."""
    astray = []
    for path in _test_files():
        if path.parent == REPO / "tests":
            if not path.name.startswith("test_"):
                astray.append(str(path.relative_to(REPO)))
        elif not path.name.endswith("_test.py") or not (path.parent / path.name.replace("_test.py", ".py")).is_file():
            astray.append(str(path.relative_to(REPO)))
    assert astray == []


def test_the_checks_can_fail(tmp_path):
    silent = tmp_path / "silent_test.py"
    silent.write_text("def test_nothing():\n    x = 1\n\ndef test_raises():\n    with pytest.raises(ValueError):\n        f()\n"
                      "\ndef test_close():\n    np.testing.assert_allclose(1, 1)\n")
    assert [_asserts(node) for node in _tests(silent)] == [False, True, True]
