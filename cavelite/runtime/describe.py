"""Bounded, exact descriptions of objects for a model to read.

Runs inside the worker (model-made ``__repr__``/``__len__`` must never run
in the host), so it must never fail and never be large: every path is
wrapped, every string is cut to a budget.
"""

from __future__ import annotations

import datetime
import decimal
from itertools import islice
from typing import Any

MAX_SUMMARY = 300


def type_name(obj: Any) -> str:
    t = type(obj)
    module = getattr(t, "__module__", "") or ""
    name = getattr(t, "__qualname__", t.__name__)
    if module in ("builtins", "__main__"):
        return name
    if module.startswith("pandas"):
        return f"pandas.{t.__name__}"
    if module.startswith("numpy"):
        return f"numpy.{t.__name__}"
    if module.startswith("cavelite."):
        return t.__name__
    return f"{module}.{name}"


def cut(text: str, limit: int) -> str:
    """Shorten ``text`` to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = max(limit - 30, 10)
    return f"{text[:keep]}... [{len(text) - keep} more chars]"


def summarize(obj: Any, limit: int = MAX_SUMMARY) -> str:
    """A one-line summary: shape/columns/dtypes for tables, length and element types for containers."""
    try:
        return cut(_summary(obj), limit)
    except Exception as exc:  # a broken __len__/__repr__ must not break the listing
        return f"<summary unavailable: {type(exc).__name__}>"


def _summary(obj: Any) -> str:
    mod = type(obj).__module__ or ""
    if mod.startswith("pandas"):
        return _pandas_summary(obj)
    if mod.startswith("numpy"):
        shape = getattr(obj, "shape", None)
        if shape is not None and shape != ():
            return f"shape={shape} dtype={obj.dtype}"
        return repr(obj)
    if obj is None or isinstance(obj, (bool, int, float, complex)):
        return cut(repr(obj), 80)
    if isinstance(obj, str):
        preview = repr(obj[:60]) + ("..." if len(obj) > 60 else "")
        return f"str, {len(obj)} chars: {preview}"
    if isinstance(obj, (bytes, bytearray)):
        return f"{type(obj).__name__}, {len(obj)} bytes"
    if isinstance(obj, (dict, list, tuple, set, frozenset)) and (shown := _small_container(obj)):
        return shown
    if isinstance(obj, dict):
        # islice, not list(...)[:n]: summaries run after every cell, on every container.
        keys = list(islice(obj, 8))
        types_ = sorted({type(v).__name__ for v in islice(obj.values(), 50)})
        more = ", ..." if len(obj) > 8 else ""
        return f"{len(obj)} keys [{', '.join(map(_short_repr, keys))}{more}] values: {'|'.join(types_)}"
    if isinstance(obj, (list, tuple, set, frozenset)):
        types_ = sorted({type(v).__name__ for v in islice(obj, 50)})
        return f"{len(obj)} items of {'|'.join(types_) or 'nothing'}"
    if callable(obj) and hasattr(obj, "__name__"):
        import inspect

        try:
            return f"{obj.__name__}{inspect.signature(obj)}"
        except (TypeError, ValueError):
            return f"{obj.__name__}(...)"
    return cut(repr(obj), 200)


MAX_SHOWN_ITEMS = 20
MAX_SHOWN_CHARS = 160
_SCALARS = (type(None), bool, int, float, str, bytes, decimal.Decimal, datetime.date, datetime.time,
            datetime.timedelta)


def _small_container(obj: Any) -> str | None:
    """A short container of plain values, shown as its values: a model needs them, not "3 items of str".

    Only when every item is a short scalar, so building the text stays cheap.
    """
    if len(obj) > MAX_SHOWN_ITEMS:
        return None
    items = list(obj.items()) if isinstance(obj, dict) else [(None, v) for v in obj]
    for key, value in items:
        for part in (key, value):
            if type(part) not in _SCALARS or (isinstance(part, (str, bytes)) and len(part) > 40):
                return None
    text = repr(obj)
    if len(text) > MAX_SHOWN_CHARS:
        return None
    unit = "key" if isinstance(obj, dict) else "item"
    return f"{len(obj)} {unit}{'' if len(obj) == 1 else 's'}: {text}"


def _short_repr(value: Any) -> str:
    return cut(repr(value), 30)


def _pandas_summary(obj: Any) -> str:
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        cols = [f"{c}:{t}" for c, t in zip(obj.columns[:20], obj.dtypes[:20], strict=False)]
        more = f", ... (+{len(obj.columns) - 20} columns)" if len(obj.columns) > 20 else ""
        return f"{obj.shape[0]} rows x {obj.shape[1]} columns [{', '.join(cols)}{more}]"
    if isinstance(obj, pd.Series):
        return f"{len(obj)} values, dtype={obj.dtype}, name={obj.name!r}"
    if isinstance(obj, pd.Index):
        return f"{type(obj).__name__} of {len(obj)}, dtype={obj.dtype}"
    return repr(obj)


def bounded_repr(obj: Any, limit: int) -> str:
    """``repr(obj)`` cut to ``limit`` characters (pandas/numpy print their own short forms)."""
    try:
        text = repr(obj)
    except Exception as exc:
        return f"<repr failed: {type(exc).__name__}: {exc}>"
    return cut(text, limit)
