"""The smoothed cross-entropy: a share of the label spread over every class, rebuilt from its config."""
import numpy as np
import tensorflow as tf
import tf_keras as keras

from modules import losses


def test_smoothed_crossentropy_moves_a_share_of_the_label_to_every_class():
    logits = tf.constant([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]])
    labels = tf.constant([0, 2])
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    np.testing.assert_allclose(losses.SmoothedSparseCrossentropy(0.0)(labels, logits), plain, rtol=1e-6)
    log_p = tf.nn.log_softmax(logits).numpy()
    target = np.full((2, 3), 0.1 / 3)
    target[[0, 1], [0, 2]] += 0.9
    expected = -(target * log_p).sum(axis=1).mean()
    np.testing.assert_allclose(losses.SmoothedSparseCrossentropy(0.1)(labels, logits), expected, rtol=1e-6)
    rebuilt = keras.losses.deserialize(keras.losses.serialize(losses.SmoothedSparseCrossentropy(0.1)))
    np.testing.assert_allclose(rebuilt(labels, logits), expected, rtol=1e-6)  # as Keras reloads a compiled model
