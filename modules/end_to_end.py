"""Training end to end (the small CNN from scratch, or a `keras.applications` backbone): the whole model per step.

With pretrained weights, training goes in FINE_TUNE_STAGES: the new head
alone, then the top of the backbone at a tenth of the learning rate, then all
of it at a hundredth (BatchNormalization stays frozen); each stage's learning
rate follows a cosine decay, and early stopping on the eval loss is watched
from the middle of each stage.
"""
import os

import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import math  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from absl import logging  # noqa: E402

from gemstone import contract  # noqa: E402
from modules import inputs  # noqa: E402
from modules import model as model_lib  # noqa: E402

# Progressive fine-tuning of a pretrained backbone: (share of backbone layers trained from the top,
# learning-rate factor, share of the epochs). First the new head alone, then the top, then everything.
FINE_TUNE_STAGES = ((0.0, 1.0, 0.3), (0.3, 0.1, 0.35), (1.0, 0.01, 0.35))


def datasets(fn_args, tf_transform_output, config):
    """Train and eval datasets, how many train photos each class has, and each variety's family id."""
    batch_size, seed = int(config["batch_size"]), int(config["seed"])
    train = inputs.input_dataset(fn_args.train_files, tf_transform_output, batch_size, True, seed)
    val = inputs.input_dataset(fn_args.eval_files, tf_transform_output, batch_size, False, seed)
    num_classes = tf_transform_output.vocabulary_size_by_name(contract.LABEL_VOCAB)
    variety, family = [], []
    for _, labels in train:  # also fills the in-memory cache
        variety.append(labels[contract.VARIETY_HEAD].numpy())
        family.append(labels[contract.FAMILY_HEAD].numpy())
    variety, family = np.concatenate(variety), np.concatenate(family)
    counts = np.bincount(variety, minlength=num_classes).astype(float)
    return train, val, counts, inputs.family_of_variety(variety, family, num_classes)


def build(tf_transform_output, config) -> keras.Model:
    num_classes = tf_transform_output.vocabulary_size_by_name(contract.LABEL_VOCAB)
    num_families = tf_transform_output.vocabulary_size_by_name(contract.FAMILY_VOCAB)
    spec = tf_transform_output.transformed_feature_spec()
    input_size = inputs.transform_image_size(tf_transform_output)
    image_size = int(config.get("image_size") or input_size)
    logging.info("Model: %d classes, %d families, %dpx images (%dpx from Transform), %s.", num_classes,
                 num_families, image_size, input_size, config["backbone"])
    return model_lib.build_model(image_size, num_classes, num_families, spec[contract.COLOUR_XF].shape[-1],
                                 learning_rate=float(config["learning_rate"]), dropout=float(config["dropout"]),
                                 backbone_name=config["backbone"], weights=config["weights"] or None,
                                 head_width=int(config["head_width"]),
                                 colour_features=bool(config["colour_features"]), input_size=input_size)


def fit(model, train, val, config, class_counts, log_dir):
    """Trains all at once (no pretrained weights) or in FINE_TUNE_STAGES (pretrained backbone); returns the history.

    Each stage's learning rate follows a cosine decay to zero over its epochs;
    early stopping on the eval loss keeps the best weights. With
    `imbalance: class_weight`, rare classes weigh more (the Tuner's trials too).
    """
    if config["imbalance"] == "class_weight":
        weights = inputs.class_weights(class_counts)
        logging.info("Class weights from %.2f to %.2f.", weights.min(), weights.max())
        train = train.map(lambda x, y: (x, y, _sample_weights(y, weights)))
    steps_per_epoch = max(1, math.ceil(class_counts.sum() / int(config["batch_size"])))
    epochs, learning_rate = int(config["epochs"]), float(config["learning_rate"])
    staged = config["weights"] and config["progressive_unfreezing"]
    stages = FINE_TUNE_STAGES if staged else ((1.0, 1.0, 1.0),)
    merged, done = {}, 0
    for number, (fraction, lr_factor, share) in enumerate(stages, start=1):
        stage_epochs = epochs - done if number == len(stages) else max(1, round(epochs * share))
        if stage_epochs <= 0:
            continue
        trainable = model_lib.set_trainable_top(model, fraction)
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate * lr_factor, stage_epochs * steps_per_epoch)
        model_lib.compile_model(model, schedule)
        logging.info("Stage %d: %d backbone layers train, learning rate %.2g with cosine decay, %d epochs.",
                     number, trainable, learning_rate * lr_factor, stage_epochs)
        callbacks = [
            keras.callbacks.TensorBoard(log_dir=os.path.join(log_dir, f"stage{number}")),
            # Eval loss is too noisy to stop on while the learning rate is high: it is watched
            # from the middle of the stage's cosine decay. (Watched from the start, a dip at
            # epoch 10 of 50 once stopped the 88-class model at 0.60 top-1 instead of about 0.66.)
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(config["patience"]),
                                          restore_best_weights=True, start_from_epoch=done + stage_epochs // 2),
        ]
        history = model.fit(train, validation_data=val, initial_epoch=done, epochs=done + stage_epochs,
                            callbacks=callbacks, verbose=2)
        done += stage_epochs
        for key, values in history.history.items():
            merged.setdefault(key, []).extend(values)
    return merged


def _sample_weights(labels, weights):
    w = tf.gather(tf.constant(weights), labels[contract.VARIETY_HEAD])
    return {contract.VARIETY_HEAD: w, contract.FAMILY_HEAD: w}
