"""Comparing outcomes: a retrieved value against the expected one, or an answer's text.

`same` is strict about types where the type is the point (Decimal, datetime,
enum, dataclass, set, tuple) and tolerant about float rounding. `in_text`
is how a text-only system is judged: every number of the expected value must
appear in the answer (rounded as people round) and every word-like atom
(names, dates, enum members) must appear too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import re
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

_EXACT_TYPES = (Decimal, dt.datetime, dt.date, enum.Enum, set, frozenset, tuple)


def same(actual: Any, expected: Any) -> bool:
    """True if ``actual`` is ``expected``, up to float rounding (rel 1e-6)."""
    try:
        return _same(actual, expected)
    except Exception:
        return False


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, pd.DataFrame):
        if not isinstance(actual, pd.DataFrame) or actual.shape != expected.shape:
            return False
        if list(map(str, actual.columns)) != list(map(str, expected.columns)):
            return False
        return all(_same_seq(list(actual[c]), list(expected[c])) for c in expected.columns) and _same_seq(
            list(actual.index), list(expected.index)
        )
    if isinstance(expected, pd.Series):
        return (
            isinstance(actual, pd.Series)
            and _same_seq(list(actual.index), list(expected.index))
            and _same_seq(list(actual), list(expected))
        )
    if isinstance(expected, np.ndarray):
        return (
            isinstance(actual, np.ndarray)
            and actual.shape == expected.shape
            and bool(np.allclose(actual, expected, rtol=1e-6, atol=1e-9))
        )
    if isinstance(expected, _EXACT_TYPES) and type(actual) is not type(expected):
        if not (isinstance(expected, enum.Enum) and isinstance(actual, enum.Enum)):
            return False
        return bool(actual.name == expected.name and actual.value == expected.value)
    if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        if type(actual).__name__ != type(expected).__name__ or not dataclasses.is_dataclass(actual):
            return False
        return _same(dataclasses.asdict(actual), dataclasses.asdict(expected))  # type: ignore[arg-type]
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and set(actual) == set(expected)
            and all(_same(actual[k], v) for k, v in expected.items())
        )
    if isinstance(expected, (set, frozenset)):
        return set(actual) == set(expected)
    if isinstance(expected, (list, tuple)):
        return isinstance(actual, (list, tuple)) and _same_seq(list(actual), list(expected))
    if isinstance(expected, bool) or expected is None:
        return actual is expected or actual == expected
    if isinstance(expected, float):
        return _close(float(actual), expected, 1e-6)
    if isinstance(expected, int):
        return not isinstance(actual, bool) and isinstance(actual, (int, np.integer)) and actual == expected
    return bool(actual == expected)


def _same_seq(actual: list[Any], expected: list[Any]) -> bool:
    return len(actual) == len(expected) and all(_same(a, e) for a, e in zip(actual, expected, strict=True))


def _close(a: float, b: float, rel: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


# -- text answers -------------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,_]*(?:\.\d+)?(?:[eE][-+]?\d+)?")


def numbers_in(text: str) -> list[float]:
    """Every number written in ``text`` (thousands separators allowed)."""
    found = []
    for match in _NUMBER.finditer(text):
        raw = match.group().replace(",", "").replace("_", "")
        try:
            found.append(float(raw))
        except ValueError:
            continue
    return found


def atoms(value: Any) -> tuple[list[float], list[str]]:
    """The numbers and the words a text must contain to state ``value``."""
    numbers: list[float] = []
    words: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, pd.DataFrame):
            for column in v.columns:
                walk(column) if not isinstance(column, (int, np.integer)) else None
                walk(list(v[column]))
            if not isinstance(v.index, pd.RangeIndex):
                walk(list(v.index))
        elif isinstance(v, pd.Series):
            if not isinstance(v.index, pd.RangeIndex):
                walk(list(v.index))
            walk(list(v))
        elif isinstance(v, np.ndarray):
            walk(v.tolist())
        elif isinstance(v, dict):
            for key, item in v.items():
                walk(key)
                walk(item)
        elif isinstance(v, (list, tuple, set, frozenset)):
            for item in v:
                walk(item)
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            walk(dataclasses.asdict(v))
        elif isinstance(v, enum.Enum):
            words.append(v.name)
        elif isinstance(v, bool):
            words.append(str(v))
        elif isinstance(v, (int, float, Decimal, np.integer, np.floating)):
            numbers.append(float(v))
        elif isinstance(v, pd.Timestamp | dt.datetime):
            words.append(v.strftime("%Y-%m-%d"))
            if (v.hour, v.minute) != (0, 0):
                words.append(v.strftime("%H:%M"))
        elif isinstance(v, dt.date):
            words.append(v.isoformat())
        elif isinstance(v, pd.Period):
            words.append(str(v))
        elif isinstance(v, str):
            if v.strip():
                words.append(v)
        elif v is not None:
            words.append(str(v))

    walk(value)
    return numbers, words


def in_text(value: Any, text: str) -> bool:
    """True if ``text`` states ``value``: each of its numbers and words appears.

    A list, tuple or array of plain items must be stated in its order.
    """
    if _is_sequence_of_scalars(value):
        return _in_order(list(value), text)
    numbers, words = atoms(value)
    said = numbers_in(text)
    lowered = text.lower()
    for word in words:
        if word.lower() not in lowered and not _bool_said(word, lowered):
            return False
    return all(any(_rounded_match(n, s) for s in said) for n in numbers)


def _is_sequence_of_scalars(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 1
    return isinstance(value, (list, tuple)) and all(
        isinstance(v, (str, int, float, Decimal)) and not isinstance(v, bool) for v in value
    )


def _in_order(items: list[Any], text: str) -> bool:
    lowered, position = text.lower(), 0
    for item in items:
        if isinstance(item, str):
            found = lowered.find(item.lower(), position)
            if found < 0:
                return False
            position = found + len(item)
            continue
        for match in _NUMBER.finditer(text, position):
            raw = match.group().replace(",", "").replace("_", "")
            if _rounded_match(float(item), float(raw)):
                position = match.end()
                break
        else:
            return False
    return True


def _bool_said(word: str, lowered: str) -> bool:
    return word in ("True", "False") and re.search(rf"\b{word.lower()}\b", lowered) is not None


def _rounded_match(expected: float, said: float) -> bool:
    """``said`` is ``expected`` as a person would write it (to 2 decimals; big numbers to 0.1%)."""
    if _close(said, expected, 1e-6):
        return True
    if abs(said - expected) <= 0.005 + 1e-9:
        return True
    return abs(expected) >= 100 and _close(said, expected, 1e-3)


def loosely_same(actual: Any, expected: Any) -> bool:
    """True if ``actual`` holds every number and word of ``expected``, in any layout."""
    numbers, words = atoms(actual)
    want_numbers, want_words = atoms(expected)
    have_words = " ".join(words).lower()
    return all(w.lower() in have_words for w in want_words) and all(
        any(_rounded_match(n, h) for h in numbers) for n in want_numbers
    )
