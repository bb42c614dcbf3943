"""Manifests: a .csv or .jsonl file listing a collection's photos, one row a photo (path, label and more).

The one reader of the format: the pipeline's ingestion (gemstone.ingestion)
reads every row, the command line's checks (gemstone.apps.checks) only the
columns. Standard library only: the checks answer before TensorFlow loads.

A .csv has a header line naming the columns; a .jsonl has one JSON object a
line (blank lines are skipped). Either may start with a byte-order mark.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator, List, TextIO, Tuple

SUFFIXES = (".csv", ".jsonl")
# The columns every manifest must have.
REQUIRED_COLUMNS = ("path", "label")
# Columns that have a meaning of their own; any other column is carried into the tf.Example as a string attribute.
RESERVED_COLUMNS = ("path", "label", "family", "stone_id")


def _open(manifest: Path) -> TextIO:
    return open(manifest, newline="", encoding="utf-8-sig")


def _is_json_lines(manifest: Path) -> bool:
    return manifest.suffix.lower() == ".jsonl"


def _json_lines(f: TextIO) -> Iterator[Tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line. A line that is not JSON raises json's own
    JSONDecodeError, with the file's line number added as its `line_number`."""
    for line_number, line in enumerate(f, start=1):
        if line.strip():
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                e.line_number = line_number
                raise
            yield line_number, value


def rows(manifest: Path) -> Iterator[Tuple[int, Any]]:
    """(line number, row) of every row: a CSV line as a dict keyed by the header (line 1), a JSON line as parsed."""
    with _open(manifest) as f:
        if _is_json_lines(manifest):
            yield from _json_lines(f)
        else:
            yield from enumerate(csv.DictReader(f), start=2)


def columns(manifest: Path) -> List[str]:
    """The columns a manifest names: the CSV header, or the keys of the first JSON line."""
    with _open(manifest) as f:
        if _is_json_lines(manifest):
            for _, row in _json_lines(f):
                return [str(k).strip() for k in row] if isinstance(row, dict) else []
            return []
        return [c.strip() for c in next(csv.reader(f), [])]
