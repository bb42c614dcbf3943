"""What the server says about a model version besides its answers: TF Serving's metadata, and what people need.

`metadata` is the body of GET /v1/models/<name>[/versions/<v>]/metadata: TF
Serving's (the SignatureDefs, as TF Serving writes them in JSON) and, under
"gemstone", what the upload page shows: the model's name, version and date, the
varieties it knows (the `classes` of its answers) and its reference gallery
(modules/gallery.py: a few typical training photos of each variety), whose
files `gallery_file` finds.
"""
from __future__ import annotations

import datetime
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from gemstone import contract

GALLERY_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".json": "application/json"}


def signature_defs(version_dir: Path) -> Dict[str, Any]:
    """The SignatureDefs of a SavedModel in TF Serving's JSON (proto3 JSON of the SignatureDef map)."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((Path(version_dir) / contract.SAVED_MODEL_FILE).read_bytes())
    found: Dict[str, Any] = {}
    for graph in proto.meta_graphs:
        for name, signature in graph.signature_def.items():
            found[name] = json_format.MessageToDict(signature, preserving_proto_field_name=True)
    return found


def date(version_dir: Path) -> str:
    """When the version was made: its model card's `created`, else the folder's time (ISO 8601, UTC)."""
    card = Path(version_dir) / contract.MODEL_CARD_JSON_FILE
    try:
        created = json.loads(card.read_text(encoding="utf-8")).get("created")
        if created:
            return str(created)
    except (OSError, ValueError, AttributeError):
        pass
    when = datetime.datetime.fromtimestamp(Path(version_dir).stat().st_mtime, datetime.timezone.utc)
    return when.isoformat(timespec="seconds")


def classes(model) -> List[str]:
    """The varieties a loaded model knows: the `classes` output of its serving signature, asked with a blank photo."""
    import tensorflow as tf
    from PIL import Image

    blank = io.BytesIO()
    Image.new("RGB", (32, 32), (128, 128, 128)).save(blank, "PNG")
    outputs = model.signatures[contract.SERVING_SIGNATURE](**{contract.SERVING_INPUT: tf.constant([blank.getvalue()])})
    return [name.decode("utf-8") for name in outputs["classes"].numpy()[0]]


def gallery_dir(version_dir: Path) -> Path:
    return Path(version_dir) / contract.MODEL_ASSETS_DIR / contract.GALLERY_DIR


def gallery(version_dir: Path) -> Dict[str, List[str]]:
    """{variety: [thumbnail file names]} of the version's gallery; empty for models exported without one."""
    try:
        listed = json.loads((gallery_dir(version_dir) / contract.GALLERY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(listed, dict):
        return {}
    return {str(variety): [str(name) for name in names if gallery_file(version_dir, str(name))]
            for variety, names in listed.items() if isinstance(names, list)}


def gallery_file(version_dir: Path, name: str) -> Optional[Path]:
    """The gallery's file of that name, or None: no such file, or a name that would lead out of the folder."""
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        return None
    if Path(name).suffix.lower() not in GALLERY_TYPES:
        return None
    folder = gallery_dir(version_dir).resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        return None
    return path


def metadata(model_name: str, version: str, version_dir: Path, model, base_url: str) -> Dict[str, Any]:
    """The body of GET .../metadata: TF Serving's, and the model's name, version, date, varieties and gallery.

    `base_url`: the version's path on this server (/v1/models/<name>/versions/<v>), the gallery's
    URLs are under it.
    """
    found = signature_defs(version_dir)
    return {
        "model_spec": {"name": model_name, "signature_name": "", "version": version},
        "metadata": {"signature_def": {"signature_def": found}},
        "gemstone": {
            "model": model_name, "version": version, "date": date(version_dir), "classes": classes(model),
            "explain": contract.EXPLAIN_SIGNATURE in found,
            "gallery": {variety: [f"{base_url}/gallery/{name}" for name in names]
                        for variety, names in gallery(version_dir).items()},
        },
    }
