"""The shipping benchmark's FLOP count, on a network whose FLOPs are known."""
import pytest

from bench import shipping


def test_flops_of_a_dense_layer_on_one_photo():
    import tf_keras as keras

    inputs = keras.Input((4,), name="image_xf")
    model = keras.Model(inputs, keras.layers.Dense(10)(inputs))
    # The matrix product: 4 x 10 multiplications and as many additions; the bias: 10 additions.
    assert shipping.flops_per_image(model) == 2 * 4 * 10 + 10


def test_a_graph_the_profiler_cannot_see_into_is_refused():
    import tensorflow as tf
    import tf_keras as keras

    class Hidden(keras.layers.Layer):
        @tf.function
        def call(self, x):
            return tf.matmul(x, tf.ones((4, 10)))

    inputs = keras.Input((4,), name="image_xf")
    with pytest.raises(ValueError, match="PartitionedCall"):
        shipping.flops_per_image(keras.Model(inputs, Hidden()(inputs)))
