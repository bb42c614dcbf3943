"""The fingerprint of the code that decides ImageExampleGen's examples: part of its cache key.

The executor, every project module it imports, and the data files ingestion
reads (the variety -> family map): see gemstone/code_fingerprint.py for how
it is taken and why.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

from gemstone import code_fingerprint, taxonomy
from gemstone.code_fingerprint import ROOT

ENTRY = Path("components", "image_example_gen", "executor.py")
# Data the ingestion code reads: the variety -> family map (taxonomy.DEFAULT_FAMILY_MAP), the `family` feature.
DATA_FILES = (taxonomy.DEFAULT_FAMILY_MAP.relative_to(ROOT),)


def ingestion_files(root: Path = ROOT) -> List[Path]:
    """The files whose content decides the examples, relative to `root`, sorted."""
    return code_fingerprint.code_files(ENTRY, root, DATA_FILES)


def ingestion_fingerprint(root: Path = ROOT) -> str:
    """The fingerprint of ImageExampleGen's ingestion code and data under `root`."""
    return code_fingerprint.code_fingerprint(ENTRY, root, DATA_FILES)
