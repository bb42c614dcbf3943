"""What the project sets up in TensorFlow: what `import gemstone` does before it loads (gemstone/__init__.py), checked
in a clean process, and the autograph rule modules/keras2.py adds."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def _sign(x):
    if x > 0:  # a Python `if` on a tensor: in a graph, only autograph's rewrite of it runs
        return x
    return -x


def test_autograph_leaves_keras_2s_code_as_it_is_and_converts_the_projects():
    """modules/keras2.py's rule, seen through `tf.function` alone: the same function, once as Keras 2's (its module
    is tf_keras) and once as the project's. Fails when TensorFlow stops reading the rule the module adds."""
    import types

    import tensorflow as tf
    import tf_keras  # noqa: F401 - the package the rule names, as autograph finds it

    from modules import keras2

    assert keras2.leave_keras_unconverted() is False  # added once, when modules/keras2.py was imported
    as_keras = types.FunctionType(_sign.__code__, _sign.__globals__, "_sign")
    as_keras.__module__ = keras2.PACKAGE

    assert float(tf.function(lambda x: _sign(x))(tf.constant(-2.0))) == 2.0  # converted: the `if` became graph code
    with pytest.raises(TypeError, match="Python `bool`"):  # left as it is: a tensor cannot be a Python bool
        tf.function(lambda x: as_keras(x))(tf.constant(-2.0))
