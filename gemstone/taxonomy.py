"""Mineral family of each gemstone variety (the upper level of the label hierarchy).

The map is project data, `schema/families.csv` (columns `variety,family`), so a
gemmologist can correct it without touching code. Lookups ignore case and
surrounding whitespace because folder names on real collections vary.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, Optional, Union

from gemstone.schema import FAMILY_MAP as DEFAULT_FAMILY_MAP
UNKNOWN_FAMILY = "Unknown"


def _normalise(name: str) -> str:
    return " ".join(name.split()).casefold()


def load_family_map(path: Optional[Union[str, Path]] = None) -> Dict[str, str]:
    """Reads `variety,family` rows into {variety: family}; rejects a malformed file loudly."""
    path = Path(path) if path else DEFAULT_FAMILY_MAP
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"variety", "family"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected a header 'variety,family', got {reader.fieldnames}")
        family_map: Dict[str, str] = {}
        for line_number, row in enumerate(reader, start=2):
            variety, family = (row["variety"] or "").strip(), (row["family"] or "").strip()
            if not variety or not family:
                raise ValueError(f"{path}:{line_number}: empty variety or family")
            if _normalise(variety) in {_normalise(v) for v in family_map}:
                raise ValueError(f"{path}:{line_number}: variety {variety!r} listed twice")
            family_map[variety] = family
    return family_map


def family_of(label: str, family_map: Dict[str, str], default: str = UNKNOWN_FAMILY) -> str:
    """The family of `label`, matching case- and whitespace-insensitively; `default` if unlisted."""
    wanted = _normalise(label)
    for variety, family in family_map.items():
        if _normalise(variety) == wanted:
            return family
    return default
