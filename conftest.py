"""Shared test setup: Keras 2 before TensorFlow loads, and where the real photos are."""
import os

import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# GEMSTONE_REAL_DATA points elsewhere when the checkout is not beside shared/.
REAL_DATA = Path(os.environ.get("GEMSTONE_REAL_DATA") or Path(__file__).resolve().parents[1] / "shared" / "data" / "gemstones-88")


@pytest.fixture
def real_data() -> Path:
    """The real 88-class photos, or a visible skip when this machine lacks them."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real photos not found at {REAL_DATA}")
    return REAL_DATA
