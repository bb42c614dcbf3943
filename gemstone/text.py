"""Words for what people read: a count with its noun in agreement ("1 photo", "2 photos", "3 classes")."""
from __future__ import annotations

from typing import Optional


def plural_of(noun: str) -> str:
    """The English plural of a regular noun, or of a phrase ending in one ("hidden file": "hidden files")."""
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    return noun + "s"


def plural(count: float, noun: str, many: Optional[str] = None) -> str:
    """The count and its noun, singular for exactly one: plural(1, "photo") is "1 photo", plural(0, "class")
    "0 classes". `many`: the plural when it is not regular. Whole floats (TFMA's counts) print as integers."""
    if isinstance(count, float) and count.is_integer():
        count = int(count)
    return f"{count} {noun if count == 1 else many or plural_of(noun)}"
