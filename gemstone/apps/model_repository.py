"""The model versions `gemstone serve` answers with: TF Serving's base folder, loaded on demand.

Versions are the numeric folders under the base folder (TF Serving's layout); the newest
answers unless a request names one. A version is loaded once and kept, so a new push is
served without a restart, and one that loads in the background is reported LOADING.
"""
from __future__ import annotations

import threading
from http import HTTPStatus
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from gemstone import contract, paths
from gemstone.apps import model_info


class RequestError(Exception):
    """What a request gets instead of an answer: its HTTP status, one line, and headers (Retry-After)."""

    def __init__(self, status: HTTPStatus, message: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def open_set_notice(version: str, model) -> Optional[str]:
    """One line when a loaded version has no open-set outputs (exported before them), else None."""
    if "known" in model.signatures[contract.SERVING_SIGNATURE].structured_outputs:
        return None
    return (f"note: version {version} was exported before the open-set outputs: its answers carry no `known` or "
            f"`review_reason` (it names a variety for any photo); retrain to get them")


def explain_notice(version: str, model) -> Optional[str]:
    """One line when a loaded version has no `explain` signature, else None."""
    if contract.EXPLAIN_SIGNATURE in model.signatures:
        return None
    return (f"note: version {version} was exported without the `{contract.EXPLAIN_SIGNATURE}` signature: "
            f":explain answers 501 and the upload page shows no overlay; retrain to get explanations")


class ModelRepository:
    """The versions under a TF Serving base folder; loads on demand, keeps the loaded ones.

    `notice`: called with one line when a version loaded needs saying something about (open_set_notice,
    explain_notice).
    """

    def __init__(self, base_path: str, notice=None):
        self.base = Path(base_path)
        self._loaded: Dict[str, Any] = {}
        self._loading: set = set()
        self._lock = threading.Lock()
        self._notice = notice or _log_warning
        self._metadata: Dict[str, Dict[str, Any]] = {}

    def versions(self) -> List[str]:
        return [p.name for p in paths.versions(self.base)]

    def get(self, version: Optional[str] = None) -> Tuple[str, Any]:
        available = self.versions()
        if not available:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, f"no model version under {self.base} yet")
        version = version or available[-1]
        if version not in available:
            raise RequestError(HTTPStatus.NOT_FOUND, f"version {version} not found; available: {available}")
        with self._lock:
            if version not in self._loaded:
                import tensorflow as tf

                self._loading.add(version)
                try:
                    self._loaded[version] = tf.saved_model.load(str(self.base / version))
                finally:
                    self._loading.discard(version)
                for notice in (open_set_notice(version, self._loaded[version]),
                               explain_notice(version, self._loaded[version])):
                    if notice:
                        self._notice(notice)
            return version, self._loaded[version]

    def metadata(self, model_name: str, version: Optional[str], base_url: str) -> Dict[str, Any]:
        """model_info.metadata of a version (the newest by default), worked out once per version."""
        version, model = self.get(version)
        if version not in self._metadata:
            self._metadata[version] = model_info.metadata(model_name, version, self.base / version, model,
                                                          f"{base_url}/versions/{version}")
        return self._metadata[version]

    def state(self, version: str) -> str:
        """TF Serving's state of a version: AVAILABLE once loaded, LOADING while it loads, else START."""
        if version in self._loaded:
            return "AVAILABLE"
        return "LOADING" if version in self._loading else "START"

    def load_in_background(self, version: str) -> None:
        """Starts loading a version that is neither loaded nor loading (a new push), without waiting."""
        if version in self._loaded or version in self._loading:
            return
        self._loading.add(version)  # reported LOADING from now on; get() loads it under the lock
        threading.Thread(target=self._quiet_get, args=(version,), daemon=True).start()

    def _quiet_get(self, version: str) -> None:
        try:
            self.get(version)
        except Exception as e:  # noqa: BLE001 - a request for it will say what went wrong
            from absl import logging

            logging.warning("could not load version %s: %s", version, e)
            self._loading.discard(version)

    def release(self) -> None:
        """Lets go of the loaded models while TensorFlow is still loaded (at shutdown: see batch_infer)."""
        import gc

        with self._lock:
            self._loaded.clear()
            self._metadata.clear()
        gc.collect()


def _log_warning(message: str) -> None:
    from absl import logging

    logging.warning(message)
