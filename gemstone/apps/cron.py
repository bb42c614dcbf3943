"""Cron expressions as Kubeflow Pipelines reads them, checked field by field before anything is uploaded.

Five fields (minute hour day month weekday), or six with seconds first (KFP's own form,
robfig/cron's). Each field is a comma-separated list of `*`, `N`, `N-M`, each with an
optional `/step`; months and weekdays may be named (JAN-DEC, SUN-SAT); `?` stands for
`*` in the day and weekday fields. Weekdays run 0-6 from Sunday, as KFP counts them.
"""
from __future__ import annotations

import re
from typing import List, NamedTuple, Optional

from gemstone.text import plural


class CronError(ValueError):
    """What is wrong with an expression, in one phrase."""


class Field(NamedTuple):
    name: str
    low: int
    high: int
    names: Optional[List[str]] = None  # names for low, low + 1, ...
    any_mark: bool = False  # accepts `?`


MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
WEEKDAYS = "SUN MON TUE WED THU FRI SAT".split()
FIVE_FIELDS = (Field("minute", 0, 59), Field("hour", 0, 23), Field("day", 1, 31, any_mark=True),
               Field("month", 1, 12, MONTHS), Field("weekday", 0, 6, WEEKDAYS, any_mark=True))
SIX_FIELDS = (Field("second", 0, 59), *FIVE_FIELDS)
_ELEMENT = re.compile(r"(?P<range>\*|\?|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?")


def validate(expression: str) -> str:
    """The expression in KFP's six-field form (seconds first: "0 2 * * *" is "0 0 2 * * *"); CronError naming
    the first field that KFP would refuse or read otherwise than meant."""
    parts = expression.split()
    if len(parts) not in (5, 6):
        raise CronError(f"{plural(len(parts), 'field')}, not 5 (minute hour day month weekday)")
    for field, text in zip(FIVE_FIELDS if len(parts) == 5 else SIX_FIELDS, parts):
        for element in text.split(","):
            _check_element(field, element)
    return " ".join(["0"] * (6 - len(parts)) + parts)


def _check_element(field: Field, element: str) -> None:
    match = _ELEMENT.fullmatch(element)
    if not match:
        raise CronError(f"{field.name} {element!r} is not N, N-M, * or a step (*/N)")
    if match["step"] is not None and int(match["step"]) < 1:
        raise CronError(f"{field.name} {element!r}: a step must be 1 or more")
    if match["range"] == "?" and not field.any_mark:
        raise CronError(f"{field.name} '?': only the day and the weekday may be '?'")
    if match["range"] in ("*", "?"):
        return
    bounds = [_value(field, word) for word in match["range"].split("-")]
    if len(bounds) == 2 and bounds[0] > bounds[1]:
        raise CronError(f"{field.name} {element!r}: the range runs backwards")


def _value(field: Field, word: str) -> int:
    if word.isdigit():
        value = int(word)
    elif field.names and word.upper() in field.names:
        return field.low + field.names.index(word.upper())
    else:
        names = f" or a name ({field.names[0]}-{field.names[-1]})" if field.names else ""
        raise CronError(f"{field.name} {word!r} is not a number{names}")
    if not field.low <= value <= field.high:
        raise CronError(f"{field.name} {value} is out of range {field.low}-{field.high}")
    return value

