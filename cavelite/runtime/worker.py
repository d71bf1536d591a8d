"""The worker: one per `Runtime`, owning the namespace and answering the host's requests.

Each request (see `messages`) has one handler, which returns the reply; the
serve loop sends it and then settles the checkpoint (see `checkpoint`):
a cell that succeeded commits, one that failed hands over to the checkpoint,
and a request that changed the namespace outside a cell renews it. Remote
calls go the other way: a proxy (see `proxies`) sends a `Call` and this loop
serves the host's nested requests until the `CallResult` arrives.
"""

from __future__ import annotations

import asyncio
import enum
import os
import socket
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from ..security.guards import Guard, set_current_guard
from . import codec, figures, messages, protocol, wire
from .cell import compile_cell, run_cell, run_coroutine
from .checkpoint import Checkpoints, NoCheckpoints
from .config import WorkerConfig
from .messages import (
    Call,
    CallResult,
    CellReply,
    Delete,
    Done,
    ErrorCode,
    Exec,
    Failure,
    InjectDone,
    InjectEnum,
    InjectRemote,
    InjectValue,
    ListVariables,
    Ready,
    Restore,
    Restored,
    Retrieve,
    Shutdown,
    SnapshotBlob,
    TakeSnapshot,
    Value,
    Variables,
)
from .namespace import Namespace, bound_output, describing, install_time_limits, safe_type_name
from .proxies import RemoteObject, make_function_proxy, rebuild_exception
from .restore import loads_variable
from .results import CellError
from .snapshot_format import (
    cell_sources,
    dumps_variable,
    guard_entries,
    last_cell_number,
    pack_snapshot,
    parse_snapshot,
)

_MUTATING = (InjectValue, InjectEnum, InjectRemote, Delete, Restore)
_FRAME_LIMITS = protocol.FrameLimits(max_buffer_bytes=1 << 40)  # the host is trusted


class Worker:
    def __init__(self, sock: socket.socket, config: WorkerConfig, confinement: tuple[str, ...]):
        self.sock = sock
        self.config = config
        self.limits = config.limits
        self.confinement = confinement
        install_time_limits()
        self.guard = Guard(config.policy)
        self.guard.remote_types = (RemoteObject,)
        self.guard.doors.add(asyncio.run, run_coroutine)
        set_current_guard(self.guard)
        self.space = Namespace(self.guard)
        self.checkpoints: Checkpoints | NoCheckpoints = (
            Checkpoints(sock, self.warm) if config.atomic else NoCheckpoints())
        self.cell_counter = 0
        self.figures = figures.FigureCapture(config.max_figures, config.max_figure_bytes).install()
        # Host objects handed to cells by remote calls: proxies alive per reference,
        # and references whose last proxy died (told to the host with the next message).
        self._proxy_counts: dict[int, int] = {}
        self._released: list[int] = []
        self._handlers: dict[type, Callable[[Any, list[Any], bool], Any]] = {
            Exec: self.on_exec, InjectValue: self.on_inject_value, InjectEnum: self.on_inject_enum,
            InjectRemote: self.on_inject_remote, Retrieve: self.on_retrieve,
            ListVariables: self.on_variables, Delete: self.on_delete,
            TakeSnapshot: self.on_snapshot, Restore: self.on_restore, Shutdown: self.on_shutdown,
        }

    # --- the loop ------------------------------------------------------------------------

    def serve(self) -> NoReturn:
        self.send(Ready("", self.confinement))
        while True:
            if self.checkpoints.prepare():
                # We are the checkpoint and the worker died: we are the worker now. What
                # the host had sent the dead worker is dropped, up to the host's resync.
                nonce = os.urandom(16)
                self.send(Ready(self.checkpoints.crash_report, self.confinement, nonce))
                try:
                    protocol.skip_until_sync(self.sock, nonce)
                except protocol.PeerClosed:
                    self.exit()
                continue
            request, buffers = self.recv()
            self.dispatch(request, buffers, nested=False)

    def dispatch(self, request: Any, buffers: list[Any], *, nested: bool) -> None:
        handler = self._handlers.get(type(request))
        if handler is None:
            reply: messages.WorkerMessage = Failure(ErrorCode.BAD_REQUEST,
                                                    f"unexpected request {type(request).__name__}")
        else:
            try:
                reply = handler(request, buffers, nested)
            except Exception as exc:  # the runtime itself failed on this request: report it
                text = f"{safe_type_name(exc)}: {_message(exc)}"
                reply = Failure(ErrorCode.FAILED, text)
                if isinstance(request, Exec):  # a cell's reply is always a CellReply
                    protected = self.checkpoints.active and not nested
                    reply = CellReply(False, "", "", None, CellError("crash", "WorkerError", text),
                                      0.0, (), (), False, None, protected)
        try:
            if isinstance(reply, Outgoing):
                self.send(reply.message, reply.buffers)
            else:
                self.send(reply)
        finally:
            if not nested:
                self._settle(request, reply)

    def _settle(self, request: Any, reply: Any) -> None:
        """After the reply: commit, roll back or renew the checkpoint, or exit."""
        if isinstance(request, Exec):
            if reply.rolled_back:
                self.checkpoints.roll_back()  # the cell failed: the checkpoint takes over
            elif reply.ok:
                self.checkpoints.commit()
            # else: refused before it ran (policy, syntax): nothing changed, keep the checkpoint
        elif isinstance(request, _MUTATING) and not isinstance(reply, Failure):
            # The checkpoint predates this change: retire it so the next cell's
            # rollback point includes it (a fresh one is forked at the loop top).
            self.checkpoints.commit()
        elif isinstance(request, Shutdown):
            self.exit()

    def send(self, message: messages.WorkerMessage, buffers: list[Any] = ()) -> None:  # type: ignore[assignment]
        released, self._released = tuple(self._released), []
        body, extra = wire.encode(message, released, coerce=True, limits=self.limits)
        protocol.send(self.sock, body, [*extra, *buffers])

    def recv(self) -> tuple[Any, list[Any]]:
        try:
            frame = protocol.recv(self.sock, _FRAME_LIMITS)
        except protocol.PeerClosed:
            self.exit()
        return wire.decode_request(frame.body, accept=messages.HOST_KINDS), frame.buffers

    def exit(self) -> NoReturn:
        self.checkpoints.commit()
        os._exit(0)

    def warm(self) -> None:
        """Take a typical cell's copy-on-write faults (compiler, guards, encoder) while idle."""
        scratch = self.guard.namespace_globals()
        compiled = compile_cell("_pretouch = [1]\n_pretouch", self.config.policy, "<pretouch>")
        if compiled.code is not None:
            try:
                eval(compiled.code, scratch)  # noqa: S307 - our own constant cell
            except Exception:
                pass
        wire.encode(CellReply(True, "", "", "1", None, 0.0, (), (), False, None, False),
                        coerce=True, limits=self.limits)

    # --- cells ---------------------------------------------------------------------------

    def on_exec(self, request: Exec, buffers: list[Any], nested: bool) -> CellReply:
        self.cell_counter += 1
        compiled = compile_cell(request.code, self.config.policy, f"<cell-{self.cell_counter}>")
        if compiled.error is not None:
            return CellReply(False, "", "", None, compiled.error, 0.0, (), (), False, None, False)
        protected = self.checkpoints.active and not nested  # nested cells run in place
        if protected and not self.checkpoints.waiting:
            message = (f"the session could not fork its checkpoint ({self.checkpoints.fork_error}):"
                       " it is at its process limit. The cell did not run.")
            return CellReply(False, "", "", None, CellError("crash", "CheckpointUnavailable",
                                                            message), 0.0, (), (), False, None,
                             False)
        before = self.space.snapshot_ids()
        self.figures.begin()
        outcome = run_cell(compiled, self.space.ns, hard_output_limit=self.config.hard_output_limit,
                           max_repr_chars=self.config.max_repr_chars)
        budget = self.config.max_output_chars
        if outcome.ok or not protected:
            with describing():
                # Figures first: drawing runs artists' code, which may change the namespace.
                shown, notes = self.figures.finish(outcome.value)
                changed, deleted = self.space.diff(before)
            index = self.space.keep_output(outcome.stdout) if len(outcome.stdout) > budget else None
            stdout, truncated = bound_output(outcome.stdout, budget, index)
            stderr, _ = bound_output(outcome.stderr + notes, budget, None)
            return CellReply(outcome.ok, stdout, stderr, outcome.value_repr, outcome.error,
                             outcome.duration_s, tuple(changed), tuple(deleted), truncated, index,
                             False, shown)
        # A failure in atomic mode: nothing of the cell is kept; the checkpoint takes over.
        stdout, truncated = bound_output(outcome.stdout, budget, None)
        stderr, _ = bound_output(outcome.stderr, budget, None)
        return CellReply(False, stdout, stderr, None, outcome.error, outcome.duration_s, (), (),
                         truncated, None, True)

    # --- the namespace -------------------------------------------------------------------

    def on_inject_value(self, request: InjectValue, buffers: list[Any], nested: bool) -> Any:
        try:
            value = codec.decode_injected(request.payload, buffers, self.space.types)
        except (ModuleNotFoundError, AttributeError) as exc:
            return Failure(ErrorCode.NEEDS_BY_VALUE, _message(exc))
        self.guard.harden()  # the value may have imported pandas into this process
        if request.is_type:
            self.space.types[request.name] = value
        self.space.bind(request.name, value, request.description)
        with describing():
            return InjectDone(self.space.info(request.name))

    def on_inject_enum(self, request: InjectEnum, buffers: list[Any], nested: bool) -> Any:
        # dill cannot send Enum classes by value (they refer to themselves), so the
        # worker rebuilds one with the functional API: same name, members and values.
        members = codec.decode_injected(request.payload, buffers, self.space.types)
        base = {"IntFlag": enum.IntFlag, "Flag": enum.Flag, "IntEnum": enum.IntEnum,
                "StrEnum": enum.StrEnum}.get(request.base, enum.Enum)
        cls = base(request.enum_name, [tuple(m) for m in members], module="__main__")
        self.space.types[request.name] = cls
        self.space.bind(request.name, cls, request.description)
        with describing():
            return InjectDone(self.space.info(request.name))

    def on_inject_remote(self, request: InjectRemote, buffers: list[Any], nested: bool) -> Any:
        value: Any
        if request.is_function:
            value = make_function_proxy(self, request.ref, None, request.fname, request.doc,
                                        request.signature, request.is_async)
        else:
            value = RemoteObject(request.ref, request.type_name, request.names, self)
        self.space.remotes.add(request.name)
        self.space.bind(request.name, value, request.description)
        return InjectDone(None)

    def on_retrieve(self, request: Retrieve, buffers: list[Any], nested: bool) -> Any:
        if not self.space.has(request.name):
            return Failure(ErrorCode.NOT_FOUND, f"no variable named {request.name!r}")
        value = self.space.ns[request.name]
        try:
            payload, out = codec.encode_for_host(value, self.space.types, trusted=request.trusted)
        except codec.CellMadeType as exc:
            return Failure(ErrorCode.CELL_MADE_TYPE, (
                f"variable {request.name!r} holds an instance of {_message(exc)}, a class defined "
                "by a cell; retrieve(..., trusted=True) rebuilds it in the host (running "
                "cell-written code), or convert it to plain data in a cell first"))
        except Exception as exc:
            return Failure(ErrorCode.UNPICKLABLE, f"variable {request.name!r} "
                           f"({safe_type_name(value)}) cannot be copied: {_message(exc)}")
        size = len(payload) + sum(memoryview(b).nbytes for b in out)
        if size > self.config.transfer_limit:
            return Failure(ErrorCode.TOO_LARGE, f"variable {request.name!r} takes {size} bytes, "
                           f"more than the transfer limit of {self.config.transfer_limit}")
        return Outgoing(Value(safe_type_name(value), payload), out)

    def on_variables(self, request: ListVariables, buffers: list[Any], nested: bool) -> Variables:
        with describing():
            return Variables(tuple(self.space.info(name) for name in self.space.user_names()))

    def on_delete(self, request: Delete, buffers: list[Any], nested: bool) -> Any:
        if not self.space.has(request.name):
            return Failure(ErrorCode.NOT_FOUND, f"no variable named {request.name!r}")
        self.space.forget(request.name)
        return Done()

    def on_snapshot(self, request: TakeSnapshot, buffers: list[Any], nested: bool) -> Any:
        data, failed = {}, []
        entries = guard_entries(self.space.ns)
        for name in self.space.user_names():
            value = self.space.ns[name]
            try:
                data[name] = dumps_variable(value, entries)
            except Exception as exc:
                failed.append(f"{name} ({safe_type_name(value)}): {_message(exc)}")
        if failed:
            return Failure(ErrorCode.UNPICKLABLE, "cannot snapshot these variables: "
                           + "; ".join(failed))
        blob = pack_snapshot(data, self.space.descriptions, list(self.space.types), cell_sources())
        return SnapshotBlob(blob, tuple(sorted(self.space.remotes)))

    def on_restore(self, request: Restore, buffers: list[Any], nested: bool) -> Any:
        state = parse_snapshot(request.blob)
        compiled: dict[str, Any] = {}
        restored = {}
        for name, raw in state.variables.items():
            try:
                restored[name] = loads_variable(raw, self.space.ns, self.guard, state.sources,
                                                compiled)
            except Exception as exc:  # a refusal, or a value that does not rebuild here
                return Failure(ErrorCode.FAILED, "the snapshot was refused, nothing of it was "
                               f"restored: variable {wire.plain_text(name, 200)!r}: {_message(exc)}")
        # Restored functions keep their cells' names: this worker's cells are numbered after them.
        self.cell_counter = max(self.cell_counter, last_cell_number(state.sources))
        self.guard.harden()
        self.space.ns.update(restored)
        for name in state.types:
            if name in self.space.ns and isinstance(self.space.ns[name], type):
                self.space.types[name] = self.space.ns[name]
        self.space.descriptions.update(state.descriptions)
        return Restored(tuple(sorted(restored)))

    def on_shutdown(self, request: Shutdown, buffers: list[Any], nested: bool) -> Done:
        return Done()

    # --- remote calls (the worker side of the channel) ------------------------------------

    def remote(self, op: str, ref: int, name: str | None, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Any:
        try:
            payload, out = codec.encode_for_host((args, kwargs), self.space.types, trusted=False)
        except Exception as exc:
            raise TypeError(f"arguments cannot be sent to the host: {_message(exc)}") from None
        self.send(Call(op, ref, name, payload), out)  # type: ignore[arg-type]
        while True:
            request, buffers = self.recv()
            if isinstance(request, CallResult):
                break
            self.dispatch(request, buffers, nested=True)  # a nested request (re-entrancy)
        if not request.ok:
            raise rebuild_exception(request.error_type, request.message)
        return codec.decode_call_result(request.payload, buffers, self.space.types, self._new_proxy)

    def _new_proxy(self, pid: tuple[Any, ...]) -> Any:
        if pid[0] == codec.FUNCTION:
            _, ref, name, doc, signature, is_async = pid
            proxy: Any = make_function_proxy(self, ref, None, name, doc, signature, is_async)
        else:
            _, ref, type_name, names = pid
            proxy = RemoteObject(ref, type_name, tuple(names), self)
        self._proxy_counts[ref] = self._proxy_counts.get(ref, 0) + 1
        weakref.finalize(proxy, self._proxy_died, ref)
        return proxy

    def _proxy_died(self, ref: int) -> None:
        left = self._proxy_counts.get(ref, 1) - 1
        if left > 0:
            self._proxy_counts[ref] = left
        else:
            self._proxy_counts.pop(ref, None)
            self._released.append(ref)


@dataclass(frozen=True)
class Outgoing:
    """A reply with out-of-band buffers (a retrieved value)."""

    message: messages.WorkerMessage
    buffers: list[Any]


def _message(exc: BaseException) -> str:
    try:
        return wire.plain_text(str(exc), 2000)
    except Exception:
        return "<the message could not be read>"
