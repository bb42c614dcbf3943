"""Gemstone identification: the data library, the contract, and (in `gemstone.apps`) the applications.

TFX 1.16 expects Keras 2: `tf.keras` must resolve to tf_keras, which TensorFlow
decides when it first loads. Every entry point of the project imports this
package before TensorFlow, so this is the one place that says so.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
