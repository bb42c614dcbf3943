"""Fine-tuning the whole pretrained network (the `thorough` profile): every layer learns, on fresh views.

The quick profile fine-tunes only the top blocks, on views cached once. Here,
after the head has learnt on frozen features, every layer of the backbone
trains, which costs a pass of the whole network forwards and backwards per
photo and epoch (about 17 photos/s for EfficientNet-Lite2 at 224 px on 2 CPU
cores; a GPU makes it minutes). The backbone learns through a linear read-out
of its top blocks' pooled features, fitted alone on the cached features first
(linear probing, then fine-tuning: Kumar et al., ICLR 2022), not through the
two-expert head: fine-tuned jointly at 1e-4, that head's eval accuracy fell
(0.809 frozen, 0.794 at best over four epochs on the 88 classes). The caller
then caches the features again and trains its head on them anew:
  - BatchNormalization stays frozen (a few thousand photos cannot re-estimate
    ImageNet's statistics, and small batches would make them noisy);
  - discriminative learning rates: the head and the top of the backbone learn
    at `whole_network_learning_rate`, and the rate falls geometrically with
    depth to `whole_network_bottom_factor` of it at the stem, so the generic
    low-level filters move least (Howard and Ruder, ULMFiT, 2018);
  - a linear warm-up over the first epoch, then cosine decay to zero;
  - a fresh augmented view of every training photo each epoch (the same
    augmentation as the frozen views: lighting, focus, noise, geometry; never
    a hue shift);
  - early stopping on the read-out's eval accuracy, the best epoch's weights kept;
  - mixed precision (float16 compute, float32 weights) where TensorFlow sees a GPU.
The caller keeps the fine-tuned network only if the head trained on its features beats the head
trained on the frozen ones, on the eval photos.
"""
import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import math  # noqa: E402
import os  # noqa: E402
from typing import List, Tuple  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from absl import logging  # noqa: E402

from gemstone import contract  # noqa: E402
from modules import model as model_lib  # noqa: E402

# Layers of the backbone are split by depth into this many groups, each with its own optimizer.
DEPTH_GROUPS = 6
MONITOR = "val_accuracy"  # of the linear read-out the backbone is fine-tuned through


def gpu_present() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def use_mixed_precision() -> bool:
    """Sets Keras' mixed-precision policy where a GPU is present (before the model is built); says which."""
    if gpu_present():
        keras.mixed_precision.set_global_policy("mixed_float16")
        logging.info("GPU found (%s): the whole network trains in mixed precision.",
                     ", ".join(d.name for d in tf.config.list_physical_devices("GPU")))
        return True
    logging.info("No GPU found: the whole network trains in float32 on the CPU.")
    return False


def backbone_layers(parts: model_lib.TransferParts) -> list:
    """The backbone's layers with weights, bottom to top (the trunk's, then the top blocks')."""
    return [layer for part in (parts.trunk, parts.top) for layer in model_lib.leaf_layers(part) if layer.weights]


def depth_factors(layers: int, bottom_factor: float, groups: int = DEPTH_GROUPS) -> List[Tuple[int, float]]:
    """(group, learning-rate factor) of each of `layers` layers, bottom first: the top group learns at 1, the
    bottom at `bottom_factor`, geometrically in between."""
    groups = max(1, min(groups, layers))
    result = []
    for i in range(layers):
        group = min(groups - 1, i * groups // max(1, layers))
        share = group / (groups - 1) if groups > 1 else 1.0  # 0 at the bottom, 1 at the top
        result.append((group, float(bottom_factor ** (1.0 - share))))
    return result


class DiscriminativeModel(keras.Model):
    """A functional model whose variables are updated by several optimizers, one per learning-rate group.

    `compile` takes the head's optimizer (group -1); `set_groups` the others. Keras' fit, callbacks and
    metrics work as usual; only the update differs.
    """

    def set_groups(self, optimizers: list, group_of_variable: dict, augment=None) -> None:
        """`augment`: inputs -> a fresh augmented view of them, applied at every training step (inside the
        step, not in the input pipeline: seeded random ops in a dataset's map repeat every epoch)."""
        self.group_optimizers = optimizers
        self.group_of_variable = group_of_variable  # variable ref -> index into group_optimizers, or -1
        self.augment = augment

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if self.augment is not None:
            x = self.augment(x)
        mixed = isinstance(self.optimizer, keras.mixed_precision.LossScaleOptimizer)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight)
            scaled = self.optimizer.get_scaled_loss(loss) if mixed else loss
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        if mixed:
            # One loss scale for every group: the head's optimizer keeps it (and skips a step that
            # overflowed); the groups' plain optimizers then apply zeros instead of infinities.
            gradients = self.optimizer.get_unscaled_gradients(gradients)
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients if g is not None])
        by_group = {}
        for gradient, variable in zip(gradients, variables):
            if gradient is not None:
                by_group.setdefault(self.group_of_variable.get(variable.ref(), -1), []).append((gradient, variable))
        for group, pairs in sorted(by_group.items()):
            if group >= 0 and mixed:
                pairs = [(tf.where(finite, g, tf.zeros_like(g)), v) for g, v in pairs]
            (self.optimizer if group < 0 else self.group_optimizers[group]).apply_gradients(pairs)
        return self.compute_metrics(x, y, y_pred, sample_weight)


def _optimizer(rate: float, steps: int, warmup: int, loss_scale: bool = False):
    """Adam with a linear warm-up to `rate` over `warmup` steps, then cosine decay to 0 at `steps`."""
    schedule = keras.optimizers.schedules.CosineDecay(0.0, max(1, steps - warmup), warmup_target=rate,
                                                      warmup_steps=warmup)
    optimizer = keras.optimizers.Adam(schedule)
    return keras.mixed_precision.LossScaleOptimizer(optimizer) if loss_scale else optimizer


def trainable_backbone(parts: model_lib.TransferParts) -> None:
    """Every backbone layer trainable but BatchNormalization."""
    for part in (parts.trunk, parts.top):
        part.trainable = True
        for layer in model_lib.leaf_layers(part):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


def freeze_trunk(parts: model_lib.TransferParts) -> None:
    """Back to the quick profile's state: the trunk frozen (the top blocks' BatchNormalization too)."""
    parts.trunk.trainable = False


def _tuning_model(parts: model_lib.TransferParts, classifier: keras.layers.Layer) -> DiscriminativeModel:
    """image -> the top blocks' pooled features -> `classifier`: what the backbone is fine-tuned through."""
    image = keras.Input(parts.trunk.input_shape[1:], name=contract.IMAGE_XF)
    cut_map, _ = parts.trunk(image)
    features = keras.layers.Dropout(PROBE_DROPOUT, name="tuning_dropout")(parts.top(cut_map))
    return DiscriminativeModel(image, classifier(features), name="whole_network")


def _probe(classifier: keras.layers.Layer, high: np.ndarray, variety: np.ndarray, weights: np.ndarray,
           batch_size: int) -> None:
    """The classifier alone on the cached top-block features first: a new, random read-out would otherwise
    send large, meaningless gradients into the pretrained layers (linear probing, then fine-tuning)."""
    features = keras.Input(high.shape[1:])
    probe = keras.Model(features, classifier(keras.layers.Dropout(PROBE_DROPOUT)(features)))
    probe.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    probe.fit(high, variety, sample_weight=weights, batch_size=batch_size, epochs=PROBE_EPOCHS, shuffle=True,
              verbose=0)


PROBE_EPOCHS, PROBE_DROPOUT = 20, 0.2


def fine_tune(parts: model_lib.TransferParts, train: tf.data.Dataset, val: tf.data.Dataset, photos: int,
              config: dict, log_dir: str, probe_on: Tuple[np.ndarray, np.ndarray, np.ndarray], augment=None,
              mixed: bool = False) -> float:
    """Fine-tunes the backbone through a linear read-out of its top blocks' pooled features, first fitted
    alone on `probe_on` (cached features, variety ids, sample weights); `train`: (image, variety, sample
    weight) batches of the photos as they are (`augment` makes each step's fresh view); early stopping on
    `val` ((image, variety) batches). Returns the best eval accuracy of that read-out; the backbone keeps
    that epoch's weights. The read-out is then dropped: the caller trains its own head on the new features."""
    epochs = int(config["fine_tune_epochs"])
    rate = float(config["whole_network_learning_rate"])
    steps_per_epoch = max(1, math.ceil(photos / int(config["batch_size"])))
    steps, warmup = epochs * steps_per_epoch, steps_per_epoch
    classes = int(parts.head.output_shape[contract.VARIETY_HEAD][-1])
    classifier = keras.layers.Dense(classes, name="tuning_classifier")
    _probe(classifier, *probe_on, int(config["batch_size"]))
    trainable_backbone(parts)
    model = _tuning_model(parts, classifier)
    layers = backbone_layers(parts)
    factors = depth_factors(len(layers), float(config["whole_network_bottom_factor"]))
    group_rates = sorted({(group, factor) for group, factor in factors})
    optimizers = [_optimizer(rate * factor, steps, warmup) for _, factor in group_rates]
    group_of_variable = {variable.ref(): group for layer, (group, _) in zip(layers, factors)
                         for variable in layer.trainable_weights}
    model.compile(optimizer=_optimizer(rate, steps, warmup, mixed),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.set_groups(optimizers, group_of_variable, augment)
    trained = sum(1 for layer in layers if layer.trainable_weights)
    logging.info("Whole network: %d backbone layers train through a linear read-out, learning rate %.2g at the "
                 "top falling to %.2g at the stem over %d groups, warm-up 1 epoch then cosine decay, up to %d "
                 "epochs of %d photos.", trained, rate, rate * float(config["whole_network_bottom_factor"]),
                 len(optimizers), epochs, photos)
    stopping = keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=int(config["whole_network_patience"]),
                                             restore_best_weights=True)
    history = model.fit(train, validation_data=val, epochs=epochs, verbose=2,
                        callbacks=[stopping, keras.callbacks.TensorBoard(os.path.join(log_dir, "whole_network"))])
    freeze_trunk(parts)
    return float(np.max(history.history[MONITOR]))
