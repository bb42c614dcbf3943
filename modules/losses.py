"""The training loss the heads share: cross-entropy of logits against integer labels, smoothed.

Registered for Keras' serialisation: a compiled model's loss is rebuilt on load.
"""
import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402


@keras.saving.register_keras_serializable(package="gemstone")  # a compiled model's loss, rebuilt on load
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy of logits against integer labels smoothed towards uniform (Keras' own smoothing
    needs one-hot labels): the target is 1 - s on the label and s / classes on every class."""

    def __init__(self, label_smoothing: float, name: str = "smoothed_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        one_hot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), tf.shape(y_pred)[-1])
        return keras.losses.categorical_crossentropy(one_hot, y_pred, from_logits=True,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
