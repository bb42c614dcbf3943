"""Gemstone identification: the data library, the contract, and (in `gemstone.apps`) the applications.

Two settings TensorFlow reads when it first loads. Every entry point of the
project imports this package before TensorFlow, so this is the one place that
says so (the Makefile and the Dockerfile set them too, for the tfx CLI):

- TF_USE_LEGACY_KERAS: TFX 1.16 expects Keras 2, so `tf.keras` must be tf_keras.
- TF_ENABLE_ONEDNN_OPTS: TensorFlow turns its oneDNN kernels on by itself only on
  CPUs with AVX-512 and newer. On these 2-core AVX2 machines they run
  EfficientNet-Lite2 at 224 px 1.7x as fast (a batch of 32: 48 against 25
  photos/s; the 88-class Trainer's frozen features: 83 against 143 s per view).
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
