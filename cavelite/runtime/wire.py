"""How a message travels: one plain-data pickle, checked field by field on arrival.

A message (see `messages`) is pickled as ``(kind, fields, released)``: the
kind's name, its fields as a tuple (nested records as tuples too) and the
remote references the worker let go of. Plain data means the host decodes
it with an unpickler that may load *no* globals at all, and then every field
is checked against its declared type and bound. That check is where
promise 4 lives: a field of the wrong type (a numpy string, a cell-made
``str`` subclass), an oversized one, an unknown kind or a missing field is
a `ProtocolError`, never a value the host acts on.

The worker encodes with ``coerce=True``, which first turns whatever a cell
produced into plain, bounded values, so that a hostile or odd value in a
repr or an exception name can never make an honest worker send a message
the host refuses. The field codecs are compiled once per kind and `Limits`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import io
import math
import pickle
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

from ..errors import ProtocolError
from ..security.decode import PlainUnpickler
from ..security.violation import Violation
from .messages import HOST_KINDS, WORKER_KINDS, ZYGOTE_KINDS, Limits, Message
from .results import CellError, Figure, VariableInfo

Convert = Callable[[Any], Any]


def plain_text(value: Any, limit: int) -> str:
    """``value`` as a plain ``str`` of at most ``limit`` characters, without running its code.

    ``str.__str__`` of a ``str`` subclass (numpy's ``str_``, one a cell made)
    copies the characters in C: no ``__str__`` or ``__repr__`` of the value runs.
    """
    if type(value) is not str:
        value = str.__str__(value) if isinstance(value, str) else f"<{type(value).__name__}>"
    text: str = value
    if len(text) > limit:
        keep = max(limit - 40, 0)
        text = f"{text[:keep]}... [{len(text) - keep} more chars]"[:limit]
    return text


def _fail(what: str) -> ProtocolError:
    return ProtocolError(f"the worker sent a malformed message: {what}")


# Bounds of the fields of the public result records (they are not wire-only classes).
_RECORD_LIMITS = {
    (VariableInfo, "name"): "name", (VariableInfo, "type_name"): "name",
    (VariableInfo, "summary"): "summary",
    (Violation, "rule"): "name", (Violation, "snippet"): "summary", (Violation, "hint"): "text",
    (CellError, "type"): "name", (CellError, "traceback"): "traceback",
    (Figure, "mime_type"): "name", (Figure, "data"): "figure_bytes",
}


def _fields(cls: type) -> list[tuple[str, Any, str, str]]:
    """Each field's name, type, bound (a `Limits` name) and, for lists, the bound of their length."""
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name], f.metadata.get("limit") or _RECORD_LIMITS.get((cls, f.name), "text"),
             f.metadata.get("count", "items")) for f in dataclasses.fields(cls)]


# --- checking (host side: wire -> value, strict) --------------------------------------------

def _checker(hint: Any, limit_name: str, limits: Limits, count_name: str = "items") -> Convert:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = _checker([a for a in get_args(hint) if a is not type(None)][0], limit_name, limits)
        return lambda v: None if v is None else inner(v)
    if origin is tuple:
        item = _checker(get_args(hint)[0], limit_name, limits)
        most = getattr(limits, count_name)

        def check_list(value: Any) -> Any:
            if type(value) is not tuple:
                raise _fail(f"expected a list, got {type(value).__name__}")
            if len(value) > most:
                raise _fail(f"a list of {len(value)} entries (limit {most})")
            return tuple(map(item, value))
        return check_list
    if origin is Literal:
        allowed = get_args(hint)

        def check_literal(value: Any) -> Any:
            if type(value) is not str or value not in allowed:
                raise _fail(f"unexpected value {plain_text(value, 40)!r}")
            return value
        return check_literal
    if hint in (str, bytes):
        limit = getattr(limits, limit_name)

        def check_text(value: Any) -> Any:
            if type(value) is not hint:
                raise _fail(f"expected {hint.__name__}, got {type(value).__name__}")
            if len(value) > limit:
                raise _fail(f"a field of {len(value)} characters or bytes (limit {limit})")
            return value
        return check_text
    if hint in (bool, int, float):
        def check_number(value: Any) -> Any:
            if type(value) is not hint:
                raise _fail(f"expected {hint.__name__}, got {type(value).__name__}")
            if hint is int and not -(1 << 62) <= value <= 1 << 62:
                raise _fail("an integer field out of range")
            if hint is float and not math.isfinite(value):
                raise _fail("a non-finite number")
            return value
        return check_number
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
        def check_enum(value: Any) -> Any:
            try:
                return hint(value) if type(value) is str else hint("")
            except ValueError:
                raise _fail(f"unknown {hint.__name__} {plain_text(value, 40)!r}") from None
        return check_enum
    if dataclasses.is_dataclass(hint):
        return _record_checker(hint, limits)  # type: ignore[arg-type]
    raise TypeError(f"no wire form for {hint!r}")


def _record_checker(cls: type, limits: Limits) -> Convert:
    checks = [_checker(hint, limit, limits, most) for _name, hint, limit, most in _fields(cls)]
    count = len(checks)

    def check_record(value: Any) -> Any:
        if type(value) is not tuple or len(value) != count:
            raise _fail(f"a malformed {cls.__name__} record")
        fields = [check(v) for check, v in zip(checks, value)]  # noqa: B905 - length checked
        try:
            return cls(*fields)
        except ValueError as exc:  # the record's own check (a figure's PNG header)
            why = plain_text(str(exc), 200)
            raise _fail(f"a {cls.__name__} record that fails its check: {why}") from None
    return check_record


# --- coercing (worker side: value -> plain, bounded wire form) ------------------------------

def _coercer(hint: Any, limit_name: str, limits: Limits, count_name: str = "items") -> Convert:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = _coercer([a for a in get_args(hint) if a is not type(None)][0], limit_name, limits)
        return lambda v: None if v is None else inner(v)
    if origin is tuple:
        item = _coercer(get_args(hint)[0], limit_name, limits)
        most = getattr(limits, count_name)
        return lambda v: tuple(map(item, tuple(v)[:most]))
    if hint is str or origin is Literal:
        limit = getattr(limits, limit_name)
        return lambda v: v if type(v) is str and len(v) <= limit else plain_text(v, limit)
    if hint is float:
        return lambda v: float(v) if math.isfinite(float(v)) else 0.0
    if hint in (bool, int, bytes):
        return lambda v: v if type(v) is hint else hint(v)
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
        return lambda v: hint(v).value
    if dataclasses.is_dataclass(hint):
        parts = [(name, _coercer(h, limit, limits, count))
                 for name, h, limit, count in _fields(hint)]  # type: ignore[arg-type]
        return lambda v: tuple(coerce(getattr(v, name)) for name, coerce in parts)
    raise TypeError(f"no wire form for {hint!r}")


_KINDS: dict[str, type[Any]] = {cls.KIND: cls for cls in (*HOST_KINDS, *WORKER_KINDS, *ZYGOTE_KINDS)}
_NAMES = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _KINDS.values()}
DEFAULT_LIMITS = Limits()


@functools.lru_cache(maxsize=256)
def _checks(cls: Any, limits: Limits) -> tuple[Convert, ...]:
    return tuple(_checker(hint, limit, limits, count) for _name, hint, limit, count in _fields(cls))


@functools.lru_cache(maxsize=256)
def _coercers(cls: Any, limits: Limits) -> tuple[Convert, ...]:
    return tuple(_coercer(hint, limit, limits, count) for _name, hint, limit, count in _fields(cls))


# --- encoding and decoding -------------------------------------------------------------------

def _as_wire(value: Any) -> Any:
    """Records as tuples, enums as their values (no coercion: the sender is trusted)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(_as_wire(getattr(value, f.name)) for f in dataclasses.fields(value))
    if type(value) is tuple:
        return tuple(_as_wire(v) for v in value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def encode(message: Message, released: tuple[int, ...] = (), *, coerce: bool = False,
           limits: Limits = DEFAULT_LIMITS) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """Pickle a message as plain data; out-of-band buffers are returned separately.

    ``coerce=True`` (the worker) makes every field plain and bounded first, so
    that whatever a cell left in a repr or an error can always be sent.
    """
    cls = type(message)
    values = [getattr(message, name) for name in _NAMES[cls]]
    if coerce:
        coercers = _coercers(cls, limits)  # type: ignore[arg-type]
        values = [convert(v) for convert, v in zip(coercers, values)]  # noqa: B905
    else:
        values = [_as_wire(v) for v in values]
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps((cls.KIND, tuple(values), released), protocol=5,
                        buffer_callback=buffers.append)
    return body, buffers


def _head(body: bytes, accept: tuple[type[Any], ...]) -> tuple[type[Any], tuple[Any, ...], Any]:
    try:
        head = PlainUnpickler(io.BytesIO(body)).load()
    except Exception as exc:  # anything a hostile byte stream can provoke
        raise _fail(f"undecodable ({type(exc).__name__}: {plain_text(str(exc), 200)})") from None
    if type(head) is not tuple or len(head) != 3 or type(head[0]) is not str:
        raise _fail("not a (kind, fields, released) triple")
    kind, fields, released = head
    cls = _KINDS.get(kind)
    if cls is None or cls not in accept:
        raise _fail(f"unexpected message kind {plain_text(kind, 40)!r}")
    if type(fields) is not tuple or len(fields) != len(_NAMES[cls]):
        raise _fail(f"a {cls.__name__} with {len(fields) if type(fields) is tuple else '?'} fields")
    return cls, fields, released


def decode(body: bytes, *, accept: tuple[type[Any], ...],
           limits: Limits = DEFAULT_LIMITS) -> tuple[Any, tuple[int, ...]]:
    """Decode and check one message of one of the ``accept`` kinds; returns it and the releases.

    The unpickler loads no globals at all: only plain data can come out of it.
    """
    cls, fields, released = _head(body, accept)
    if type(released) is not tuple or len(released) > limits.items or any(
            type(r) is not int for r in released):
        raise _fail("a malformed list of released references")
    checks = _checks(cls, limits)  # type: ignore[arg-type]
    return cls(*[check(value) for check, value in zip(checks, fields)]), released  # noqa: B905


def decode_request(body: bytes, *, accept: tuple[type[Any], ...]) -> Any:
    """Decode a request from the host (in the worker or the zygote).

    The host is trusted: the shape is checked (plain data, a known kind, the
    right number of fields), its fields are taken as they are.
    """
    cls, fields, _released = _head(body, accept)
    return cls(*fields)
