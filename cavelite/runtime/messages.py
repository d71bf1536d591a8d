"""Every message between host, zygote and worker, as a typed frozen dataclass.

This module is the contract between the three processes: what each kind
holds, with the bound of every text field. How they travel is `wire`: one
plain-data pickle per message, ``(kind, fields, released)``, checked field
by field against these declarations when the host decodes it.

    host ──▶ worker   Exec, InjectValue, InjectEnum, InjectRemote, Retrieve, ListVariables,
                      Delete, TakeSnapshot, Restore, Shutdown, CallResult
    worker ──▶ host   Ready, CellReply, Done, InjectDone, Variables, Value, Call,
                      SnapshotBlob, Restored, Failure
    host ◀─▶ zygote   ZygoteReady, ForkWorker, Forked
"""

from __future__ import annotations

import enum
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from .results import CellError, Figure, VariableInfo


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
    figures: int = 8            # figures in one cell's reply
    figure_bytes: int = 5_000_000  # bytes of one figure's PNG

    @classmethod
    def for_config(cls, max_output_chars: int, max_repr_chars: int, max_figures: int = 8,
                   max_figure_bytes: int = 5_000_000) -> Limits:
        """Room for what an honest worker sends: the cut text plus its marker."""
        return cls(output=max_output_chars + 1_000, repr=max_repr_chars + 200,
                   figures=max_figures, figure_bytes=max_figure_bytes)


def _bound(limit: str, count: str = "items") -> dict[str, str]:
    """A field's bound: ``limit`` for its text or bytes, ``count`` for a list's length."""
    return {"limit": limit, "count": count}


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
    figures: tuple[Figure, ...] = field(default=(), metadata=_bound("figure_bytes", "figures"))


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
