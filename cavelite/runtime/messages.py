"""Every message between host, zygote and worker, as a typed frozen dataclass.

This module is the contract between the three processes. A message travels
as one plain-data pickle, ``(kind, fields, released)``: the kind's name, its
fields as a tuple (nested records as tuples too) and the remote references
the worker let go of. Plain data means the host decodes it with an
unpickler that may load *no* globals at all, and then `decode` checks every
field against its declared type and bound. That check is where promise 4
lives: a field of the wrong type (a numpy string, a cell-made ``str``
subclass), an oversized one, an unknown kind or a missing field is a
`ProtocolError`, never a value the host acts on.

The worker builds its replies through `encode(..., coerce=True)`, which
turns whatever a cell produced into plain, bounded values first, so a
hostile or odd value in a repr or an exception name can never make an
honest worker send a message the host refuses.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import math
import pickle
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args, get_origin

from ..errors import ProtocolError
from ..security.decode import PlainUnpickler
from ..security.violation import Violation
from .results import CellError, VariableInfo


class ErrorCode(enum.StrEnum):
    """Why a request (not a cell) failed in the worker."""

    NOT_FOUND = "not_found"              # no variable of that name
    UNPICKLABLE = "unpicklable"          # the value cannot be serialized
    CELL_MADE_TYPE = "cell_made_type"    # retrieve needs trusted=True for a cell-made class
    NEEDS_BY_VALUE = "needs_by_value"    # the worker cannot import a class the value names
    TOO_LARGE = "too_large"              # the value is over the transfer limit
    BAD_REQUEST = "bad_request"          # a request the worker does not expect now
    FAILED = "failed"                    # anything else; the message says what


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what a decoded message may hold (per field, per list)."""

    output: int = 30_000        # stdout / stderr characters
    repr: int = 3_000           # a displayed value
    text: int = 20_000          # error messages, docs, descriptions, crash reports
    traceback: int = 50_000
    name: int = 1_000           # variable, type, attribute and rule names
    summary: int = 4_000
    items: int = 100_000        # entries of a list field
    payload: int = 1 << 31      # bytes of a value's pickle or a snapshot

    @classmethod
    def for_config(cls, max_output_chars: int, max_repr_chars: int) -> Limits:
        """Room for what an honest worker sends: the cut text plus its marker."""
        return cls(output=max_output_chars + 1_000, repr=max_repr_chars + 200)


def _bound(limit: str) -> dict[str, str]:
    return {"limit": limit}


# --- host -> worker --------------------------------------------------------------------------

@dataclass(frozen=True)
class Exec:
    """Run one cell."""

    KIND: ClassVar[str] = "exec"
    code: str = field(metadata=_bound("payload"))


@dataclass(frozen=True)
class InjectValue:
    """Bind a copied value (or a class, ``is_type``) pickled by the host."""

    KIND: ClassVar[str] = "inject_value"
    name: str = field(metadata=_bound("name"))
    description: str | None
    payload: bytes
    is_type: bool


@dataclass(frozen=True)
class InjectEnum:
    """Rebuild an Enum class the worker cannot import (members pickled in ``payload``)."""

    KIND: ClassVar[str] = "inject_enum"
    name: str = field(metadata=_bound("name"))
    description: str | None
    enum_name: str = field(metadata=_bound("name"))
    base: str = field(metadata=_bound("name"))
    payload: bytes


@dataclass(frozen=True)
class InjectRemote:
    """Bind a proxy for a host object or function (reference ``ref``)."""

    KIND: ClassVar[str] = "inject_remote"
    name: str = field(metadata=_bound("name"))
    description: str | None
    ref: int
    is_function: bool
    fname: str = field(metadata=_bound("name"))
    doc: str
    signature: str
    is_async: bool
    type_name: str = field(metadata=_bound("name"))
    names: tuple[str, ...]


@dataclass(frozen=True)
class Retrieve:
    KIND: ClassVar[str] = "retrieve"
    name: str = field(metadata=_bound("name"))
    trusted: bool


@dataclass(frozen=True)
class ListVariables:
    KIND: ClassVar[str] = "variables"


@dataclass(frozen=True)
class Delete:
    KIND: ClassVar[str] = "delete"
    name: str = field(metadata=_bound("name"))


@dataclass(frozen=True)
class TakeSnapshot:
    KIND: ClassVar[str] = "snapshot"


@dataclass(frozen=True)
class Restore:
    KIND: ClassVar[str] = "restore"
    blob: bytes = field(metadata=_bound("payload"))


@dataclass(frozen=True)
class Shutdown:
    KIND: ClassVar[str] = "shutdown"


@dataclass(frozen=True)
class CallResult:
    """The host's answer to a worker's `Call`: a pickled result, or an error."""

    KIND: ClassVar[str] = "call_result"
    ok: bool
    payload: bytes
    error_type: str = field(metadata=_bound("name"))
    message: str


# --- worker -> host --------------------------------------------------------------------------

@dataclass(frozen=True)
class Ready:
    """A process serves the session now: a new worker, or a checkpoint that took over.

    It names no pid and no directory: the host learns the pid from the kernel
    (the sender's credentials) and the directory from its own records.
    """

    KIND: ClassVar[str] = "ready"
    crash: str = field(metadata=_bound("text"))
    confinement: tuple[str, ...] = field(metadata=_bound("name"))
    nonce: bytes = field(default=b"", metadata=_bound("name"))  # a takeover's resync token


@dataclass(frozen=True)
class CellReply:
    KIND: ClassVar[str] = "cell"
    ok: bool
    stdout: str = field(metadata=_bound("output"))
    stderr: str = field(metadata=_bound("output"))
    value_repr: str | None = field(metadata=_bound("repr"))
    error: CellError | None
    duration_s: float
    changed: tuple[VariableInfo, ...]
    deleted: tuple[str, ...] = field(metadata=_bound("name"))
    stdout_truncated: bool
    output_index: int | None
    rolled_back: bool


@dataclass(frozen=True)
class Done:
    """A request that returns nothing succeeded."""

    KIND: ClassVar[str] = "done"


@dataclass(frozen=True)
class InjectDone:
    KIND: ClassVar[str] = "injected"
    info: VariableInfo | None


@dataclass(frozen=True)
class Variables:
    KIND: ClassVar[str] = "variable_list"
    variables: tuple[VariableInfo, ...]


@dataclass(frozen=True)
class Value:
    """A retrieved value: its type's name and its pickle (decoded by the restricted decoder)."""

    KIND: ClassVar[str] = "value"
    type_name: str = field(metadata=_bound("name"))
    payload: bytes = field(metadata=_bound("payload"))


@dataclass(frozen=True)
class Call:
    """A cell called a remote: ``op`` is "call" or "getattr" on reference ``ref``."""

    KIND: ClassVar[str] = "call"
    op: Literal["call", "getattr"]
    ref: int
    name: str | None = field(metadata=_bound("name"))
    payload: bytes = field(metadata=_bound("payload"))


@dataclass(frozen=True)
class SnapshotBlob:
    KIND: ClassVar[str] = "snapshot_blob"
    blob: bytes = field(metadata=_bound("payload"))
    remotes: tuple[str, ...] = field(metadata=_bound("name"))


@dataclass(frozen=True)
class Restored:
    KIND: ClassVar[str] = "restored"
    names: tuple[str, ...] = field(metadata=_bound("name"))


@dataclass(frozen=True)
class Failure:
    """A request failed in the worker (the session is unchanged)."""

    KIND: ClassVar[str] = "failure"
    code: ErrorCode
    message: str


# --- host <-> zygote -------------------------------------------------------------------------

@dataclass(frozen=True)
class ZygoteReady:
    KIND: ClassVar[str] = "zygote_ready"
    tmpdir: str = field(metadata=_bound("text"))


@dataclass(frozen=True)
class ForkWorker:
    """Give a spare this session (its socket rides along as a descriptor)."""

    KIND: ClassVar[str] = "fork"
    config: bytes


@dataclass(frozen=True)
class Forked:
    """The zygote handed the session to the process ``pid``."""

    KIND: ClassVar[str] = "forked"
    pid: int


HostRequest = (Exec | InjectValue | InjectEnum | InjectRemote | Retrieve | ListVariables | Delete
               | TakeSnapshot | Restore | Shutdown | CallResult)
WorkerMessage = (Ready | CellReply | Done | InjectDone | Variables | Value | Call | SnapshotBlob
                 | Restored | Failure)
Message = HostRequest | WorkerMessage | ZygoteReady | ForkWorker | Forked

WORKER_KINDS: tuple[type[Any], ...] = typing.get_args(WorkerMessage)
HOST_KINDS: tuple[type[Any], ...] = typing.get_args(HostRequest)
ZYGOTE_KINDS: tuple[type[Any], ...] = (ZygoteReady, ForkWorker, Forked)


# --- checking fields -------------------------------------------------------------------------

Check = Callable[[Any, Limits, bool], Any]  # (value, limits, coerce) -> value


def plain_text(value: Any, limit: int) -> str:
    """``value`` as a plain ``str`` of at most ``limit`` characters, without running its code.

    ``str.__str__`` of a ``str`` subclass (numpy's ``str_``, one a cell made)
    copies the characters in C: no ``__str__`` or ``__repr__`` of the value runs.
    """
    if type(value) is not str:
        value = str.__str__(value) if isinstance(value, str) else f"<{type(value).__name__}>"
    if len(value) > limit:
        keep = max(limit - 40, 0)
        value = f"{value[:keep]}... [{len(value) - keep} more chars]"[:limit]
    return value


def _fail(what: str) -> ProtocolError:
    return ProtocolError(f"the worker sent a malformed message: {what}")


def _check_str(limit_name: str) -> Check:
    def check(value: Any, limits: Limits, coerce: bool) -> Any:
        limit = getattr(limits, limit_name)
        if coerce:
            return plain_text(value, limit)
        if type(value) is not str:
            raise _fail(f"expected text, got {type(value).__name__}")
        if len(value) > limit:
            raise _fail(f"a text field of {len(value)} characters (limit {limit})")
        return value
    return check


def _check_scalar(kind: type[Any]) -> Check:
    def check(value: Any, limits: Limits, coerce: bool) -> Any:
        if coerce and kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            raise _fail(f"expected {kind.__name__}, got {type(value).__name__}")
        if kind is int and abs(int(value)) > 1 << 62:
            raise _fail("an integer field out of range")
        if kind is float and not math.isfinite(float(value)):
            raise _fail("a non-finite number")
        return value
    return check


def _check_bytes(limit_name: str) -> Check:
    def check(value: Any, limits: Limits, coerce: bool) -> Any:
        if type(value) is not bytes:
            raise _fail(f"expected bytes, got {type(value).__name__}")
        if len(value) > getattr(limits, limit_name):
            raise _fail(f"a payload of {len(value)} bytes (limit {getattr(limits, limit_name)})")
        return value
    return check


def _check_literal(allowed: tuple[Any, ...]) -> Check:
    def check(value: Any, limits: Limits, coerce: bool) -> Any:
        if type(value) is not str or value not in allowed:
            raise _fail(f"unexpected value {plain_text(value, 40)!r}")
        return value
    return check


def _check_enum(cls: type[enum.StrEnum]) -> Check:
    def check(value: Any, limits: Limits, coerce: bool) -> Any:
        if coerce and isinstance(value, cls):
            return value
        try:
            return cls(value) if type(value) is str else cls("")
        except ValueError:
            raise _fail(f"unknown {cls.__name__} {plain_text(value, 40)!r}") from None
    return check


def _check_optional(inner: Check) -> Check:
    def check(value: Any, limits: Limits, coerce: bool) -> Any:
        return None if value is None else inner(value, limits, coerce)
    return check


def _check_tuple(inner: Check) -> Check:
    def check(value: Any, limits: Limits, coerce: bool) -> Any:
        if type(value) not in (tuple, list):
            raise _fail(f"expected a list, got {type(value).__name__}")
        if len(value) > limits.items:
            raise _fail(f"a list of {len(value)} entries (limit {limits.items})")
        return tuple(inner(item, limits, coerce) for item in value)
    return check


# Bounds of the fields of the public result records (they are not wire-only classes).
_RECORD_LIMITS = {
    (VariableInfo, "name"): "name", (VariableInfo, "type_name"): "name",
    (VariableInfo, "summary"): "summary",
    (Violation, "rule"): "name", (Violation, "snippet"): "summary", (Violation, "hint"): "text",
    (CellError, "type"): "name", (CellError, "traceback"): "traceback",
}


def _checker_for(hint: Any, limit: str) -> Check:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return _check_optional(_checker_for(args[0], limit))
    if origin is tuple:
        return _check_tuple(_checker_for(get_args(hint)[0], limit))
    if origin is Literal:
        return _check_literal(get_args(hint))
    if hint is str:
        return _check_str(limit)
    if hint is bytes:
        return _check_bytes(limit)
    if hint in (bool, int, float):
        return _check_scalar(hint)
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
        return _check_enum(hint)
    if dataclasses.is_dataclass(hint):
        return _check_record(hint)  # type: ignore[arg-type]
    raise TypeError(f"no wire form for {hint!r}")


_RECORD_CHECKS: dict[type, Check] = {}


def _field_checks(cls: type) -> tuple[tuple[str, ...], tuple[Check, ...]]:
    hints = typing.get_type_hints(cls)
    names, checks = [], []
    for f in dataclasses.fields(cls):
        limit = f.metadata.get("limit") or _RECORD_LIMITS.get((cls, f.name), "text")
        names.append(f.name)
        checks.append(_checker_for(hints[f.name], limit))
    return tuple(names), tuple(checks)


def _check_record(cls: type) -> Check:
    if cls in _RECORD_CHECKS:
        return _RECORD_CHECKS[cls]
    names, checks = _field_checks(cls)

    def check(value: Any, limits: Limits, coerce: bool) -> Any:
        if coerce and isinstance(value, cls):
            value = tuple(getattr(value, n) for n in names)
        if type(value) is not tuple or len(value) != len(checks):
            raise _fail(f"a malformed {cls.__name__} record")
        return cls(*(c(v, limits, coerce) for c, v in zip(checks, value, strict=True)))

    _RECORD_CHECKS[cls] = check
    return check


_KINDS: dict[str, type[Any]] = {cls.KIND: cls for cls in (*HOST_KINDS, *WORKER_KINDS, *ZYGOTE_KINDS)}
_SCHEMAS = {cls: _field_checks(cls) for cls in _KINDS.values()}
_DEFAULT_LIMITS = Limits()


# --- encoding and decoding -------------------------------------------------------------------

def _wire(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(_wire(getattr(value, f.name)) for f in dataclasses.fields(value))
    if type(value) is tuple:
        return tuple(_wire(v) for v in value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def encode(message: Message, released: tuple[int, ...] = (), *, coerce: bool = False,
           limits: Limits = _DEFAULT_LIMITS) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """Pickle a message as plain data; out-of-band buffers are returned separately.

    ``coerce=True`` (the worker) first makes every field plain and bounded, so
    that whatever a cell left in a repr or an error can always be sent.
    """
    cls = type(message)
    names, checks = _SCHEMAS[cls]
    values = tuple(getattr(message, n) for n in names)
    if coerce:
        values = tuple(c(_wire(v) if not isinstance(v, str) else v, limits, True)
                       for c, v in zip(checks, values, strict=True))
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps((cls.KIND, tuple(_wire(v) for v in values), released), protocol=5,
                        buffer_callback=buffers.append)
    return body, buffers


def decode(body: bytes, *, accept: tuple[type[Any], ...],
           limits: Limits = _DEFAULT_LIMITS) -> tuple[Any, tuple[int, ...]]:
    """Decode and check one message of one of the ``accept`` kinds; returns it and the releases.

    The unpickler loads no globals at all: only plain data can come out of it.
    """
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
    names, checks = _SCHEMAS[cls]
    if type(fields) is not tuple or len(fields) != len(checks):
        raise _fail(f"a {cls.__name__} with {len(fields) if type(fields) is tuple else '?'} fields")
    if type(released) is not tuple or len(released) > limits.items or any(
            type(r) is not int for r in released):
        raise _fail("a malformed list of released references")
    values = [check(value, limits, False) for check, value in zip(checks, fields, strict=True)]
    return cls(*values), released


_GENEROUS = Limits(output=1 << 31, repr=1 << 31, text=1 << 31, traceback=1 << 31, name=1 << 20,
                   summary=1 << 31, items=1 << 24)


def decode_request(body: bytes, *, accept: tuple[type[Any], ...]) -> Any:
    """Decode a request from the host (in the worker or the zygote): the same checks, with
    room for whatever the host chose to send (it is trusted; the shape is still checked)."""
    message, _released = decode(body, accept=accept, limits=_GENEROUS)
    return message
