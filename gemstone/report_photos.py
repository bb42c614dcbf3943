"""The dashboard's photos: thumbnails of test photos, and where the model looked, laid over them.

Where the model looked comes from the candidate SavedModel's `explain` signature (modules/export.py):
the heatmap of the variety it named for the photo, which gemstone/overlay.py colours and lays over
the photo, as `gemstone explain` and the upload page show it. A model exported before that signature
gets plain thumbnails. Which photos: those behind the worst confusions, and those flagged for review
(their prediction record has a `review_reason`), read from the Robustness component's records.
"""
from __future__ import annotations

import base64
import io
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from gemstone import contract, overlay, signatures

THUMBNAIL_SIDE = 96  # px
EXPLAIN_BATCH = 8  # photos per call of the explain signature (a map costs a few forward passes each)
REVIEW_GALLERY_SIZE = 24  # flagged photos shown at most; the page says how many there are

# encoded photos -> their heatmap PNGs (None where the model could not explain the photo)
Explainer = Callable[[Sequence[bytes]], List[Optional[bytes]]]


def thumbnail_base64(photo: Any, side: int = THUMBNAIL_SIDE) -> str:
    """A photo (encoded bytes or a PIL image) as a base64 JPEG at most `side` pixels a side."""
    from PIL import Image

    image = photo if isinstance(photo, Image.Image) else Image.open(io.BytesIO(photo))
    image = image.convert("RGB")
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode()


def saliency_explainer(model_dir: str) -> Optional[Explainer]:
    """The `explain` signature of the SavedModel in `model_dir` as an Explainer; None when it has none."""
    import tensorflow as tf
    from absl import logging

    model = tf.saved_model.load(model_dir)
    if contract.EXPLAIN_SIGNATURE not in model.signatures:
        return None

    def explain(photos: Sequence[bytes]) -> List[Optional[bytes]]:
        heatmaps: List[Optional[bytes]] = []
        for start in range(0, len(photos), EXPLAIN_BATCH):
            batch = list(photos[start:start + EXPLAIN_BATCH])
            try:
                heatmaps += list(signatures.call(model, contract.EXPLAIN_SIGNATURE, batch)[contract.HEATMAP_OUTPUT])
            except tf.errors.OpError as e:  # the dashboard is written every run: these photos go without overlay
                logging.warning("Dashboard: no saliency overlay for %d photos: %s", len(batch), e.message)
                heatmaps += [None] * len(batch)
        return heatmaps

    return explain


def heatmaps_of(image_of: Mapping[str, bytes], explainer: Optional[Explainer]) -> Dict[str, bytes]:
    """{photo path: heatmap PNG} of every photo in `image_of` (each explained once); {} without an explainer."""
    if explainer is None or not image_of:
        return {}
    paths = sorted(image_of)
    return {path: heatmap for path, heatmap in zip(paths, explainer([image_of[p] for p in paths]))
            if heatmap is not None}


def is_empty(heatmap_png: bytes) -> bool:
    """Whether a map is 0 everywhere: its overlay is the photo unchanged (Grad-CAM's is, when no region of the
    feature map raised the named variety's score)."""
    from PIL import Image

    return Image.open(io.BytesIO(heatmap_png)).convert("L").getextrema()[1] == 0


def figures(photos: Sequence[Mapping[str, Any]], image_of: Mapping[str, bytes],
            heatmap_of: Mapping[str, bytes]) -> List[Dict[str, Any]]:
    """The photos (per-photo predictions) as the page shows them: the record, its thumbnail and, when the model
    explained it, `overlay_base64` (None otherwise) and `map_empty`. Photos whose bytes were not found are left
    out."""
    shown = []
    for photo in photos:
        data = image_of.get(photo["source_path"])
        if data is None:
            continue
        heatmap = heatmap_of.get(photo["source_path"])
        shown.append({**photo, "path": photo["source_path"], "jpeg_base64": thumbnail_base64(data),
                      "overlay_base64": thumbnail_base64(overlay.overlay(data, heatmap, max_side=THUMBNAIL_SIDE))
                      if heatmap is not None else None,
                      "map_empty": heatmap is not None and is_empty(heatmap)})
    return shown


def flagged_for_review(predictions: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """The photos whose prediction record gives a review reason: by reason (as contract.REVIEW_REASONS orders
    them), the least confident first."""
    order = {reason: i for i, reason in enumerate(contract.REVIEW_REASONS)}
    flagged = [p for p in predictions if p.get("review_reason")]
    return sorted(flagged, key=lambda p: (order.get(p["review_reason"], len(order)), p.get("confidence") or 0.0,
                                          p["source_path"]))
