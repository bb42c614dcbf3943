"""The Keras (tf_keras) model: a small CNN with a variety head and a mineral-family head.

Both heads output logits; probabilities (and, later, calibration) are applied
in the exported signatures, so training uses numerically stable
`from_logits=True` losses.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tf_keras as keras  # noqa: E402

from modules import features  # noqa: E402


def augmentation(seed: int = 0) -> keras.Sequential:
    """Training-only augmentation (Keras preprocessing layers are no-ops at inference).

    Geometry, brightness and contrast only. Never a hue shift: colour is what
    tells a ruby from a sapphire.
    """
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
        keras.layers.RandomRotation(0.1, fill_mode="reflect", seed=seed),
        keras.layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed),
        keras.layers.RandomBrightness(0.1, value_range=(0.0, 1.0), seed=seed),
        keras.layers.RandomContrast(0.1, seed=seed),
    ], name="augmentation")


def _conv_block(x, filters: int, name: str):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    return keras.layers.MaxPooling2D(name=f"{name}_pool")(x)


def build_model(image_size: int, num_classes: int, num_families: int, colour_size: int,
                learning_rate: float = 2e-3, dropout: float = 0.3) -> keras.Model:
    """A compiled two-headed model fusing a small CNN with the colour histogram."""
    image = keras.Input(shape=(image_size, image_size, 3), name=features.IMAGE_XF)
    colour = keras.Input(shape=(colour_size,), name=features.COLOUR_XF)
    x = augmentation()(image)
    for i, filters in enumerate((32, 64, 128)):
        x = _conv_block(x, filters, name=f"block{i + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    c = keras.layers.Dense(128, activation="relu", name="colour_dense")(colour)
    x = keras.layers.Concatenate(name="fuse")([x, c])
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = {
        features.VARIETY_HEAD: keras.layers.Dense(num_classes, name=features.VARIETY_HEAD)(x),
        features.FAMILY_HEAD: keras.layers.Dense(num_families, name=features.FAMILY_HEAD)(x),
    }
    model = keras.Model(inputs={features.IMAGE_XF: image, features.COLOUR_XF: colour}, outputs=outputs,
                        name="gemstone_cnn")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={features.VARIETY_HEAD: loss, features.FAMILY_HEAD: loss},
        # The family head is an auxiliary task: it helps, but the variety is the answer.
        loss_weights={features.VARIETY_HEAD: 1.0, features.FAMILY_HEAD: 0.3},
        metrics={features.VARIETY_HEAD: ["accuracy"], features.FAMILY_HEAD: ["accuracy"]},
    )
    return model
