"""Running the real tfx CLI from tests (used by the root conftest.py and the end-to-end tests)."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TFX = str(Path(sys.executable).parent / "tfx")
E2E_PIPELINE = "e2e-test"


def tfx_cli(env, *args, check=True):
    result = subprocess.run([TFX, *args], cwd=REPO / "pipeline", env=env, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, \
            f"tfx {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result
