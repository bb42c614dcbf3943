"""The saliency sanity checks (modules/saliency_checks.py): their maths on tiny models whose evidence is known, and
both checks of the default method on the demo pipeline's model (slow)."""
import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from gemstone import contract
from modules import saliency, saliency_checks, transform

SIDE = 10
CENTRE = (slice(3, 7), slice(3, 8))  # 4 x 5 = 20 pixels: the SHARE (20 %) of a 10 x 10 photo
WEIGHT = 4.0  # the named class's logit: WEIGHT x the mean red of the centre


def _photos(n=32, seed=0):
    """Dark noisy photos with a red centre: the evidence for class 0 of the models below."""
    images = np.random.default_rng(seed).uniform(0.0, 0.3, (n, SIDE, SIDE, 3)).astype(np.float32)
    images[:, CENTRE[0], CENTRE[1], 0] = 0.9
    return images


def _centre_mask():
    mask = np.zeros((SIDE, SIDE), bool)
    mask[CENTRE] = True
    return mask


def _inputs():
    return {contract.IMAGE_XF: keras.Input((SIDE, SIDE, 3), name=contract.IMAGE_XF),
            contract.COLOUR_XF: keras.Input((transform.COLOUR_FEATURE_SIZE,), name=contract.COLOUR_XF)}


def _learnt_model():
    """Class 0's logit reads the red of the centre pixels through its learnt kernel, class 1's is 0: where it looks
    is in its weights (re-initialised, it looks anywhere)."""
    inputs = _inputs()
    red = keras.layers.Flatten()(keras.layers.Lambda(lambda x: x[..., :1])(inputs[contract.IMAGE_XF]))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, {contract.VARIETY_HEAD: dense(red)})
    kernel = np.zeros((SIDE * SIDE, 2), np.float32)
    kernel[_centre_mask().ravel(), 0] = WEIGHT / _centre_mask().sum()
    dense.set_weights([kernel, np.zeros(2, np.float32)])
    return model


def _built_in_model():
    """The same evidence, but where it looks is built into the network (a fixed mean over the centre), not learnt."""
    inputs = _inputs()
    centre_red = keras.layers.Lambda(lambda x: tf.reduce_mean(x[:, CENTRE[0], CENTRE[1], :1], axis=[1, 2]))(
        inputs[contract.IMAGE_XF])
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, {contract.VARIETY_HEAD: dense(centre_red)})
    dense.set_weights([np.array([[WEIGHT, 0.0]], np.float32), np.zeros(2, np.float32)])
    return model


def test_identical_maps_correlate_1_reversed_ones_minus_1_and_a_constant_map_0():
    maps = np.random.default_rng(0).uniform(size=(3, SIDE, SIDE))
    np.testing.assert_allclose(saliency_checks.spearman(maps, maps), 1.0)
    np.testing.assert_allclose(saliency_checks.spearman(maps, 1.0 - maps), -1.0)
    np.testing.assert_array_equal(saliency_checks.spearman(maps, np.zeros_like(maps)), 0.0)


def test_the_most_salient_share_of_the_pixels_is_blanked_to_the_photos_mean_colour():
    rng = np.random.default_rng(0)
    maps = np.where(_centre_mask(), 1.0, 0.1)[None]
    masks = saliency_checks.top_pixels(maps, saliency_checks.SHARE, rng)
    np.testing.assert_array_equal(masks[0], _centre_mask())
    assert saliency_checks.random_pixels(maps.shape, saliency_checks.SHARE, rng).sum() == _centre_mask().sum()
    photos = _photos(1)
    blanked = saliency_checks.blanked(photos, masks)
    np.testing.assert_allclose(blanked[0][_centre_mask()], np.broadcast_to(photos[0].mean(axis=(0, 1)), (20, 3)))
    np.testing.assert_array_equal(blanked[0][~_centre_mask()], photos[0][~_centre_mask()])


def test_a_map_that_is_the_evidence_passes_deletion_and_a_random_map_fails():
    model, photos = _learnt_model(), _photos()
    classes = np.zeros(len(photos), int)
    evidence = np.broadcast_to(_centre_mask(), photos.shape[:3]).astype(np.float32)
    salient, scattered = saliency_checks.deletion_drops(model, photos, evidence, classes, 1.0, np.random.default_rng(0))
    assert np.all(salient > 0) and saliency_checks.deletion_ratio(salient, scattered) >= 3 * saliency_checks.MIN_DELETION_RATIO
    noise = np.random.default_rng(1).uniform(size=photos.shape[:3])
    salient, scattered = saliency_checks.deletion_drops(model, photos, noise, classes, 1.0, np.random.default_rng(0))
    assert 0.5 < saliency_checks.deletion_ratio(salient, scattered) < saliency_checks.MIN_DELETION_RATIO


def test_maps_of_a_model_that_learnt_where_to_look_pass_both_checks_and_its_weights_come_back():
    model, photos = _learnt_model(), _photos()
    weights = model.get_weights()
    found = saliency_checks.check(saliency.SMOOTH_GRAD, model, photos)
    assert found["randomisation_passed"] and found["spearman_median"] < 0.2, found
    assert found["deletion_passed"], found
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))  # restored after randomising


def test_maps_that_do_not_depend_on_the_learnt_weights_fail_the_randomisation_check():
    found = saliency_checks.check(saliency.SMOOTH_GRAD, _built_in_model(), _photos())
    assert found["spearman_median"] > 0.99 and not found["randomisation_passed"], found
    assert found["deletion_passed"], found  # it is the evidence all the same: deletion alone cannot tell


# --- The demo pipeline's model ----------------------------------------------------------------------------

DEMO_PHOTOS_PER_CLASS = 4  # 8 varieties: 32 photos, none of them the model's own


@pytest.mark.slow  # reads the model of a whole pipeline run (the `demo_pipeline` fixture)
def test_the_default_method_passes_both_checks_on_the_demo_model(demo_pipeline, tmp_path):
    from gemstone import demo_data, paths
    from modules import export
    from tests.tfx_helpers import E2E_PIPELINE

    home, _, _ = demo_pipeline
    version = paths.latest_version_dir(paths.serving_dir(E2E_PIPELINE, str(home)))
    assert version is not None, "the demo pipeline pushed no model"
    model = export.load_keras_model(str(version), compile=False)
    temperature = json.loads((version / contract.MODEL_ASSETS_DIR / contract.CALIBRATION_FILE).read_text())[
        "temperature"]
    # Photos drawn with another seed than the run's (1), at the size the demo draws them.
    demo_data.make_demo_data(tmp_path / "photos", per_class=DEMO_PHOTOS_PER_CLASS, seed=7, size=96)
    files = sorted((tmp_path / "photos" / "images").rglob("*.jpg"))
    size = model.input[contract.IMAGE_XF].shape[1]
    images = transform.model_inputs(tf.constant([f.read_bytes() for f in files]), size)[contract.IMAGE_XF].numpy()

    method = saliency.default_method(model)
    found = saliency_checks.check(method, model, images, temperature)
    print(json.dumps(found))  # the figures, in the test's output (-s, or -rA)
    assert found["photos"] >= 30
    assert found["randomisation_passed"], found
    assert found["deletion_passed"], found
