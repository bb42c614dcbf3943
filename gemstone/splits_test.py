"""Group-aware, stratified, deterministic splits (gemstone.splits)."""
import dataclasses
import json
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
    return [Record(f"c{c}/img{i:03d}.jpg", f"class{c}", _hex(rng.getrandbits(64)))
            for c in range(n_classes) for i in range(per_class)]


def _reference_groups(values, max_distance):
    """Pure-python union-find over every pair."""
    parent = list(range(len(values)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            if bin(values[i] ^ values[j]).count("1") <= max_distance:
                parent[find(j)] = find(i)
    groups = {}
    for i in range(len(values)):
        groups.setdefault(find(i), set()).add(f"k{i:03d}")
    return {frozenset(g) for g in groups.values()}


def _assert_no_group_crosses_splits(assignment):
    split_of_group = {}
    for key, group in assignment.group_of.items():
        assert split_of_group.setdefault(group, assignment.split_of[key]) == assignment.split_of[key], group


def test_hamming_distances_match_python_popcount():
    rng = random.Random(0)
    values = [rng.getrandbits(64) for _ in range(60)] + [0, 2**64 - 1, 2**63, 1]  # high bit and extremes too
    a = np.array(values[:25], dtype=np.uint64)
    b = np.array(values, dtype=np.uint64)
    got = splits._hamming(a, b)
    assert got.shape == (25, len(values))
    assert got.tolist() == [[bin(x ^ y).count("1") for y in values] for x in values[:25]]
    assert splits._hamming(np.array([0], np.uint64), np.array([2**64 - 1], np.uint64)).tolist() == [[64]]


@pytest.mark.parametrize("block", [None, 7, 1])  # None: one block; small blocks exercise the block edges
def test_grouping_matches_a_pure_python_reference(monkeypatch, block):
    if block:
        monkeypatch.setattr(splits, "_PAIRS_PER_BLOCK", block * 60)  # 60 records -> `block` rows at once
    rng = random.Random(1)
    base = [rng.getrandbits(64) for _ in range(40)]
    # Half the hashes get near copies at distances 0..10 bits, so the threshold matters.
    values = base + [_flip(v, rng.sample(range(64), k=i % 11)) for i, v in enumerate(base[:20])]
    records = [Record(f"k{i:03d}", "x", _hex(v)) for i, v in enumerate(values)]
    for max_distance in (0, 6, 10):
        groups = splits.near_duplicate_groups(records, max_distance=max_distance)
        assert {frozenset(g) for g in groups} == _reference_groups(values, max_distance)
        assert groups == sorted(groups) and all(g == sorted(g) for g in groups)
    sixes = splits.near_duplicate_groups(records, max_distance=6)
    assert any(len(g) > 1 for g in sixes) and any(len(g) == 1 for g in sixes)


def test_near_copies_join_transitively_and_far_ones_do_not():
    a = 0x0123456789ABCDEF
    b = _flip(a, range(5))           # 5 bits from a
    c = _flip(b, range(10, 16))      # 6 bits from b, 11 from a: joins a only through b
    far = _flip(a, range(0, 64, 2))  # 32 bits away
    records = [Record(k, "x", _hex(v)) for k, v in zip("abcd", (a, b, c, far))]
    assert splits.near_duplicate_groups(records, max_distance=6) == [["a", "b", "c"], ["d"]]
    assert splits.near_duplicate_groups(records, max_distance=5) == [["a", "b"], ["c"], ["d"]]
    assert splits.near_duplicate_groups(records, max_distance=-1) == [["a"], ["b"], ["c"], ["d"]]


def test_shared_stone_id_joins_unlike_pictures_and_empty_ids_do_not():
    records = [Record("front", "Ruby", _hex(0), "stone-1"), Record("back", "Ruby", _hex(2**64 - 1), "stone-1"),
               Record("other", "Ruby", _hex(0x00FF00FF00FF00FF), "stone-2"),
               Record("x", "Ruby", _hex(0x0F0F0F0F0F0F0F0F), ""), Record("y", "Ruby", _hex(0xF0F0F0F0F0F0F0F0), "")]
    assert splits.near_duplicate_groups(records, max_distance=-1) == [["back", "front"], ["other"], ["x"], ["y"]]


def test_equal_hashes_in_different_colours_stay_apart():
    red, blue = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
    records = [Record("red", "Ruby", _hex(5), colour=red), Record("blue", "Sapphire", _hex(5), colour=blue),
               Record("red2", "Ruby", _hex(5), colour=(0.9, 0.1, 0.0)), Record("plain", "Ruby", _hex(5))]
    # "plain" carries no colour, so only its hash counts and it bridges everything.
    assert splits.near_duplicate_groups(records) == [["blue", "plain", "red", "red2"]]
    assert splits.near_duplicate_groups(records[:3]) == [["blue"], ["red", "red2"]]
    assert splits.near_duplicate_groups(records[:3], max_colour_distance=2.0) == [["blue", "red", "red2"]]
    same_stone = [Record("a", "Ruby", _hex(5), "s", red), Record("b", "Ruby", _hex(5), "s", blue)]
    assert splits.near_duplicate_groups(same_stone) == [["a", "b"]]  # a stone id joins whatever the colour


def _records_with_groups():
    """10 classes x 50 photos, with near-duplicate pairs and 2- and 3-photo stones in every class."""
    records = _random_records()
    rng = random.Random(2)
    for c in range(10):
        for i in range(0, 30, 6):
            k = c * 50 + i
            original = records[k]
            near = _flip(int(original.phash, 16), rng.sample(range(64), 3))
            records[k + 1] = dataclasses.replace(records[k + 1], phash=_hex(near))
            for j in (2, 3, 4):
                records[k + j] = dataclasses.replace(records[k + j], stone_id=f"s{c}-{i}")
            records[k + 5] = dataclasses.replace(records[k + 5], stone_id=f"s{c}-{i}b")
            records[k] = dataclasses.replace(original, stone_id=f"s{c}-{i}b")  # a stone spanning a near-dup pair
    return records


def test_groups_never_cross_splits_and_classes_are_stratified():
    records = _records_with_groups()
    assignment = splits.assign_splits(records)
    _assert_no_group_crosses_splits(assignment)
    assert len(set(assignment.group_of.values())) == assignment.n_groups
    assert assignment.n_multi_member_groups == 10 * 5 * 2
    groups = {}
    for key, group in assignment.group_of.items():
        groups.setdefault(group, set()).add(key)
    assert sorted(len(g) for g in groups.values() if len(g) > 1) == [3] * 100  # {k, k+1, k+5}, {k+2..k+4}
    counts = assignment.per_class_counts()
    assert sorted(counts) == [f"class{c}" for c in range(10)]
    for label, per_split in counts.items():
        total = sum(per_split.values())
        assert total == 50
        for split, ratio in splits.DEFAULT_RATIOS.items():
            assert abs(per_split[split] / total - ratio) <= 0.1, (label, per_split)


def test_group_ids_are_stable_strings_of_the_members():
    assignment = splits.assign_splits(_records_with_groups())
    records = _records_with_groups()
    again = splits.assign_splits(records[::-1], seed=3)
    assert assignment.group_of == again.group_of  # ids depend on members only, not on seed or order
    assert all(g.startswith("g") and len(g) == 13 for g in assignment.group_of.values())


@pytest.mark.parametrize("n, expected", [(1, {"train"}), (2, {"train", "eval"}), (3, {"train", "eval", "test"}),
                                         (4, {"train", "eval", "test"})])
def test_tiny_classes_reach_as_many_splits_as_they_can(n, expected):
    big = _random_records(n_classes=2, per_class=40, seed=9)
    rare = [Record(f"rare{i}", "Rare", _hex(random.Random(i).getrandbits(64))) for i in range(n)]
    assignment = splits.assign_splits(big + rare, max_distance=-1)
    assert set(assignment.per_class_counts()["Rare"]) == {"train", "eval", "test"}
    assert {s for s, c in assignment.per_class_counts()["Rare"].items() if c} == expected


def test_a_class_with_one_big_stone_still_fills_every_split():
    records = [Record(f"big{i}", "Opal", _hex(i << 20), "stone") for i in range(10)]
    records += [Record("single1", "Opal", _hex(0xAAAAAAAAAAAAAAAA)),
                Record("single2", "Opal", _hex(0x5555555555555555))]
    assignment = splits.assign_splits(records)
    assert assignment.per_class_counts()["Opal"] == {"train": 10, "eval": 1, "test": 1}
    # Two groups only: the stone goes to train, the rest to eval; test stays empty rather than split a stone.
    two = splits.assign_splits(records[:11])
    assert two.per_class_counts()["Opal"] == {"train": 10, "eval": 1, "test": 0}


def test_result_is_independent_of_input_order():
    records = _records_with_groups()
    shuffled = records[:]
    random.Random(5).shuffle(shuffled)
    a, b = splits.assign_splits(records, seed=4), splits.assign_splits(shuffled, seed=4)
    assert a.split_of == b.split_of and a.group_of == b.group_of and a.summary() == b.summary()


def test_same_seed_same_split_other_seed_other_split():
    records = _records_with_groups()
    assert splits.assign_splits(records, seed=1).split_of == splits.assign_splits(records, seed=1).split_of
    one, two = splits.assign_splits(records, seed=1), splits.assign_splits(records, seed=2)
    moved = sum(one.split_of[k] != two.split_of[k] for k in one.split_of)
    assert moved > 50
    assert one.per_class_counts() == two.per_class_counts()  # different photos, same proportions


def test_cross_class_groups_are_counted_and_follow_the_majority():
    r = [Record(k, label, _hex(0), stone) for k, label, stone in [
        ("a", "Ruby", "r"), ("b", "Ruby", "r"), ("c", "Spinel", "r"), ("d1", "Spinel", None), ("d2", "Spinel", None),
        ("e", "Zircon", "s"), ("f", "Beryl", "s"), ("z1", "Zircon", None), ("z2", "Zircon", None),
        ("b1", "Beryl", None), ("b2", "Beryl", None)]]
    assignment = splits.assign_splits(r, max_distance=-1)
    split_of = assignment.split_of
    assert assignment.n_cross_class_groups == 2 and assignment.summary()["cross_class_groups"] == 2
    assert split_of["a"] == split_of["c"] and split_of["e"] == split_of["f"]
    # {a, b, c} is dealt as Ruby, so Spinel has two singles left: train + eval (not eval + test).
    assert {split_of["d1"], split_of["d2"]} == {"train", "eval"}
    # The 1:1 tie {e, f} goes to Beryl (alphabetical): Beryl's singles get eval + test, Zircon's train + eval.
    assert {split_of["b1"], split_of["b2"]} == {"eval", "test"}
    assert {split_of["z1"], split_of["z2"]} == {"train", "eval"}
    assert assignment.per_class_counts()["Spinel"] == {"train": 2, "eval": 1, "test": 0}  # counts use own labels


def test_coverage_names_the_empty_splits_and_each_class_missing_from_another():
    rng = random.Random(5)
    records = [Record(f"{label}/{i}.jpg", label, _hex(rng.getrandbits(64)))
               for label, photos in (("Jade", 1), ("Onyx", 2), ("Opal", 1)) for i in range(photos)]
    assignment = splits.assign_splits(records, max_distance=-1)
    # One photo: train only; two: train and eval; so no photo at all in test, which is said once, not per class.
    assert splits.coverage(assignment.per_class_counts(), list(assignment.ratios)) == {
        "empty_splits": ["test"], "classes_missing_from_splits": {"Jade": ["eval"], "Opal": ["eval"]}}
    whole = splits.coverage({"Ruby": {"train": 7, "eval": 2, "test": 1}}, ["train", "eval", "test"])
    assert whole == {"empty_splits": [], "classes_missing_from_splits": {}}


def test_summary_is_json_and_counts_every_example():
    assignment = splits.assign_splits(_records_with_groups(), ratios={"train": 8, "eval": 2})
    summary = json.loads(json.dumps(assignment.summary()))
    assert summary["ratios"] == {"train": 0.8, "eval": 0.2}
    assert sum(summary["examples_per_split"].values()) == 500
    assert summary["examples_per_split"]["train"] == pytest.approx(400, abs=25)
    assert summary["groups"] == assignment.n_groups == 500 - 10 * 5 * 4
    assert summary["near_duplicate_groups"] == 100 and summary["cross_class_groups"] == 0
    assert set(assignment.split_of.values()) == {"train", "eval"}


@pytest.mark.parametrize("ratios, message", [
    ({}, "empty"),
    ({"train": 1.0, "eval": 0.0}, "positive"),
    ({"train": 1.0, "eval": -0.5}, "positive"),
    ({"train": float("nan")}, "positive"),
    ({"train": float("inf"), "eval": 1}, "positive"),
    ({"train": "0.7"}, "positive"),
])
def test_bad_ratios_are_refused(ratios, message):
    with pytest.raises(ValueError, match=message):
        splits.assign_splits(_random_records(n_classes=1, per_class=3), ratios=ratios)


@pytest.mark.parametrize("phash", ["xyz", "0123456789abcde", "0123456789abcdef0", "0x23456789abcdef",
                                   "0123_56789abcdef", " 123456789abcdef", "0123456789abcdeg", None])
def test_bad_hashes_are_refused_naming_the_file(phash):
    records = [Record("fine.jpg", "x", _hex(1)), Record("broken.jpg", "x", phash)]
    with pytest.raises(ValueError, match="broken.jpg"):
        splits.assign_splits(records)
    with pytest.raises(ValueError, match="broken.jpg"):
        splits.near_duplicate_groups(records, max_distance=-1)  # checked even with the hash join off


def test_upper_case_hashes_are_fine_and_duplicate_keys_are_refused():
    assert splits.near_duplicate_groups([Record("a", "x", "ABCDEF0123456789"),
                                         Record("b", "x", "abcdef0123456789")]) == [["a", "b"]]
    with pytest.raises(ValueError, match="duplicate key 'a'"):
        splits.assign_splits([Record("a", "x", _hex(1)), Record("b", "x", _hex(3)), Record("a", "y", _hex(2))])


def test_empty_input_gives_an_empty_assignment():
    assignment = splits.assign_splits([])
    assert assignment.split_of == {} and assignment.n_groups == 0 and assignment.per_class_counts() == {}


def test_thousands_of_records_are_grouped_in_blocks():
    rng = np.random.default_rng(0)
    values = [int(v) for v in rng.integers(0, 2**63, size=5000, dtype=np.int64)]
    values[4999] = values[0] ^ 0b1011  # one near-duplicate pair, far apart in key order
    records = [Record(f"k{i:04d}", f"c{i % 50}", _hex(v)) for i, v in enumerate(values)]
    assignment = splits.assign_splits(records)
    assert len(assignment.split_of) == 5000
    assert assignment.group_of["k0000"] == assignment.group_of["k4999"]
    _assert_no_group_crosses_splits(assignment)
