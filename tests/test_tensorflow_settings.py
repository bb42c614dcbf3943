"""What `import gemstone` sets up before TensorFlow loads (gemstone/__init__.py), checked in a clean process."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import gemstone
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port
print(tf.keras.__name__.split(".")[0], _pywrap_util_port.IsMklEnabled())
"""


def test_importing_gemstone_first_gives_keras_2_and_onednn_kernels():
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "TF_ENABLE_ONEDNN_OPTS")}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["tf_keras", "True"]


def test_a_users_onednn_choice_is_kept():
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "False"
