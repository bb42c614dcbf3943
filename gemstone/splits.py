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
import math
import numbers
import random
import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

DEFAULT_RATIOS = {"train": 0.7, "eval": 0.15, "test": 0.15}
# Near-duplicates must also agree in colour: L1 distance of hue histograms at most this.
DEFAULT_COLOUR_DISTANCE = 0.5
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_PAIRS_PER_BLOCK = 1 << 20  # distances computed at once: ~20 MB peak, whatever the collection size
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")  # int(x, 16) alone would accept "0x..", "_", spaces


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
    ratios: Dict[str, float]  # normalised
    n_groups: int
    n_multi_member_groups: int
    n_cross_class_groups: int  # groups holding more than one label: mislabels or a bad hash, worth a look

    def per_class_counts(self) -> Dict[str, Dict[str, int]]:
        counts: Dict[str, Dict[str, int]] = {}
        for key, split in self.split_of.items():
            counts.setdefault(self.label_of[key], dict.fromkeys(self.ratios, 0))[split] += 1
        return {label: counts[label] for label in sorted(counts)}

    def summary(self) -> dict:
        totals = dict.fromkeys(self.ratios, 0)
        for split in self.split_of.values():
            totals[split] += 1
        return {
            "ratios": dict(self.ratios),
            "examples_per_split": totals,
            "groups": self.n_groups,
            "near_duplicate_groups": self.n_multi_member_groups,
            "cross_class_groups": self.n_cross_class_groups,
        }


def coverage(per_class: Mapping[str, Mapping[str, int]], names: Sequence[str]) -> Dict[str, object]:
    """What the splits lack: the splits no photo went to, and for each class the other splits it has no photo in.

    Groups (one stone, near-duplicates) are dealt whole, so a class reaches every split only with at
    least as many groups as there are splits.
    """
    empty = [name for name in names if not any(counts.get(name) for counts in per_class.values())]
    missing = {label: [name for name in names if not counts.get(name) and name not in empty]
               for label, counts in sorted(per_class.items())}
    return {"empty_splits": empty, "classes_missing_from_splits": {label: m for label, m in missing.items() if m}}


def _hashes(records: Sequence[Record]) -> np.ndarray:
    for record in records:
        if not isinstance(record.phash, str) or not _HEX16.fullmatch(record.phash):
            raise ValueError(f"{record.key}: perceptual hash must be 16 hex digits, got {record.phash!r}")
    return np.array([int(record.phash, 16) for record in records], dtype=np.uint64)


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """len(a) x len(b) bit distances of uint64 hashes: XOR, then popcount byte by byte."""
    xor = np.ascontiguousarray(a[:, None] ^ b[None, :])
    counts = _POPCOUNT[xor.view(np.uint8)].view(np.uint64)
    # Multiplying by 0x0101.. adds the 8 byte counts up into the top byte: 2x faster than .sum(axis=2).
    counts *= np.uint64(0x0101010101010101)
    counts >>= np.uint64(56)
    return counts.astype(np.uint8)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]  # path halving keeps trees shallow
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def near_duplicate_groups(records: Iterable[Record], max_distance: int = 6,
                          max_colour_distance: float = DEFAULT_COLOUR_DISTANCE) -> List[List[str]]:
    """Keys joined by a shared stone id, or by a phash within `max_distance` bits (< 0: no hash join)
    and a hue histogram within `max_colour_distance` (when both records carry one)."""
    records = sorted(records, key=lambda r: r.key)
    for a, b in zip(records, records[1:]):
        if a.key == b.key:
            raise ValueError(f"duplicate key {a.key!r}")
    hashes = _hashes(records)  # validate even when the hash join is off
    union = _UnionFind(len(records))
    first_of_stone: Dict[str, int] = {}
    for i, record in enumerate(records):
        if record.stone_id:
            union.union(first_of_stone.setdefault(record.stone_id, i), i)
    if max_distance >= 0 and records:
        colours = [None if r.colour is None else np.asarray(r.colour, dtype=float) for r in records]
        rows = max(1, _PAIRS_PER_BLOCK // len(records))
        for start in range(0, len(records), rows):
            # Upper triangle only: each block against itself and the records after it.
            close = _hamming(hashes[start:start + rows], hashes[start:]) <= max_distance
            for i, j in zip(*np.nonzero(close)):
                a, b = start + int(i), start + int(j)
                if a >= b or union.find(a) == union.find(b):
                    continue
                if colours[a] is None or colours[b] is None or \
                        float(np.abs(colours[a] - colours[b]).sum()) <= max_colour_distance:
                    union.union(a, b)
    groups: Dict[int, List[str]] = {}
    for i, record in enumerate(records):
        groups.setdefault(union.find(i), []).append(record.key)
    return sorted(groups.values())  # members are already in key order


def _validated_ratios(ratios: Mapping[str, float]) -> Dict[str, float]:
    if not ratios:
        raise ValueError("split ratios are empty")
    if not all(isinstance(v, numbers.Real) and math.isfinite(v) and v > 0 for v in ratios.values()):
        raise ValueError(f"split ratios must all be positive finite numbers, got {dict(ratios)}")
    total = sum(ratios.values())
    return {name: value / total for name, value in ratios.items()}


def _group_id(keys: List[str]) -> str:
    return "g" + hashlib.sha1("\n".join(keys).encode("utf-8")).hexdigest()[:12]


def assign_splits(records: Iterable[Record], ratios: Mapping[str, float] = DEFAULT_RATIOS,
                  max_distance: int = 6, seed: int = 0,
                  max_colour_distance: float = DEFAULT_COLOUR_DISTANCE) -> SplitAssignment:
    """Deals whole groups to splits, per class, largest groups first, to the split furthest below target."""
    ratios = _validated_ratios(ratios)
    records = sorted(records, key=lambda r: r.key)
    label_of = {record.key: record.label for record in records}
    groups = near_duplicate_groups(records, max_distance, max_colour_distance)

    by_label: Dict[str, List[Tuple[str, List[str]]]] = {}
    n_cross_class = 0
    for keys in groups:
        labels = [label_of[k] for k in keys]
        n_cross_class += len(set(labels)) > 1
        # The group follows its majority label (ties: alphabetical), so it counts once.
        majority = max(sorted(set(labels)), key=labels.count)
        by_label.setdefault(majority, []).append((_group_id(keys), keys))

    split_of: Dict[str, str] = {}
    group_of: Dict[str, str] = {}
    names = list(ratios)
    for label in sorted(by_label):
        label_groups = sorted(by_label[label])
        random.Random(f"{seed}:{label}").shuffle(label_groups)
        label_groups.sort(key=lambda g: len(g[1]), reverse=True)  # stable: equal sizes stay shuffled
        total = sum(len(keys) for _, keys in label_groups)
        assigned = dict.fromkeys(names, 0)
        for left, (group, keys) in zip(range(len(label_groups), 0, -1), label_groups):
            # Once only as many groups are left as splits still empty, they go to the
            # empty splits (these are the smallest groups), so a class reaches every split it can.
            empty = [name for name in names if assigned[name] == 0]
            candidates = empty if left <= len(empty) else names
            target = max(candidates, key=lambda n: ratios[n] * total - assigned[n])
            assigned[target] += len(keys)
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
