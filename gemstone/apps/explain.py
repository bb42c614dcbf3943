"""Explanations of a pushed model's answers: its `explain` signature, and the pictures made of what it returns.

`gemstone explain` writes, for each photo, a figure (gemstone.overlay.figure:
the photo, where the model looked, the verdict, the top 3, the family) and a
JSON record beside it; `gemstone serve` answers `:explain` with the overlay
alone. Both call the model through gemstone.signatures.call, as `:predict` does.

    <output>/<photo name>.png    the figure
    <output>/<photo name>.json   {path, label, confidence, top_k, family, family_confidence, needs_review,
                                  known, novelty, review_reason, verdict, figure, model_version}
                                 or, for a file that is no usable photo, {path, error, detail, model_version}
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from gemstone import contract, images, overlay, signatures
from gemstone.text import plural

BATCH_SIZE = 8  # photos per call of the explain signature (a saliency map costs a few forward passes each)


def missing_explain(version_dir: Path) -> Optional[str]:
    """One line when a version's SavedModel has no `explain` signature, else None (read without TensorFlow)."""
    try:
        found = signatures.names(version_dir)
    except (OSError, signatures.NotASavedModel) as e:
        return f"cannot read the signatures of {version_dir}: {e}"
    if contract.EXPLAIN_SIGNATURE in found:
        return None
    return (f"model {version_dir} has no `{contract.EXPLAIN_SIGNATURE}` signature (it has "
            f"{', '.join(found) or 'none'}): "
            f"it was exported before explanations; retrain it to get them")


def _unique_stems(paths: Sequence[str]) -> List[str]:
    """A file name stem per path, numbered when two photos share one (a/ruby.jpg, b/ruby.jpg: ruby, ruby-2)."""
    seen: Dict[str, int] = {}
    stems = []
    for path in paths:
        stem = Path(path).stem or "photo"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def run(version_dir: str, files: Sequence[str], output_dir: str, batch_size: int = BATCH_SIZE,
        progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Explains each file into `output_dir`; returns {model, explained, errors: [records], output}.

    A file that is no usable photo (not an image, truncated, unreadable...) gets an error record and the
    others are explained all the same. `progress` is told how far it has got after each batch.
    """
    import tensorflow as tf

    version = Path(version_dir)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    model = tf.saved_model.load(str(version))
    stems = _unique_stems(files)
    errors: List[Dict[str, Any]] = []
    pending: List[tuple] = []  # (path, stem, LoadedImage)
    explained = 0

    def write(stem: str, record: Dict[str, Any]) -> None:
        (output / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")

    def flush() -> None:
        nonlocal explained
        outputs = signatures.call(model, contract.EXPLAIN_SIGNATURE, [photo.data for _, _, photo in pending])
        for (path, stem, photo), record, heatmap in zip(pending, contract.prediction_records(outputs),
                                                        outputs[contract.HEATMAP_OUTPUT]):
            overlay.figure(photo.data, heatmap, record, title=Path(path).name).save(output / f"{stem}.png")
            write(stem, {"path": path, **contract.compact(record), "verdict": contract.verdict(record),
                         "figure": f"{stem}.png", "model_version": version.name})
        explained += len(pending)
        pending.clear()
        if progress and len(files) > batch_size:
            progress(f"explain: {explained + len(errors)} of {plural(len(files), 'photo')} done")

    for path, stem in zip(files, stems):
        try:
            pending.append((path, stem, images.load_image_file(path, measure=False)))
        except images.ImageRejected as e:
            error = {"path": path, "error": e.reason, "detail": e.detail, "model_version": version.name}
            errors.append(error)
            write(stem, error)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return {"model": str(version), "explained": explained, "errors": errors, "output": str(output)}
