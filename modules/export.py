"""The exported model's signatures: what serving, batch inference and TFMA call.

Contract of every prediction signature (B = batch, C = classes, K = top-k):
  probabilities [B, C] float   variety probabilities, in the order of `classes`
  classes       [B, C] string  class names
  label         [B]    string  top-1 variety
  confidence    [B]    float   its probability
  top_k_labels  [B, K] string, top_k_scores [B, K] float
  family        [B]    string  mineral family of the top-1 variety (never another: one answer)
  family_confidence [B] float  probability of that family: the sum over its varieties
  needs_review  [B]    bool    confidence < the review threshold, or not known: ask an expert
  novelty       [B, 2] float   open-set scores (contract.NOVELTY_QUESTIONS; 0 typical, >= 1 flagged)
  known         [B]    bool    the photo looks like a variety the model learned (both scores < 1)
  review_reason [B]    string  not_a_gemstone | unfamiliar_variety | low_confidence | "" (none)

Signatures:
  serving_default(images: string [B])     raw JPEG/PNG bytes, what a client has
  explain(images: string [B])             the same answer, and where the model looked for it:
      saliency    [B, S, S] float   the map of modules/saliency.py for the named variety, in [0, 1], as the
                                    model saw the photo (squashed to S x S)
      heatmap_png [B]       string  the same map as an 8-bit greyscale PNG at the photo's aspect ratio
                                    (longest side S): what a client overlays on the photo
  from_examples(examples: string [B])     serialized tf.Examples (TFMA, BulkInferrer)
  transform_features(examples: string [B])  the Transform graph alone (TFMA labels)
"""
import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import tensorflow as tf  # noqa: E402

from gemstone import contract  # noqa: E402
from modules import model as model_lib  # noqa: E402
from modules import novelty as novelty_lib  # noqa: E402
from modules import saliency  # noqa: E402

EXAMPLES_INPUT = "examples"  # serialized tf.Examples (TFMA, BulkInferrer)


def save(model, signatures: dict, directory: str) -> None:
    """Writes the SavedModel: the signatures, the weights and the Keras config, without per-layer traces.

    Keras' default also saves a traced call function of every layer: on
    InceptionV3 that made saving take 22 s instead of 5, and every load
    (serving, batch inference, the Robustness component) 7 s instead of 1.
    Without the traces, Keras rebuilds the model from its config
    (`load_keras_model`), with the custom layers modules/model.py registers.
    """
    model.save(directory, save_format="tf", signatures=signatures, save_traces=False)


def load_keras_model(directory: str, compile: bool = True):
    """The Keras model of a SavedModel `save` wrote, rebuilt from its config (serving needs only the signatures)."""
    import tf_keras as keras

    from modules import model as model_lib  # noqa: F401 - registers the custom layers Keras rebuilds

    return keras.models.load_model(directory, compile=compile)


def _raw_spec(tf_transform_output, keys):
    spec = tf_transform_output.raw_feature_spec()
    return {k: spec[k] for k in keys if k in spec}


def _reshape_to_spec(images, spec):
    """Raw image bytes [B] -> the shape the Transform graph was traced with."""
    shape = getattr(spec, "shape", [])
    return tf.reshape(images, [-1] + list(shape))


def make_signatures(model, tf_transform_output, review_threshold: float, temperature: float,
                    family_of_variety, novelty: "novelty_lib.Novelty" = None, explain_method: str = "",
                    backbone: str = "efficientnet_lite2"):
    """Builds the signature functions; attaches the transform layer to `model` so it is saved with it.

    `family_of_variety`: [classes] family id of each variety id. The family a
    prediction names is its variety's, with the summed probability of that
    family's varieties: the model's auxiliary family head (a training aid) could
    otherwise name a family that contradicts the variety ("Amethyst, Corundum").
    `novelty`: the fitted open-set scores (modules/novelty.py); None exports a model without the
    open-set outputs, as models were before them. `explain_method`: the saliency method of the
    `explain` signature (modules/saliency.py; "" is the model's default), `backbone` the network's name.
    """
    model.tft_layer = tf_transform_output.transform_features_layer()
    class_names = tf.constant(tf_transform_output.vocabulary_by_name(contract.LABEL_VOCAB))
    family_names = tf.constant(tf_transform_output.vocabulary_by_name(contract.FAMILY_VOCAB))
    serving_spec = _raw_spec(tf_transform_output, contract.SERVING_RAW_KEYS)
    eval_spec = _raw_spec(tf_transform_output, contract.EVAL_RAW_KEYS)
    k = min(contract.TOP_K, int(class_names.shape[0]))
    family_of_variety = tf.constant(family_of_variety, tf.int32)
    variety_to_family = tf.one_hot(family_of_variety, int(family_names.shape[0]))  # [C, F]

    scorer = model_lib.with_image_features(model) if novelty is not None else model

    def predict(raw_features):
        return answer(model.tft_layer(raw_features))

    def answer(transformed):
        outputs = scorer({k: transformed[k] for k in contract.MODEL_INPUT_KEYS}, training=False)
        probabilities = tf.nn.softmax(outputs[contract.VARIETY_HEAD] / temperature)
        top = tf.math.top_k(probabilities, k=k)
        family = tf.gather(family_of_variety, top.indices[:, 0])
        family_probabilities = tf.matmul(probabilities, variety_to_family)
        top_labels = tf.gather(class_names, top.indices)
        batch = tf.shape(probabilities)[0]
        confident = top.values[:, 0] >= review_threshold
        result = {
            "probabilities": probabilities,
            "classes": tf.tile(class_names[tf.newaxis, :], [batch, 1]),
            "label": top_labels[:, 0],
            "confidence": top.values[:, 0],
            "top_k_labels": top_labels,
            "top_k_scores": top.values,
            "family": tf.gather(family_names, family),
            "family_confidence": tf.gather(family_probabilities, family, batch_dims=1),
            "needs_review": ~confident,
        }
        if novelty is not None:
            scaled = novelty_lib.scores(outputs[model_lib.IMAGE_FEATURES], outputs[contract.VARIETY_HEAD], novelty)
            known = novelty_lib.known(scaled)
            result.update(novelty=scaled, known=known, review_reason=novelty_lib.review_reason(scaled, confident),
                          needs_review=~confident | ~known)
        return result

    # autograph=False: no Python control flow here for autograph to rewrite.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT)], autograph=False)
    def serve_images(images):
        return predict({contract.IMAGE_KEY: _reshape_to_spec(images, serving_spec[contract.IMAGE_KEY])})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)], autograph=False)
    def serve_examples(examples):
        return predict(tf.io.parse_example(examples, serving_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)], autograph=False)
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, eval_spec))

    method = explain_method or saliency.default_method(model)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT)], autograph=False)
    def explain(images):
        transformed = model.tft_layer({contract.IMAGE_KEY: _reshape_to_spec(images, serving_spec[contract.IMAGE_KEY])})
        result = answer(transformed)
        named = tf.argmax(result["probabilities"], axis=1, output_type=tf.int32)
        maps = saliency.saliency(method, model, transformed[contract.IMAGE_XF], transformed[contract.COLOUR_XF],
                                 named, backbone, temperature)
        pngs = tf.map_fn(lambda pair: _heatmap_png(pair[0], pair[1]), (images, maps),
                         fn_output_signature=tf.TensorSpec([], tf.string))
        return {**result, contract.SALIENCY_OUTPUT: maps, contract.HEATMAP_OUTPUT: pngs}

    return {
        contract.SERVING_SIGNATURE: serve_images.get_concrete_function(),
        "from_examples": serve_examples.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function(),
        contract.EXPLAIN_SIGNATURE: explain.get_concrete_function(),
    }


def _heatmap_png(photo, saliency_map):
    """A map ([S, S] in [0, 1]) as an 8-bit greyscale PNG at the photo's aspect ratio, longest side S."""
    shape = tf.shape(tf.io.decode_image(photo, channels=3, expand_animations=False))
    side = tf.cast(tf.shape(saliency_map)[0], tf.float32)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = side / tf.maximum(height, width)
    size = tf.cast(tf.maximum(tf.round(tf.stack([height, width]) * scale), 1.0), tf.int32)
    resized = tf.image.resize(saliency_map[..., tf.newaxis], size, method="bilinear")
    return tf.io.encode_png(tf.cast(tf.clip_by_value(resized * 255.0, 0.0, 255.0), tf.uint8))
