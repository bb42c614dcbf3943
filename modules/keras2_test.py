"""modules/keras2: autograph leaves Keras 2's own code as it is."""
import tf_keras as keras
from tensorflow.python.autograph.core import config as autograph_config
from tensorflow.python.autograph.impl import conversion

from modules import keras2


def test_autograph_does_not_rewrite_keras2():
    assert conversion.is_allowlisted(keras.layers.Dense.call)
    assert conversion.is_allowlisted(keras.Model.fit)


def test_the_rule_is_added_once():
    keras2.leave_keras_unconverted()
    keras2.leave_keras_unconverted()
    rules = [r for r in autograph_config.CONVERSION_RULES
             if isinstance(r, autograph_config.DoNotConvert) and r.matches(keras2.PACKAGE)]
    assert len(rules) == 1
