"""Finding a collection's images, loading them, and accounting for every file.

Used by the pipeline's ImageExampleGen (inside Beam) and by
`gemstone inspect-data` (standalone), so both apply the very same checks.

Two input layouts are understood:
  * a folder of class folders: `<root>/<label>/.../<image>`; the label is the
    top-level folder's name (spaces allowed), the mineral family comes from
    `schema/families.csv`;
  * a manifest, `.csv` or `.jsonl`, with columns `path` and `label` and,
    optionally, `family`, `stone_id` and any other attribute (kept as a string
    feature). Relative paths are relative to the manifest's folder.
"""
from __future__ import annotations

import dataclasses
import json
import os
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from gemstone import image_stats, images, manifests, splits, taxonomy
from gemstone.contract import FAMILY_KEY, IMAGE_KEY, LABEL_KEY, SIZE_BUCKET_KEY

# Photo size buckets by the short side, in pixels: the Evaluator reports accuracy per bucket,
# because small shop photos lose the detail that tells look-alikes apart.
SIZE_BUCKETS = ((256, "small (<256 px)"), (512, "medium (256-511 px)"), (None, "large (>=512 px)"))

if TYPE_CHECKING:
    import tensorflow as tf
# TensorFlow is imported where tf.Examples are made or read, not here: `gemstone inspect-data`
# discovers, loads and splits a collection without it (and answers a wrong path in a second).


@dataclasses.dataclass(frozen=True)
class SourceEntry:
    """One file the collection names: where it is and what it is said to be."""

    path: str  # absolute path of the file
    rel_path: str  # path as reported to people (relative to the data root)
    label: str
    family: str
    stone_id: str = ""
    attributes: Tuple[Tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Quarantined:
    """A file that could not be used, and why."""

    rel_path: str
    reason: str
    detail: str
    label: str = ""


@dataclasses.dataclass(frozen=True)
class Ingested:
    """A file that loaded: its entry and the normalised picture."""

    entry: SourceEntry
    image: images.LoadedImage

    @property
    def key(self) -> str:
        return self.entry.rel_path

    def without_pixels(self) -> "Ingested":
        """The same record minus the encoded image: what a report needs, at a fraction of the memory."""
        return dataclasses.replace(self, image=dataclasses.replace(self.image, data=b""))


@dataclasses.dataclass
class Discovery:
    """What a data root holds: files to load, and files passed over with a reason."""

    root: str
    layout: str  # "class_folders" or "manifest"
    entries: List[SourceEntry]
    quarantined: List[Quarantined]  # named by the collection but unusable before loading
    ignored_hidden: List[str]  # .DS_Store, Thumbs.db, dot files: counted, not loaded

    @property
    def confining_root(self) -> Optional[str]:
        """Class folders must not link outside the data root; a manifest may name any path."""
        return self.root if self.layout == "class_folders" else None


@dataclasses.dataclass(frozen=True)
class IngestionOptions:
    """Limits and split settings, serialisable so a TFX component can carry them."""

    max_pixels: int = images.DEFAULT_MAX_PIXELS
    max_side: int = images.DEFAULT_MAX_SIDE
    near_duplicate_distance: int = 6
    near_duplicate_colour_distance: float = 0.5
    split_seed: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: Optional[str]) -> "IngestionOptions":
        return cls(**json.loads(text)) if text else cls()


def default_input_pattern(data: str) -> Tuple[str, str]:
    """Splits a user's DATA into (input_base, pattern) for a file-based ExampleGen.

    A path ending in .csv/.jsonl is a manifest; anything else is a folder of
    class folders. The pattern is what TFX fingerprints to decide whether the
    input changed (and so whether a cached ExampleGen result can be reused).
    Works on local paths and on URIs (gs://, s3://) alike.
    """
    if "://" not in data:
        data = os.path.abspath(os.path.expanduser(data))
    data = data.rstrip("/")
    if data.lower().endswith(manifests.SUFFIXES):
        base, name = posixpath.split(data)
        return base, name
    return data, "*/*"


def discover(input_base: str, pattern: str, family_map: Optional[Dict[str, str]] = None) -> Discovery:
    """Lists the files of a collection: a manifest if `pattern` names one, else class folders."""
    family_map = taxonomy.load_family_map() if family_map is None else family_map
    root = Path(input_base)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    if pattern.lower().endswith(manifests.SUFFIXES):
        manifest = root / pattern
        if not manifest.is_file():
            raise FileNotFoundError(f"manifest not found: {manifest}")
        return _discover_manifest(manifest, family_map)
    return _discover_class_folders(root, family_map)


def _discover_class_folders(root: Path, family_map: Dict[str, str]) -> Discovery:
    listing = images.list_image_files(root)
    entries, quarantined = [], []
    for path in listing.files:
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            quarantined.append(Quarantined(str(rel), "no_label", "image is not inside a class folder"))
            continue
        label = rel.parts[0].strip()
        entries.append(SourceEntry(str(path), str(rel), label, taxonomy.family_of(label, family_map)))
    for path in listing.ignored_other:
        quarantined.append(Quarantined(str(path.relative_to(root)), "not_an_image", "file extension is not an image type"))
    hidden = [str(p.relative_to(root)) for p in listing.ignored_hidden]
    return Discovery(str(root), "class_folders", entries, quarantined, hidden)


def _discover_manifest(manifest: Path, family_map: Dict[str, str]) -> Discovery:
    root = manifest.parent
    entries, quarantined, seen = [], [], set()
    for line_number, row in manifests.rows(manifest):
        row = {str(k).strip(): ("" if v is None else str(v).strip()) for k, v in row.items()}
        rel_path, label = row.get("path", ""), row.get("label", "")
        where = rel_path or f"{manifest.name}:{line_number}"
        if not rel_path:
            quarantined.append(Quarantined(where, "bad_manifest_row", f"line {line_number} has no path"))
            continue
        if not label:
            quarantined.append(Quarantined(where, "no_label", f"line {line_number} has no label"))
            continue
        path = (root / rel_path).resolve() if not Path(rel_path).is_absolute() else Path(rel_path)
        if str(path) in seen:
            quarantined.append(Quarantined(where, "duplicate_manifest_row", f"line {line_number} repeats a path", label))
            continue
        seen.add(str(path))
        if not path.exists():
            quarantined.append(Quarantined(where, "missing_file", f"line {line_number}: no such file", label))
            continue
        attributes = tuple(sorted((k, v) for k, v in row.items() if k not in manifests.RESERVED_COLUMNS and k))
        entries.append(
            SourceEntry(
                path=str(path),
                rel_path=rel_path,
                label=label,
                family=row.get("family") or taxonomy.family_of(label, family_map),
                stone_id=row.get("stone_id", ""),
                attributes=attributes,
            )
        )
    return Discovery(str(root), "manifest", entries, quarantined, [])


def split_record(item: Ingested) -> "splits.Record":
    """What the split needs to know of an accepted photo."""
    return splits.Record(item.key, item.entry.label, item.image.phash, item.entry.stone_id or None,
                         item.image.stats.hue_histogram)


def load_entry(entry: SourceEntry, options: IngestionOptions, root: Optional[str] = None):
    """Loads one file: an `Ingested`, or a `Quarantined` with the reason. Never raises for bad content."""
    try:
        loaded = images.load_image_file(entry.path, root=root, max_pixels=options.max_pixels, max_side=options.max_side)
    except images.ImageRejected as e:
        return Quarantined(entry.rel_path, e.reason, e.detail, entry.label)
    return Ingested(entry, loaded)


def _bytes_feature(value: str | bytes) -> tf.train.Feature:
    import tensorflow as tf

    data = value if isinstance(value, bytes) else value.encode("utf-8")
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))


def _int_feature(value: int) -> tf.train.Feature:
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _float_feature(value: float) -> tf.train.Feature:
    import tensorflow as tf

    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))


def size_bucket(width: int, height: int) -> str:
    short_side = min(width, height)
    return next(name for limit, name in SIZE_BUCKETS if limit is None or short_side < limit)


def to_tf_example(item: Ingested, group_id: str) -> tf.train.Example:
    """The tf.Example the pipeline trains on: encoded image, labels, provenance."""
    import tensorflow as tf

    entry, image = item.entry, item.image
    features = {
        IMAGE_KEY: _bytes_feature(image.data),
        LABEL_KEY: _bytes_feature(entry.label),
        FAMILY_KEY: _bytes_feature(entry.family),
        "stone_id": _bytes_feature(entry.stone_id or group_id),
        "group_id": _bytes_feature(group_id),
        "source_path": _bytes_feature(entry.rel_path),
        "source_format": _bytes_feature(image.source_format),
        "width": _int_feature(image.width),
        "height": _int_feature(image.height),
        SIZE_BUCKET_KEY: _bytes_feature(size_bucket(image.width, image.height)),
        "sha256": _bytes_feature(image.sha256),
        "phash": _bytes_feature(image.phash),
    }
    # Image statistics as plain features: TFDV computes their distributions per split.
    for name, value in image.stats.numeric().items():
        features[name] = _float_feature(value)
    for name, value in entry.attributes:
        features.setdefault(name, _bytes_feature(value))
    return tf.train.Example(features=tf.train.Features(feature=features))


def iter_examples(examples_uri: str, split: str, keys: Iterable[str],
                  limit: Optional[int] = None) -> Iterator[Dict[str, bytes]]:
    """The named bytes features of a split's examples (as written by `to_tf_example`), in file order, one at a
    time: the first `limit` of them."""
    import tensorflow as tf

    files = tf.io.gfile.glob(posixpath.join(examples_uri, f"Split-{split}", "*"))
    if not files:
        raise FileNotFoundError(f"no examples in split '{split}' under {examples_uri}")
    spec = {key: tf.io.FixedLenFeature([], tf.string, default_value="") for key in keys}
    records = tf.data.TFRecordDataset(sorted(files), compression_type="GZIP")
    if limit is not None:
        records = records.take(limit)
    return ({k: v.numpy() for k, v in tf.io.parse_single_example(r, spec).items()} for r in records)


def read_examples(examples_uri: str, split: str, keys: Iterable[str], limit: Optional[int] = None,
                  keep: Optional[Callable[[Dict[str, bytes]], bool]] = None) -> List[Dict[str, bytes]]:
    """The named bytes features of a split's examples (iter_examples), in file order, in a list.

    `keep`: only the examples it accepts are returned (and held in memory).
    """
    return [example for example in iter_examples(examples_uri, split, keys, limit)
            if keep is None or keep(example)]


def class_balance(per_class: Dict[str, Dict[str, int]]) -> Dict[str, Any]:
    """How unequal the classes are, and which are rare (under half the median count)."""
    totals = {label: sum(splits.values()) for label, splits in per_class.items()}
    if not totals:
        return {"classes": 0}
    counts = sorted(totals.values())
    median = counts[len(counts) // 2] if len(counts) % 2 else (counts[len(counts) // 2 - 1] + counts[len(counts) // 2]) / 2
    return {
        "classes": len(totals),
        "smallest": min(totals.items(), key=lambda kv: (kv[1], kv[0])),
        "largest": max(totals.items(), key=lambda kv: (kv[1], kv[0])),
        "median": median,
        "imbalance_ratio": round(max(counts) / max(1, min(counts)), 2),
        "rare_classes": sorted(label for label, n in totals.items() if n < median / 2),
    }


def cross_class_groups(files: List[Dict[str, Any]]) -> List[List[Dict[str, str]]]:
    """The groups (same stone id, or near-duplicate photos) whose photos carry different labels: each photo's
    path and label. A copy in a second class folder, or a mislabel: worth a look before training."""
    members: Dict[str, List[Dict[str, str]]] = {}
    for f in files:
        if f["status"] == "accepted":
            members.setdefault(f["group"], []).append({"path": f["path"], "label": f["label"]})
    return sorted((m for m in members.values() if len({photo["label"] for photo in m}) > 1),
                  key=lambda m: m[0]["path"])


def build_report(discovery: Discovery, results: Iterable, split_of: Dict[str, str], group_of: Dict[str, str], summary: Dict[str, Any]) -> Dict[str, Any]:
    """The data report: every visible file exactly once, accepted (with split) or quarantined (with reason)."""
    files, by_reason, per_class = [], {}, {}
    for item in list(results) + list(discovery.quarantined):
        if isinstance(item, Ingested):
            split = split_of[item.key]
            files.append({
                "path": item.key, "status": "accepted", "label": item.entry.label, "family": item.entry.family,
                "split": split, "group": group_of[item.key], "format": item.image.source_format,
                "width": item.image.width, "height": item.image.height, "notes": list(item.image.notes),
                "stats": dataclasses.asdict(item.image.stats),
            })
            per_class.setdefault(item.entry.label, {}).setdefault(split, 0)
            per_class[item.entry.label][split] += 1
        else:
            files.append({"path": item.rel_path, "status": "quarantined", "reason": item.reason,
                          "detail": item.detail, "label": item.label})
            by_reason[item.reason] = by_reason.get(item.reason, 0) + 1
    files.sort(key=lambda f: f["path"])
    accepted_rows = [f for f in files if f["status"] == "accepted"]
    accepted = len(accepted_rows)
    return {
        "data_root": discovery.root,
        "layout": discovery.layout,
        "counts": {"files": len(files), "accepted": accepted, "quarantined": len(files) - accepted,
                   "ignored_hidden": len(discovery.ignored_hidden)},
        "quarantine_reasons": dict(sorted(by_reason.items())),
        "per_class": {label: per_class[label] for label in sorted(per_class)},
        "class_balance": class_balance(per_class),
        "splits": summary,
        "split_coverage": splits.coverage(per_class, list(summary.get("ratios", splits.DEFAULT_RATIOS))),
        "cross_class_groups": cross_class_groups(accepted_rows),
        "image_statistics": image_stats.compare_splits(accepted_rows),
        "ignored_hidden": sorted(discovery.ignored_hidden),
        "files": files,
    }
