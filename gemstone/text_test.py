"""Counts in words: one photo, two photos."""
import pytest

from gemstone.text import plural


@pytest.mark.parametrize("count, noun, expected", [
    (1, "photo", "1 photo"), (0, "photo", "0 photos"), (2, "photo", "2 photos"),
    (1, "class", "1 class"), (3, "class", "3 classes"), (2, "entry", "2 entries"), (2, "variety", "2 varieties"),
    (2, "key", "2 keys"), (2, "hidden file", "2 hidden files"), (1, "hidden file", "1 hidden file"),
    (1.0, "photo", "1 photo"), (40.0, "test photo", "40 test photos"),
])
def test_the_noun_agrees_with_the_count(count, noun, expected):
    assert plural(count, noun) == expected


def test_an_irregular_plural_is_given():
    assert plural(2, "datum", "data") == "2 data" and plural(1, "datum", "data") == "1 datum"
