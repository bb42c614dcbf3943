"""Transfer learning that fits 2 cores: the frozen trunk runs once per augmented view, then two stages learn.

A pretrained network costs far more per photo than the small CNN, and most of
it never trains. So the Trainer:
  1. passes every training photo through the frozen trunk `views` times, the
     first as it is and the others augmented as the small CNN's training is
     (another lamp, focus, noise; flips, rotation, zoom; never a hue shift),
     and keeps what the trunk gives (the map entering the top blocks, float16,
     and the pooled features of the lower taps);
  2. stage 1, frozen: trains the head on the pooled features of every view
     (seconds an epoch);
  3. stage 2, fine-tuning: trains the top blocks and the head together, at a
     tenth of the learning rate, on one view per photo an epoch, drawn anew
     each epoch. Kept only if it raises the eval accuracy; otherwise the frozen
     model stands, and the log says so;
  4. stage 3, refit: once the eval split has done its work (the calibration's
     logits, the fine-tuning decision), the head learns again from its first
     weights on the training and eval views together (a fifth more photos),
     for as many steps as stage 1 (see _refit).
Each stage: cosine decay of the learning rate, rare classes weighted up. Stages
1 and 3 run their whole schedule and keep their last weights (see fit);
stage 2 stops early on the eval accuracy and keeps its best epoch (MONITOR).
"""
import os

import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

import contextlib  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from typing import Callable, Dict, NamedTuple, Optional, Tuple  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from absl import logging  # noqa: E402

from gemstone import contract  # noqa: E402
from modules import augmentation  # noqa: E402
from modules import model as model_lib  # noqa: E402
from modules import whole_network as whole_network_lib  # noqa: E402

CUT_MAP, LOW = "cut_map", "low_features"
# Photos kept from the caching pass for the edge models: the int8 calibration set, and the
# eval photos their agreement with the SavedModel is measured on.
REPRESENTATIVE_PHOTOS, AGREEMENT_PHOTOS = 100, 200


class Stopwatch:
    """Seconds per stage of the Trainer, in the order run: where its time went (timings.json)."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[stage] = round(time.monotonic() - started, 1)


class Cached(NamedTuple):
    """What the frozen trunk gave for a split, every view stacked (view-major)."""
    cut_map: np.ndarray  # [n, h, w, c] float16: input of the fine-tuned blocks
    low: np.ndarray  # [n, d_low] pooled features of the taps below them
    high: np.ndarray  # [n, d_high] pooled features of the top blocks as they were (frozen stage)
    colour: np.ndarray  # [n, colour] the histogram of the photo as the view shows it
    variety: np.ndarray  # [n] label ids
    family: np.ndarray  # [n]
    images: np.ndarray  # up to `keep_images` photos of the first view, [k, S, S, 3]

    def head_inputs(self) -> dict:
        return {model_lib.FEATURES_INPUT: np.concatenate([self.low, self.high], axis=1),
                contract.COLOUR_XF: self.colour}

    def fine_tune_inputs(self, index=slice(None)) -> dict:
        return {CUT_MAP: self.cut_map[index].astype(np.float32), LOW: self.low[index],
                contract.COLOUR_XF: self.colour[index]}

    def labels(self, model: keras.Model, index=slice(None)) -> dict:
        return model_lib.targets(model, self.variety[index], self.family[index])

    def rows(self, index) -> "Cached":
        """These rows of every column (the kept photos stay as they are)."""
        return self._replace(**{key: getattr(self, key)[index] for key in Cached._fields if key != "images"})

    def first_view(self, photos: int) -> "Cached":
        """The photos as they are: the first view's `photos` rows."""
        return self.rows(slice(photos))


class Fitted(NamedTuple):
    history: Dict[str, list]
    eval_logits: np.ndarray  # variety logits of the eval photos before the refit: what calibration reads
    train: Cached  # the training views as the final network sees them (after any fine-tuning)
    eval: Cached  # the eval photos as they are, likewise


class WholeNetwork(NamedTuple):
    """What fine-tuning the whole network (the thorough profile) needs beyond the cached features."""
    train: tf.data.Dataset  # (inputs, targets, sample weights) of the training photos as they are
    val: tf.data.Dataset  # (inputs, targets) of the eval photos as they are
    augment: Callable  # inputs -> a fresh augmented view (each training step)
    # The features again through the fine-tuned network: (train views, eval photos, eval views for the refit).
    recache: Callable[[], Tuple[Cached, Cached, Cached]]
    mixed_precision: bool = False


def augmenter(colour_features: bool, seed: int):
    """(image, histogram) -> an augmented view of both, as the end-to-end models are trained on."""
    conditions = augmentation.RandomPhotoConditions(histogram=colour_features, seed=seed)
    geometry = augmentation.augmentation(seed)

    @tf.function(reduce_retracing=True)  # (traced once per batch size otherwise: seconds each)
    def augment(image, colour):
        image, colour = conditions([image, colour], training=True)
        return geometry(image, training=True), colour

    return augment


def cache(parts: model_lib.TransferParts, dataset: tf.data.Dataset, views: int, augment=None,
          keep_images: int = 0, name: str = "train", keep_cut_maps: bool = True) -> Cached:
    """Runs the frozen trunk (and the top blocks as they are) over `views` passes of `dataset`.

    `keep_cut_maps`: False when nothing will be fine-tuned; the maps are the bulk of the cache (Lite2 at
    224 px: 47 kB a view, against 14 kB for all the pooled features), and `cut_map` is then empty.
    """
    # Any batch size: a split's last, smaller batch would otherwise trace the whole network again.
    @tf.function(input_signature=[tf.TensorSpec([None, *parts.trunk.input_shape[1:]], tf.float32)])
    def trunk(image):
        cut_map, low = parts.trunk(image, training=False)
        return tf.cast(cut_map, tf.float16), low, parts.top(cut_map, training=False)

    columns = {key: [] for key in Cached._fields}
    started = time.time()
    for view in range(views):
        for x, y in dataset:
            image, colour = x[contract.IMAGE_XF], x[contract.COLOUR_XF]
            if view > 0:
                image, colour = augment(image, colour)
            cut_map, low, high = trunk(image)
            if not keep_cut_maps:
                cut_map = tf.zeros([tf.shape(cut_map)[0], 0], tf.float16)
            for key, value in (("cut_map", cut_map), ("low", low), ("high", high), ("colour", colour),
                               ("variety", y[contract.VARIETY_HEAD]), ("family", y[contract.FAMILY_HEAD])):
                columns[key].append(value.numpy())
            if view == 0 and sum(len(i) for i in columns["images"]) < keep_images:
                columns["images"].append(image.numpy())
        photos = sum(len(v) for v in columns["variety"])
        logging.info("Frozen trunk, %s: view %d of %d done, %d photos, %.0f photos/s.", name, view + 1, views,
                     photos, photos / (time.time() - started))
    kept = columns.pop("images")
    images = np.concatenate(kept)[:keep_images] if kept else np.zeros((0, 0, 0, 3), np.float32)
    return Cached(images=images, **{key: np.concatenate(value) for key, value in columns.items()})


class _OneViewPerPhoto(keras.utils.Sequence):
    """Fine-tuning batches: each epoch, as many samples as there are photos, drawn from all the views."""

    def __init__(self, model: keras.Model, data: Cached, photos: int, batch_size: int, sample_weights: np.ndarray,
                 seed: int):
        super().__init__()
        self.model, self.data, self.photos, self.batch_size = model, data, photos, batch_size
        self.weights = sample_weights
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(self.photos / self.batch_size)

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.data.variety))[:self.photos]

    def __getitem__(self, i):
        index = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])
        weights = self.weights[index]
        return (self.data.fine_tune_inputs(index), self.data.labels(self.model, index),
                model_lib.targets(self.model, weights, weights))


# What early stopping and the fine-tuning decision watch. Not the eval loss: on the 88 classes the
# head grows over-confident while it still gets more photos right (epoch 2 of 12: eval loss 2.92 at
# 0.59 accuracy; epoch 9: 3.92 at 0.70), and calibration corrects the confidence afterwards.
MONITOR = "val_" + contract.VARIETY_HEAD + "_accuracy"


def _callbacks(config, log_dir: str, stage: str, early_stopping: bool):
    callbacks = [keras.callbacks.TensorBoard(log_dir=os.path.join(log_dir, stage))]
    if early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=int(config["patience"]),
                                                       restore_best_weights=True))
    return callbacks


def _accuracy(model, val: "Cached") -> float:
    return float(model.evaluate(val.fine_tune_inputs(), val.labels(model), verbose=0, return_dict=True)[
        contract.VARIETY_HEAD + "_accuracy"])


def fit(parts: model_lib.TransferParts, train: Cached, val: Cached, photos: int, config: dict,
        class_weights: np.ndarray, log_dir: str, stopwatch: Optional[Stopwatch] = None,
        refit_on: Optional[Cached] = None, whole_network: Optional[WholeNetwork] = None) -> Fitted:
    """Stage 1 (head on frozen features), stage 2 (the top blocks + head on the cached maps, or with
    `whole_network` every layer on fresh views), then stage 3 (the head again, on `train` and `refit_on`
    together: views of the eval photos) unless `refit_on` is None."""
    stopwatch = stopwatch or Stopwatch()
    first_weights = parts.head.get_weights()
    history: Dict[str, list] = {}
    logging.info("Stage 1: the head on frozen features, %d samples (%d views of %d photos), %d epochs.",
                 len(train.variety), int(config["views"]), photos, int(config["epochs"]))
    # Stage 1 trains every epoch and keeps the last weights, where the cosine decay has brought the
    # learning rate down: stopping early at the best eval accuracy made the result depend on where a
    # noisy figure (529 eval photos) peaked (docs/model.md, "Stage 1 runs its whole schedule").
    with stopwatch("stage1_head"):
        _merge(history, _train_head(parts.head, train.head_inputs(), train.variety, train.family, class_weights,
                                    config, int(config["epochs"]),
                                    validation_data=(val.head_inputs(), val.labels(parts.head)),
                                    callbacks=_callbacks(config, log_dir, "stage1_frozen", early_stopping=False)))
    if whole_network is not None:
        kept, caches = _fine_tune_whole(parts, whole_network, train, val, refit_on, photos, config, class_weights,
                                        first_weights, log_dir, stopwatch, history)
        train, val, refit_on = caches
        tuned = False  # the caches are the network's as it now is
    else:
        kept = _fine_tune(parts, train, val, photos, config, class_weights, log_dir, stopwatch, history)
        tuned = bool(kept)
    if kept is not None:
        history["fine_tuning_kept"] = [kept]
    if tuned:
        train, val = _as_now(parts, train, True), _as_now(parts, val, True)
    held_out_logits = _eval_logits(parts, val)
    if refit_on is not None:
        with stopwatch("stage3_refit"):
            history["refit_loss"] = _refit(parts, [train, _as_now(parts, refit_on, tuned)], first_weights, config,
                                           class_weights)
    return Fitted(history, held_out_logits, train, val)


def _fine_tune_whole(parts, whole_network: WholeNetwork, train: Cached, val: Cached, refit_on: Optional[Cached],
                     photos: int, config: dict, class_weights: np.ndarray, first_weights, log_dir: str,
                     stopwatch: Stopwatch, history: Dict[str, list]):
    """Stage 2 of the thorough profile: (whether fine-tuning the whole network was kept, None if not run; the
    caches (train, val, refit_on) as the network then is). Kept when the head, trained anew on the features
    of the fine-tuned network, beats the head on the frozen ones on the eval photos."""
    if int(config["fine_tune_epochs"]) <= 0:
        logging.info("Stage 2 skipped: the backbone stays frozen.")
        return None, (train, val, refit_on)
    frozen_accuracy = head_accuracy(parts.head, val)
    frozen_backbone = parts.trunk.get_weights() + parts.top.get_weights()
    frozen_head = parts.head.get_weights()
    with stopwatch("stage2_whole_network"):
        probe = (train.high, train.variety, class_weights[train.variety])
        readout = whole_network_lib.fine_tune(parts, whole_network.train, whole_network.val, photos, config,
                                              log_dir, probe, whole_network.augment, whole_network.mixed_precision)
    with stopwatch("features_again"):
        tuned_train, tuned_val, tuned_refit = whole_network.recache()
    with stopwatch("stage1_head_again"):
        parts.head.set_weights(first_weights)
        _merge(history, _train_head(parts.head, tuned_train.head_inputs(), tuned_train.variety,
                                    tuned_train.family, class_weights, config, int(config["epochs"])))
        tuned_accuracy = head_accuracy(parts.head, tuned_val)
    kept = tuned_accuracy > frozen_accuracy
    logging.info("Fine-tuning the whole network: the read-out reached %.4f on the eval photos; the head on the "
                 "fine-tuned features %.4f, on the frozen ones %.4f: %s.", readout, tuned_accuracy, frozen_accuracy,
                 "kept" if kept else "dropped, the frozen model stands")
    if kept:
        return True, (tuned_train, tuned_val, tuned_refit if refit_on is not None else None)
    sizes = len(parts.trunk.get_weights())
    parts.trunk.set_weights(frozen_backbone[:sizes])
    parts.top.set_weights(frozen_backbone[sizes:])
    parts.head.set_weights(frozen_head)
    return False, (train, val, refit_on)


def head_accuracy(head: keras.Model, val: Cached) -> float:
    return float(head.evaluate(val.head_inputs(), val.labels(head), verbose=0, return_dict=True)[
        contract.VARIETY_HEAD + "_accuracy"])


def _merge(history: Dict[str, list], result: keras.callbacks.History) -> None:
    for key, values in result.history.items():
        history.setdefault(key, []).extend(values)


def _train_head(head: keras.Model, inputs: dict, variety: np.ndarray, family: np.ndarray, class_weights: np.ndarray,
                config: dict, epochs: int, **fit_args) -> keras.callbacks.History:
    """The head alone on pooled features, rare classes weighted up: the whole cosine schedule, last weights kept."""
    batch_size = int(config["batch_size"])
    steps = math.ceil(len(variety) / batch_size)
    model_lib.compile_model(head, keras.optimizers.schedules.CosineDecay(float(config["learning_rate"]),
                                                                         max(1, epochs * steps)),
                            steps_per_execution=steps,  # an epoch per call: a step here takes milliseconds
                            label_smoothing=float(config["label_smoothing"]))
    weights = class_weights[variety]
    return head.fit(inputs, model_lib.targets(head, variety, family),
                    sample_weight=model_lib.targets(head, weights, weights), batch_size=batch_size, epochs=epochs,
                    shuffle=True, verbose=2, **fit_args)


def _fine_tune(parts, train: Cached, val: Cached, photos: int, config: dict, class_weights: np.ndarray, log_dir: str,
               stopwatch: Stopwatch, history: Dict[str, list]) -> Optional[bool]:
    """Stage 2: whether it was kept (None: not run, `fine_tune_epochs` 0)."""
    epochs = int(config["fine_tune_epochs"])
    if epochs <= 0:
        logging.info("Stage 2 skipped: the backbone stays frozen.")
        return None
    fine_tune = parts.fine_tune_model()
    with stopwatch("stage2_fine_tune"):
        model_lib.compile_model(fine_tune, 0.0)
        frozen_accuracy, frozen_weights = _accuracy(fine_tune, val), fine_tune.get_weights()
        batches = _OneViewPerPhoto(fine_tune, train, photos, int(config["batch_size"]),
                                   class_weights[train.variety], int(config["seed"]))
        rate = float(config["learning_rate"]) * float(config["fine_tune_learning_rate_factor"])
        model_lib.compile_model(fine_tune, keras.optimizers.schedules.CosineDecay(rate, epochs * len(batches)),
                                label_smoothing=float(config["label_smoothing"]))
        logging.info("Stage 2: fine-tuning %d top-block weights and the head at learning rate %.2g, up to %d "
                     "epochs.", len(parts.top.trainable_weights), rate, epochs)
        _merge(history, fine_tune.fit(batches, epochs=epochs,
                                      validation_data=(val.fine_tune_inputs(), val.labels(fine_tune)),
                                      callbacks=_callbacks(config, log_dir, "stage2_fine_tune", early_stopping=True),
                                      verbose=2))
        tuned_accuracy = _accuracy(fine_tune, val)
    kept = tuned_accuracy > frozen_accuracy
    if not kept:
        fine_tune.set_weights(frozen_weights)
    logging.info("Fine-tuning: eval accuracy %.4f, frozen %.4f: %s.", tuned_accuracy, frozen_accuracy,
                 "kept" if kept else "dropped, the frozen model stands")
    return kept


# Stage 3: the eval split is a fifth of the labelled photos, and once the calibration's logits and
# the fine-tuning decision are taken nothing else needs it held out (the Evaluator and the Robustness
# component read the test split). It takes as many steps as stage 1 (fewer epochs over more photos):
# the temperature measured on stage 1's head then still fits. On gem88's cached features (one pair of
# experts), test top-1 / top-3 / ECE, means of seeds 0-1: no refit 0.786 / 0.940 / 0.028; refit for
# stage 1's 50 epochs 0.802 / 0.947 / 0.043 (more steps: more confident than the temperature allows);
# for its number of steps (41 epochs) 0.806 / 0.952 / 0.024.
def _refit(parts, splits, first_weights, config: dict, class_weights: np.ndarray) -> list:
    """The head from its first weights on every view of `splits` together, for as many steps as stage 1
    took on `splits[0]`; its loss per epoch.

    `splits`: cached features as the network now is (see _as_now). The calibration's temperature,
    measured before on the held-out eval photos, stays.
    """
    each = [c.head_inputs() for c in splits]
    inputs = {key: np.concatenate([split[key] for split in each]) for key in each[0]}
    variety, family = np.concatenate([c.variety for c in splits]), np.concatenate([c.family for c in splits])
    epochs = max(1, round(int(config["epochs"]) * len(splits[0].variety) / len(variety)))
    logging.info("Stage 3: the head again from its first weights, on %d samples (training and eval views), "
                 "%d epochs (stage 1's number of steps).", len(variety), epochs)
    parts.head.set_weights(first_weights)
    result = _train_head(parts.head, inputs, variety, family, class_weights, config, epochs)
    return [float(loss) for loss in result.history["loss"]]


def _as_now(parts: model_lib.TransferParts, cached: Cached, tuned: bool) -> Cached:
    """`cached` with the top blocks' pooled features as the blocks are now.

    `tuned`: the top blocks were fine-tuned, so they run again over the cut maps; otherwise the cached
    pooled features are theirs already.
    """
    if not tuned:
        return cached
    maps = tf.data.Dataset.from_tensor_slices(cached.cut_map).batch(64).map(lambda m: tf.cast(m, tf.float32))
    return cached._replace(high=parts.top.predict(maps, verbose=0))


def _eval_logits(parts: model_lib.TransferParts, val: Cached) -> np.ndarray:
    """Variety logits of the cached eval photos (the exported model gives the same from the pictures)."""
    outputs = parts.head.predict(val.head_inputs(), batch_size=256, verbose=0)
    return outputs[contract.VARIETY_HEAD]
