"""The curated schemas and the family map: the project's data, shipped inside the package, found through it.

- `families.csv`: the mineral family of each variety (`variety,family`), read by
  gemstone/taxonomy.py; a gemmologist can correct it without touching code.
- `<pipeline-name>/schema.pbtxt`: the curated schema a pipeline of that name
  imports instead of inferring one (pipeline/configs.py). `curate.py` wrote
  them (`python -m gemstone.schema.curate`); they are reviewed and edited by hand.

This folder is the checkout's top-level `schema/`; `gemstone/schema` links to it, so it is the
package `gemstone.schema` too, and a wheel carries it (setup.py's package_data) with its code.
SCHEMA_DIR is the one place that says where: everything else asks it. (This module is part of
the ingestion code's fingerprint, through gemstone/taxonomy.py: it holds nothing else.)
"""
from pathlib import Path

# This package's folder: a folder on disk, also installed (wheels install unzipped), since
# ImportSchemaGen copies a curated schema from its path.
SCHEMA_DIR = Path(__file__).resolve().parent
FAMILY_MAP = SCHEMA_DIR / "families.csv"
