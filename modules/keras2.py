"""Keras 2 (tf_keras) left as it is by TensorFlow's autograph, as Keras always was.

Autograph rewrites the Python code a `tf.function` calls, except the packages it
knows to be graph-ready. Its list names `keras` but not `tf_keras`, the Keras 2
that TFX 1.16 needs, so every trace of a Keras 2 model (each `fit`, `predict`,
`save`, export signature, TFLite conversion) first rewrote Keras' own code.
Measured on the small CNN: its first `fit` took 52 s instead of 9.5 s, `predict`
2.1 s instead of 0.3 s, the export signatures 56 s instead of 0.9 s.

Importing this module adds the missing rule. modules/model.py imports it:
every model the project trains, exports or converts is built there.

A private API, on purpose, and only here: TensorFlow has no public way to say
"leave this package alone" (`tf.autograph.experimental.do_not_convert` marks one
function of one's own, not a library's), and autograph reads its rules from this
module-level tuple of its private `config` module. When TensorFlow moves or
drops it, the import below fails; when it stops reading it (or names tf_keras
itself), tests/test_tensorflow_settings.py says so: it checks through `tf.function`
alone that Keras 2's code runs as it is and the project's own code is converted.
"""
import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

from tensorflow.python.autograph.core import config as _autograph_config  # noqa: E402

PACKAGE = "tf_keras"


def leave_keras_unconverted() -> bool:
    """Puts `tf_keras` beside `keras` among the packages autograph does not convert; False when it already is."""
    rules = _autograph_config.CONVERSION_RULES
    if any(isinstance(rule, _autograph_config.DoNotConvert) and rule.matches(PACKAGE) for rule in rules):
        return False
    _autograph_config.CONVERSION_RULES = (_autograph_config.DoNotConvert(PACKAGE),) + tuple(rules)
    return True


leave_keras_unconverted()
