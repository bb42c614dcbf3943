"""The model: backbones, weights from a local file, staged unfreezing, the transfer parts."""
import functools
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from gemstone import contract
from modules import model as model_lib, transform

SIZE = 32


def _inputs(batch=2):
    images = tf.random.stateless_uniform([batch, SIZE, SIZE, 3], seed=[0, 1])
    return {contract.IMAGE_XF: images, contract.COLOUR_XF: transform.colour_histogram(images)}


@pytest.mark.parametrize("name", ["small_cnn", "mobilenet_v3_small"])
def test_model_has_variety_and_family_logits(name):
    model = model_lib.build_model(SIZE, 5, 2, transform.COLOUR_FEATURE_SIZE, backbone_name=name)
    outputs = model(_inputs(), training=False)
    assert outputs[contract.VARIETY_HEAD].shape == (2, 5) and outputs[contract.FAMILY_HEAD].shape == (2, 2)


@pytest.mark.slow  # builds, saves and loads a backbone
def test_pretrained_weights_load_from_a_local_file(tmp_path):
    """What a user without internet does with weights downloaded elsewhere."""
    application = keras.applications.MobileNetV3Small(include_top=False, weights=None,
                                                      input_shape=(SIZE, SIZE, 3), pooling="avg")
    for variable in application.trainable_variables[:3]:
        variable.assign(tf.fill(variable.shape, 0.125))
    path = str(tmp_path / "mobilenet_v3_small_notop.h5")
    application.save_weights(path)
    model = model_lib.build_model(SIZE, 5, 2, transform.COLOUR_FEATURE_SIZE,
                                  backbone_name="mobilenet_v3_small", weights=path)
    first = application.trainable_variables[0]
    loaded = [w for w in model.get_layer(model_lib.BACKBONE_LAYER).weights if w.shape == first.shape][0]
    np.testing.assert_allclose(loaded.numpy(), 0.125)
    fresh = model_lib.build_model(SIZE, 5, 2, transform.COLOUR_FEATURE_SIZE, backbone_name="mobilenet_v3_small")
    unloaded = [w for w in fresh.get_layer(model_lib.BACKBONE_LAYER).weights if w.shape == first.shape][0]
    assert not np.allclose(unloaded.numpy(), 0.125)


def test_bad_backbone_or_weights_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown backbone"):
        model_lib.backbone("vgg99", SIZE)
    with pytest.raises(FileNotFoundError):
        model_lib.backbone("mobilenet_v2", SIZE, weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="no pretrained weights"):
        model_lib.backbone("small_cnn", SIZE, weights="imagenet")


def test_staged_unfreezing_trains_the_top_first():
    model = model_lib.build_model(SIZE, 5, 2, transform.COLOUR_FEATURE_SIZE, backbone_name="mobilenet_v3_small")
    assert model_lib.set_trainable_top(model, 0.0) == 0
    head_only = len(model.trainable_weights)
    top = model_lib.set_trainable_top(model, 0.3)
    everything = model_lib.set_trainable_top(model, 1.0)
    assert 0 < top < everything
    assert len(model.trainable_weights) > head_only


def test_without_colour_features_the_histogram_is_ignored():
    model = model_lib.build_model(SIZE, 5, 2, transform.COLOUR_FEATURE_SIZE, colour_features=False)
    inputs = _inputs()
    other = {**inputs, contract.COLOUR_XF: tf.reverse(inputs[contract.COLOUR_XF], axis=[1])}
    np.testing.assert_allclose(model(inputs, training=False)[contract.VARIETY_HEAD],
                               model(other, training=False)[contract.VARIETY_HEAD])
    with_colour = model_lib.build_model(SIZE, 5, 2, transform.COLOUR_FEATURE_SIZE)
    assert not np.allclose(with_colour(inputs)[contract.VARIETY_HEAD], with_colour(other)[contract.VARIETY_HEAD])


def test_a_tuned_image_size_is_resized_inside_the_model():
    model = model_lib.build_model(24, 5, 2, transform.COLOUR_FEATURE_SIZE, input_size=SIZE)
    assert model.get_layer("resize").output_shape == (None, 24, 24, 3)
    assert model(_inputs())[contract.VARIETY_HEAD].shape == (2, 5)


TRANSFER_SIZE = 75  # InceptionV3's smallest input


@pytest.fixture(scope="module", params=sorted(model_lib.TRANSFER_BACKBONES))
def transfer_parts(request):
    return model_lib.build_transfer_model(TRANSFER_SIZE, 5, 2, transform.COLOUR_FEATURE_SIZE, backbone=request.param)


def test_transfer_parts_chain_to_the_exported_model(transfer_parts):
    """Trained on the trunk's cached outputs, the head and top blocks give what the whole model gives a picture."""
    images = tf.random.stateless_uniform([3, TRANSFER_SIZE, TRANSFER_SIZE, 3], seed=[2, 3])
    colour = transform.colour_histogram(images)
    whole = transfer_parts.model({contract.IMAGE_XF: images, contract.COLOUR_XF: colour}, training=False)
    cut_map, low = transfer_parts.trunk(images, training=False)
    parts = transfer_parts.fine_tune_model()({"cut_map": cut_map, "low_features": low,
                                               contract.COLOUR_XF: colour}, training=False)
    for head in (contract.VARIETY_HEAD, contract.FAMILY_HEAD):
        np.testing.assert_allclose(whole[head].numpy(), parts[head].numpy(), atol=1e-4)


def test_only_the_top_blocks_and_the_head_train(transfer_parts):
    assert not transfer_parts.trunk.trainable_weights
    top_names = {w.name for w in transfer_parts.top.trainable_weights}
    batch_norm = {w.name for layer in transfer_parts.top.layers if isinstance(layer, keras.layers.BatchNormalization)
                  for w in layer.weights}
    assert top_names and batch_norm and not top_names & batch_norm  # convolutions train, BatchNormalization not
    assert {w.name for w in transfer_parts.model.trainable_weights} == \
        top_names | {w.name for w in transfer_parts.head.trainable_weights}


@functools.lru_cache(maxsize=None)
def _pretrained(members: int) -> model_lib.TransferParts:
    """The default backbone with `members` pairs of experts, built once for the tests below."""
    return model_lib.build_transfer_model(TRANSFER_SIZE, 5, 2, transform.COLOUR_FEATURE_SIZE, members=members)


def _softmax(logits):
    return tf.nn.softmax(logits).numpy()


def _log_softmax(logits):
    return tf.nn.log_softmax(logits).numpy()


def test_the_pretrained_models_variety_is_the_product_of_the_image_and_colour_experts():
    parts = _pretrained(members=1)
    images = tf.random.stateless_uniform([3, TRANSFER_SIZE, TRANSFER_SIZE, 3], seed=[4, 5])
    outputs = parts.model({contract.IMAGE_XF: images, contract.COLOUR_XF: transform.colour_histogram(images)},
                          training=False)
    product = _softmax(outputs[model_lib.IMAGE_EXPERT]) * _softmax(outputs[model_lib.COLOUR_EXPERT])
    np.testing.assert_allclose(_softmax(outputs[contract.VARIETY_HEAD]), product / product.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-6)
    # Without the histogram there is one expert; the small CNN keeps one fused read-out.
    without_colour = model_lib.build_transfer_model(TRANSFER_SIZE, 5, 2, transform.COLOUR_FEATURE_SIZE,
                                                    colour_features=False)
    fused = model_lib.build_model(SIZE, 5, 2, transform.COLOUR_FEATURE_SIZE)
    for model in (without_colour.model, fused):
        assert set(model.output_names) == {contract.VARIETY_HEAD, contract.FAMILY_HEAD}


def test_an_ensemble_answers_the_geometric_mean_of_its_members_products():
    members = 3
    parts = _pretrained(members)
    images = tf.random.stateless_uniform([3, TRANSFER_SIZE, TRANSFER_SIZE, 3], seed=[4, 5])
    outputs = parts.model({contract.IMAGE_XF: images, contract.COLOUR_XF: transform.colour_histogram(images)},
                          training=False)
    answers = []
    for member in range(members):
        def name(output):
            return model_lib.member_name(output, member, members)
        product = _log_softmax(outputs[name(model_lib.IMAGE_EXPERT)]) + _log_softmax(outputs[name(model_lib.COLOUR_EXPERT)])
        np.testing.assert_allclose(outputs[name(contract.VARIETY_HEAD)], _log_softmax(product), atol=1e-5)
        answers.append(_log_softmax(product))
    assert np.abs(answers[0] - answers[1]).max() > 1e-3  # members start from their own weights
    np.testing.assert_allclose(_softmax(outputs[contract.VARIETY_HEAD]), _softmax(np.mean(answers, axis=0)),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("members", [1, 3])
def test_each_expert_learns_the_variety_and_the_family_head_learns_the_family(members):
    head = _pretrained(members).head
    variety, family = np.array([0, 4, 2]), np.array([1, 0, 1])
    targets = model_lib.targets(head, variety, family)
    learners = {model_lib.member_name(output, member, members) for member in range(members)
                for output in (model_lib.IMAGE_EXPERT, model_lib.COLOUR_EXPERT, contract.VARIETY_HEAD)}
    assert set(targets) == learners | {contract.VARIETY_HEAD, contract.FAMILY_HEAD}
    assert targets[contract.FAMILY_HEAD] is family
    assert all(targets[name] is variety for name in learners)
    rng = np.random.default_rng(0)
    inputs = {model_lib.FEATURES_INPUT: rng.random((3, head.input[model_lib.FEATURES_INPUT].shape[1])),
              contract.COLOUR_XF: rng.random((3, transform.COLOUR_FEATURE_SIZE))}
    model_lib.compile_model(head, 1e-3)
    history = head.fit(inputs, targets, epochs=1, verbose=0).history
    for name in learners | {contract.FAMILY_HEAD}:
        assert history[f"{name}_loss"][0] > 0  # each output's loss is part of what the model learns from


@pytest.mark.slow  # builds, saves and loads the networks
@pytest.mark.parametrize("backbone", sorted(model_lib.TRANSFER_BACKBONES))
def test_transfer_model_loads_a_weights_file(tmp_path, backbone):
    """The fetched no-top file (saved at another input size) is what the trunk starts from."""
    network = model_lib.TRANSFER_BACKBONES[backbone].network(96)
    first_conv = next(layer for layer in network.layers if isinstance(layer, keras.layers.Conv2D))
    first_conv.kernel.assign(tf.fill(first_conv.kernel.shape, 0.25))
    path = str(tmp_path / f"{backbone}_notop.h5")
    network.save_weights(path)
    loaded = model_lib.build_transfer_model(TRANSFER_SIZE, 3, 2, transform.COLOUR_FEATURE_SIZE, weights=path,
                                            backbone=backbone)
    kernels = [w for w in loaded.trunk.weights if w.shape == first_conv.kernel.shape]
    np.testing.assert_allclose(kernels[0].numpy(), 0.25)
    with pytest.raises(FileNotFoundError, match="gemstone backbone fetch"):
        model_lib.build_transfer_model(TRANSFER_SIZE, 3, 2, transform.COLOUR_FEATURE_SIZE,
                                       weights=str(tmp_path / "missing.h5"))
