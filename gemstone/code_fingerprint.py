"""The fingerprint of a piece of the project's code: a sha256 that moves exactly when that code does.

TFX reuses a component's cached result when its inputs and exec properties are
unchanged; it cannot see that the code the component runs changed. So each
component that runs project code carries, as an exec property, a sha256 over
the source of its entry module and of every project module it imports
(followed transitively through `import` statements, including those inside
functions), plus the data files that code reads. Editing any of them
invalidates the cache; editing anything else does not.

The hash covers each file's path relative to the project root and its content
(line endings normalised), never absolute paths or modification times, so two
checkouts of the same commit on different machines agree. It is computed when
the pipeline is built (for Kubeflow: on the machine that compiles it).
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from gemstone.paths import REPO_ROOT as ROOT
# Top-level packages of this project: imports of anything else (TFX, Beam, Pillow...) are not followed.
PROJECT_PACKAGES = ("components", "gemstone", "modules")


def _module_file(root: Path, dotted: str) -> Optional[Path]:
    """The project file a dotted module name is, or None (not the project's, or not a module)."""
    parts = dotted.split(".")
    if parts[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, root: Path) -> Iterable[Path]:
    """Project modules that `path` imports, anywhere in the file.

    `from pkg import name` counts as the submodule `pkg.name` when there is one,
    else as `pkg` itself (a package's __init__ is included only when something
    is imported from it, not merely because a submodule lives in it).
    """
    package = path.relative_to(root).parent.parts
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found = _module_file(root, alias.name)
                if found:
                    yield found
        elif isinstance(node, ast.ImportFrom):
            prefix = package[:len(package) - node.level + 1] if node.level else ()
            base = ".".join(prefix + ((node.module,) if node.module else ()))
            for alias in node.names:
                found = _module_file(root, f"{base}.{alias.name}") or _module_file(root, base)
                if found:
                    yield found


def code_files(entry: Path, root: Path = ROOT, data_files: Sequence[Path] = ()) -> List[Path]:
    """`entry` (relative to `root`), the project modules it imports transitively, and `data_files`; sorted."""
    seen, todo = set(), [root / entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_imported_modules(path, root))
    return sorted({p.relative_to(root) for p in seen} | set(data_files), key=lambda p: p.as_posix())


def fingerprint(files: Iterable[Path], root: Path) -> str:
    """sha256 over each file's relative path and content (CRLF read as LF), in path order."""
    digest = hashlib.sha256()
    for rel in sorted(files, key=lambda p: Path(p).as_posix()):
        content = (root / rel).read_bytes().replace(b"\r\n", b"\n")
        for part in (Path(rel).as_posix().encode(), str(len(content)).encode(), content):
            digest.update(part + b"\0")
    return digest.hexdigest()


def code_fingerprint(entry: Path, root: Path = ROOT, data_files: Sequence[Path] = ()) -> str:
    """The fingerprint of `entry`'s code (see `code_files`) under `root`."""
    return fingerprint(code_files(entry, root, data_files), root)
