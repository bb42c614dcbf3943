"""The exported model on Beam: RunInference's model handler for its `serving_default` signature.

Batch inference (gemstone/apps/batch_infer.py) and the Robustness component
(components/robustness) send photos through it, as TF Serving's clients would:
encoded bytes in, the contract's prediction record (gemstone.contract) out.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from gemstone import contract, signatures


class GemstoneModelHandler(ModelHandler[bytes, PredictionResult, Any]):
    """Loads the SavedModel once per worker and calls its `serving_default` on batches of encoded photos.

    Each result's `inference` is the photo's full prediction record (contract.prediction_records).
    """

    def __init__(self, model_dir: str, max_batch_size: int = 32):
        self._model_dir = model_dir
        self._max_batch_size = max_batch_size

    def load_model(self):
        import tensorflow as tf

        return tf.saved_model.load(self._model_dir)

    def run_inference(self, batch: Sequence[bytes], model, inference_args=None) -> Iterable[PredictionResult]:
        outputs = signatures.call(model, contract.SERVING_SIGNATURE, batch)
        for example, record in zip(batch, contract.prediction_records(outputs)):
            yield PredictionResult(example, record, self._model_dir)

    def batch_elements_kwargs(self):
        # Full batches from the start: Beam's adaptive batching would begin at 1 and double (1, 1, 2, 4, ...),
        # which suits a stream's latency, not a batch job's throughput. A bundle's last batch may be smaller.
        return {"min_batch_size": self._max_batch_size, "max_batch_size": self._max_batch_size}

    def get_metrics_namespace(self) -> str:
        return "gemstone"


class _Released:
    """What Beam's shared cache keeps alive in place of the last model: nothing (it needs a weak reference to it)."""


def release_shared_models() -> None:
    """Lets go of the model RunInference keeps alive in Beam's per-process cache, while TensorFlow is still loaded.

    Beam's `shared` cache keeps the last object acquired alive until the process ends; a
    model freed at interpreter shutdown finds TensorFlow already torn down, and its functions'
    finalisers print `Exception ignored in: AtomicFunction.__del__`. The cache keeps one object
    alive, the one acquired last (apache_beam.utils.shared: acquiring another lets go of the
    others): acquiring an empty one through Beam's public handle lets go of the model.
    """
    import gc

    from apache_beam.utils import shared

    shared.Shared().acquire(_Released)
    gc.collect()
