"""Leakage-safe train / eval / test splits.

Photos of one stone, and near-duplicate photos (same picture re-cropped or
re-scaled), must land in the same split; otherwise the model is evaluated on
pictures it has practically seen and accuracy is overstated. So files are first
joined into groups (shared stone id, or perceptual hashes within a Hamming
distance), then whole groups are dealt to splits, class by class, to keep every
class's proportions close to the requested ratios.

Deterministic for a seed and independent of the order of the input.
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

DEFAULT_RATIOS = {"train": 0.7, "eval": 0.15, "test": 0.15}
# Near-duplicates must also agree in colour: L1 distance of hue histograms at most this.
DEFAULT_COLOUR_DISTANCE = 0.5
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_BLOCK = 1024  # rows of the pairwise distance matrix computed at once (bounded memory)


@dataclasses.dataclass(frozen=True)
class Record:
    key: str
    label: str
    phash: str  # 16 hex digits: a 64-bit perceptual hash
    stone_id: Optional[str] = None
    # Hue histogram (summing to 1). The perceptual hash sees only grey
    # structure: two round stones centred on white can hash alike in any colour.
    colour: Optional[Tuple[float, ...]] = None


@dataclasses.dataclass
class SplitAssignment:
    split_of: Dict[str, str]  # key -> split name
    group_of: Dict[str, str]  # key -> group id
    label_of: Dict[str, str]  # key -> label
    ratios: Dict[str, float]
    n_groups: int
    n_multi_member_groups: int
    n_cross_class_groups: int  # groups holding more than one label: worth a look

    def per_class_counts(self) -> Dict[str, Dict[str, int]]:
        counts: Dict[str, Dict[str, int]] = {}
        for key, split in self.split_of.items():
            per_split = counts.setdefault(self.label_of[key], {name: 0 for name in self.ratios})
            per_split[split] += 1
        return {label: counts[label] for label in sorted(counts)}

    def summary(self) -> dict:
        totals = {name: 0 for name in self.ratios}
        for split in self.split_of.values():
            totals[split] += 1
        return {
            "ratios": self.ratios,
            "examples_per_split": totals,
            "groups": self.n_groups,
            "near_duplicate_groups": self.n_multi_member_groups,
            "cross_class_groups": self.n_cross_class_groups,
        }


def _hashes(records: Sequence[Record]) -> np.ndarray:
    values = []
    for record in records:
        try:
            if len(record.phash) != 16:
                raise ValueError
            values.append(int(record.phash, 16))
        except ValueError:
            raise ValueError(f"{record.key}: perceptual hash must be 16 hex digits, got {record.phash!r}") from None
    return np.array(values, dtype=np.uint64)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def _check_keys(records: Sequence[Record]) -> None:
    seen = set()
    for record in records:
        if record.key in seen:
            raise ValueError(f"duplicate key {record.key!r}")
        seen.add(record.key)


def _same_colour(a: Record, b: Record, max_colour_distance: float) -> bool:
    if a.colour is None or b.colour is None:
        return True
    return float(np.abs(np.asarray(a.colour) - np.asarray(b.colour)).sum()) <= max_colour_distance


def near_duplicate_groups(records: Iterable[Record], max_distance: int = 6,
                          max_colour_distance: float = DEFAULT_COLOUR_DISTANCE) -> List[List[str]]:
    """Keys joined by a shared stone id, or by a phash within `max_distance` bits (< 0: no hash join)
    and a hue histogram within `max_colour_distance` (when records carry one)."""
    records = sorted(records, key=lambda r: r.key)
    _check_keys(records)
    union = _UnionFind(len(records))
    first_of_stone: Dict[str, int] = {}
    for i, record in enumerate(records):
        if record.stone_id:
            union.union(first_of_stone.setdefault(record.stone_id, i), i)
    if max_distance >= 0 and records:
        hashes = _hashes(records)
        for start in range(0, len(hashes), _BLOCK):
            block = hashes[start:start + _BLOCK]
            xor = block[:, None] ^ hashes[None, :]
            distance = _POPCOUNT[xor.view(np.uint8)].reshape(len(block), len(hashes), 8).sum(axis=2)
            for i, j in zip(*np.nonzero(distance <= max_distance)):
                a, b = start + int(i), int(j)
                if a < b and _same_colour(records[a], records[b], max_colour_distance):
                    union.union(a, b)
    groups: Dict[int, List[str]] = {}
    for i, record in enumerate(records):
        groups.setdefault(union.find(i), []).append(record.key)
    return sorted(sorted(keys) for keys in groups.values())


def _validated_ratios(ratios: Mapping[str, float]) -> Dict[str, float]:
    if not ratios:
        raise ValueError("split ratios are empty")
    if any(not value > 0 for value in ratios.values()):
        raise ValueError(f"split ratios must all be positive, got {dict(ratios)}")
    total = sum(ratios.values())
    return {name: value / total for name, value in ratios.items()}


def _group_id(keys: List[str]) -> str:
    return "g" + hashlib.sha1("\n".join(keys).encode("utf-8")).hexdigest()[:12]


def assign_splits(records: Iterable[Record], ratios: Mapping[str, float] = DEFAULT_RATIOS,
                  max_distance: int = 6, seed: int = 0,
                  max_colour_distance: float = DEFAULT_COLOUR_DISTANCE) -> SplitAssignment:
    """Deals whole groups to splits, per class, largest groups first, to the split furthest below target."""
    ratios = _validated_ratios(ratios)
    records = list(records)
    label_of = {record.key: record.label for record in records}
    groups = near_duplicate_groups(records, max_distance, max_colour_distance)

    by_label: Dict[str, List[List[str]]] = {}
    n_cross_class = 0
    for keys in groups:
        labels = sorted(label_of[k] for k in keys)
        if len(set(labels)) > 1:
            n_cross_class += 1
        # The group follows its majority label (ties: alphabetical), so it counts once.
        majority = max(sorted(set(labels)), key=labels.count)
        by_label.setdefault(majority, []).append(keys)

    split_of: Dict[str, str] = {}
    group_of: Dict[str, str] = {}
    names = list(ratios)
    for label in sorted(by_label):
        label_groups = by_label[label]
        random.Random(f"{seed}:{label}").shuffle(label_groups)
        label_groups.sort(key=len, reverse=True)  # stable: equal sizes keep the shuffled order
        total = sum(len(keys) for keys in label_groups)
        assigned = {name: 0 for name in names}
        for keys in label_groups:
            # An empty split is filled first (train before eval before test), so
            # small classes still appear everywhere they can.
            empty = [name for name in names if assigned[name] == 0]
            target = empty[0] if empty else max(names, key=lambda n: ratios[n] * total - assigned[n])
            assigned[target] += len(keys)
            group = _group_id(keys)
            for key in keys:
                split_of[key], group_of[key] = target, group
    return SplitAssignment(
        split_of=split_of,
        group_of=group_of,
        label_of=label_of,
        ratios=ratios,
        n_groups=len(groups),
        n_multi_member_groups=sum(1 for keys in groups if len(keys) > 1),
        n_cross_class_groups=n_cross_class,
    )
