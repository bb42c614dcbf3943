import random

import numpy as np
import pytest

from gemstone import splits
from gemstone.splits import Record


def _hex(value):
    return f"{value:016x}"


def _flip(value, bits):
    for bit in bits:
        value ^= 1 << bit
    return value


def _random_records(n_classes=10, per_class=50, seed=0):
    rng = random.Random(seed)
    return [Record(f"c{c}/img{i}.jpg", f"class{c}", _hex(rng.getrandbits(64)))
            for c in range(n_classes) for i in range(per_class)]


def _assert_no_group_crosses_splits(assignment):
    split_of_group = {}
    for key, group in assignment.group_of.items():
        assert split_of_group.setdefault(group, assignment.split_of[key]) == assignment.split_of[key], group


def test_hamming_grouping_matches_a_pure_python_reference():
    rng = random.Random(1)
    base = [rng.getrandbits(64) for _ in range(40)]
    # Half the hashes get near copies at distances 0..10 bits.
    values = base + [_flip(v, rng.sample(range(64), k=i % 11)) for i, v in enumerate(base[:20])]
    records = [Record(f"k{i:03d}", "x", _hex(v)) for i, v in enumerate(values)]
    groups = splits.near_duplicate_groups(records, max_distance=6)
    together = {frozenset(g) for g in groups}

    parent = list(range(len(values)))
    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            if bin(values[i] ^ values[j]).count("1") <= 6:
                parent[find(j)] = find(i)
    reference = {}
    for i in range(len(values)):
        reference.setdefault(find(i), set()).add(f"k{i:03d}")
    assert together == {frozenset(g) for g in reference.values()}
    assert any(len(g) > 1 for g in groups) and any(len(g) == 1 for g in groups)


def test_near_copies_join_transitively_and_far_ones_do_not():
    a = 0x0123456789ABCDEF
    b = _flip(a, range(5))          # 5 bits from a
    c = _flip(b, range(10, 15))     # 5 bits from b, 10 from a
    far = _flip(a, range(0, 64, 2))  # 32 bits away
    records = [Record(k, "x", _hex(v)) for k, v in zip("abcd", (a, b, c, far))]
    assert splits.near_duplicate_groups(records, max_distance=6) == [["a", "b", "c"], ["d"]]
    assert splits.near_duplicate_groups(records, max_distance=4) == [["a"], ["b"], ["c"], ["d"]]
    assert splits.near_duplicate_groups(records, max_distance=-1) == [["a"], ["b"], ["c"], ["d"]]


def test_shared_stone_id_joins_unlike_pictures():
    records = [Record("front", "Ruby", _hex(0), "stone-1"), Record("back", "Ruby", _hex(2**64 - 1), "stone-1"),
               Record("other", "Ruby", _hex(0x00FF00FF00FF00FF))]
    assert splits.near_duplicate_groups(records, max_distance=-1) == [["back", "front"], ["other"]]


def test_groups_never_cross_splits_and_classes_are_stratified():
    records = _random_records()
    # Make near-duplicate chains and multi-photo stones inside classes.
    rng = random.Random(2)
    for c in range(10):
        for i in range(0, 20, 4):
            original = records[c * 50 + i]
            records[c * 50 + i + 1] = Record(records[c * 50 + i + 1].key, original.label,
                                             _hex(_flip(int(original.phash, 16), rng.sample(range(64), 3))))
            records[c * 50 + i + 2] = Record(records[c * 50 + i + 2].key, original.label,
                                             records[c * 50 + i + 2].phash, stone_id=f"s{c}-{i}")
            records[c * 50 + i + 3] = Record(records[c * 50 + i + 3].key, original.label,
                                             records[c * 50 + i + 3].phash, stone_id=f"s{c}-{i}")
    assignment = splits.assign_splits(records)
    _assert_no_group_crosses_splits(assignment)
    assert assignment.n_multi_member_groups >= 100
    for label, counts in assignment.per_class_counts().items():
        total = sum(counts.values())
        for split, ratio in splits.DEFAULT_RATIOS.items():
            assert abs(counts[split] / total - ratio) <= 0.1, (label, counts)


@pytest.mark.parametrize("n, expected", [(1, {"train"}), (2, {"train", "eval"}), (3, {"train", "eval", "test"})])
def test_tiny_classes_reach_as_many_splits_as_they_can(n, expected):
    records = [Record(f"k{i}", "Rare", _hex(random.Random(i).getrandbits(64))) for i in range(n)]
    assignment = splits.assign_splits(records, max_distance=-1)
    assert set(assignment.split_of.values()) == expected


def test_result_is_independent_of_input_order_and_depends_on_the_seed():
    records = _random_records(n_classes=4, per_class=40)
    shuffled = records[:]
    random.Random(5).shuffle(shuffled)
    assert splits.assign_splits(records).split_of == splits.assign_splits(shuffled).split_of
    assert splits.assign_splits(records, seed=1).split_of != splits.assign_splits(records, seed=2).split_of


def test_cross_class_groups_are_counted_and_follow_the_majority():
    records = [Record("a", "Ruby", _hex(7)), Record("b", "Ruby", _hex(7)), Record("c", "Spinel", _hex(7)),
               Record("d", "Spinel", _hex(2**63))]
    assignment = splits.assign_splits(records)
    assert assignment.n_cross_class_groups == 1
    assert assignment.split_of["a"] == assignment.split_of["c"]
    assert assignment.summary()["cross_class_groups"] == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"ratios": {}}, "empty"),
    ({"ratios": {"train": 1.0, "eval": 0.0}}, "positive"),
])
def test_bad_ratios_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        splits.assign_splits(_random_records(n_classes=1, per_class=3), **kwargs)


def test_bad_hash_and_duplicate_keys_are_refused():
    with pytest.raises(ValueError, match="broken.jpg"):
        splits.assign_splits([Record("broken.jpg", "x", "xyz")])
    with pytest.raises(ValueError, match="duplicate key"):
        splits.assign_splits([Record("a", "x", _hex(1)), Record("a", "y", _hex(2))])


def test_thousands_of_records_are_grouped_in_blocks():
    rng = np.random.default_rng(0)
    records = [Record(f"k{i}", f"c{i % 50}", _hex(int(v))) for i, v in
               enumerate(rng.integers(0, 2**63, size=5000, dtype=np.int64))]
    assignment = splits.assign_splits(records)
    assert len(assignment.split_of) == 5000
    _assert_no_group_crosses_splits(assignment)
