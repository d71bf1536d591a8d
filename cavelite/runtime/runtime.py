"""`Runtime`: the host's handle to one worker and its persistent namespace."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import io
import json
import keyword
import os
import pickle
import select
import shutil
import signal
import socket
import sys
import threading
import time
import types
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import (
    CaveRuntimeError,
    CaveUsageError,
    ProtocolError,
    RuntimeClosedError,
    TransferError,
    UnpicklableValueError,
    VariableNotFoundError,
    WorkerDiedError,
)
from ..security import decode
from ..security.audit import library_roots
from ..security.policy import Policy
from ..security.transformer import is_reserved
from . import protocol
from .remote import HostPickler, RemoteRegistry, describe_callable, public_names
from .results import CellError, CellResult, Injected, VariableInfo, Violation
from .zygote import Zygote, track_session

_FUNCTION_TYPES = (types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                   types.BuiltinMethodType)
_TAKEOVER_WAIT_S = 30.0
# Runtimes (by id) whose remote call is running in this context: see Runtime._exclusive.
_NESTED: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "cavelite_nested", default=frozenset()
)
_INTERRUPT_GRACE_S = 1.0


@dataclass(frozen=True)
class Snapshot:
    """A parked namespace. The host stores it as opaque bytes and never unpickles it."""

    blob: bytes
    remotes: tuple[str, ...] = ()
    descriptions: tuple[tuple[str, str], ...] = ()  # of the remote objects, by name

    _MAGIC = b"CAVESNAP2"

    def to_bytes(self) -> bytes:
        # The host-side header is JSON: a host never unpickles anything of a snapshot.
        header = json.dumps({"remotes": list(self.remotes),
                             "descriptions": dict(self.descriptions)}).encode()
        return self._MAGIC + len(header).to_bytes(4, "little") + header + self.blob

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        if not data.startswith(cls._MAGIC):
            raise CaveUsageError("not a cavelite snapshot (or one from another version)")
        start = len(cls._MAGIC)
        size = int.from_bytes(data[start:start + 4], "little")
        try:
            header = json.loads(data[start + 4:start + 4 + size])
            remotes = tuple(str(n) for n in header["remotes"])
            descriptions = tuple((str(k), str(v)) for k, v in header["descriptions"].items())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CaveUsageError(f"corrupt snapshot header: {exc}") from None
        return cls(data[start + 4 + size:], remotes, descriptions)


class Runtime:
    """A persistent, contained Python namespace in a worker process.

    >>> with Runtime() as rt:
    ...     rt.execute("x = 40 + 2").ok
    True

    ``cell_timeout`` (seconds) bounds each cell; ``memory_limit_mb`` is the
    memory a cell may allocate on top of the worker's baseline;
    ``max_output_chars`` bounds the stdout a result carries (the rest stays in
    ``cell_outputs`` in the namespace). ``atomic=False`` turns off per-cell
    rollback (as in Jupyter) for state that cannot be forked.
    """

    def __init__(
        self,
        *,
        preload: Iterable[str] = ("numpy", "pandas"),
        cell_timeout: float = 30.0,
        memory_limit_mb: int | None = 2048,
        max_output_chars: int = 20_000,
        max_repr_chars: int = 2_000,
        hard_output_limit: int = 10_000_000,
        atomic: bool = True,
        policy: Policy | None = None,
    ):
        if cell_timeout is not None and cell_timeout <= 0:
            raise CaveUsageError("cell_timeout must be positive")
        if max_output_chars < 100:
            raise CaveUsageError("max_output_chars must be at least 100")
        self.cell_timeout = cell_timeout
        self.atomic = atomic
        self.policy = policy or Policy.default()
        self.preload = tuple(preload)
        self._config = {
            "policy": self.policy,
            "atomic": atomic,
            "memory_limit_mb": memory_limit_mb,
            "max_output_chars": max_output_chars,
            "max_repr_chars": max_repr_chars,
            "hard_output_limit": hard_output_limit,
            "max_file_bytes": max(hard_output_limit, 1 << 30) if memory_limit_mb is None
            else memory_limit_mb * 1024 * 1024,
        }
        self._lock = threading.RLock()
        self._registry = RemoteRegistry()
        self._releases: list[int] = []  # released by the running cell: applied if it commits
        self._types: dict[str, type] = {}  # injected classes, by the name cells know them
        self._injected: dict[str, Injected] = {}
        self._remote_objects: dict[str, Any] = {}
        self._loop = threading.local()
        self._closed = False
        self._pid = 0
        self._workdir = ""
        self._confinement: tuple[str, ...] = ()
        self._state: dict[str, Any] = {"sock": None, "pidfd": -1, "workdirs": set(),
                                       "owner": os.getpid()}
        self._finalizer = weakref.finalize(self, _cleanup, self._state)
        self._start_worker()
        track_session(self)

    # --- lifecycle ---------------------------------------------------------------------------

    def _start_worker(self) -> None:
        zygote = Zygote.shared(self.preload)
        self._sock = zygote.fork_worker(self._config)
        kind, fields = self._read_message()
        if kind != "ready":
            raise ProtocolError(f"expected a ready message, got {kind!r}")
        self._adopt(fields)

    def _adopt(self, fields: Mapping[str, Any]) -> None:
        """Track the process that now serves us (a new worker or a backup that took over)."""
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        self._pid = int(fields["pid"])
        self._pidfd = os.pidfd_open(self._pid)
        self._workdir = str(fields["workdir"])
        if "confinement" in fields:
            self._confinement = tuple(str(c) for c in fields["confinement"])
        self._state["workdirs"].add(self._workdir)

    # The finalizer must not hold the runtime, so the socket and pidfd live in
    # `_state` (which it gets) and these properties read and write them there.
    @property
    def _sock(self) -> socket.socket | None:
        return self._state["sock"]  # type: ignore[no-any-return]

    @_sock.setter
    def _sock(self, sock: socket.socket | None) -> None:
        self._state["sock"] = sock

    @property
    def _pidfd(self) -> int:
        return self._state["pidfd"]  # type: ignore[no-any-return]

    @_pidfd.setter
    def _pidfd(self, fd: int) -> None:
        self._state["pidfd"] = fd

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def confinement(self) -> tuple[str, ...]:
        """The containment layers the worker applied: rlimits, audit-hook, and (when the
        kernel allows) landlock and seccomp. A host can refuse to run without them."""
        return self._confinement

    @property
    def pid(self) -> int:
        """The pid of the process currently serving this runtime (changes after a rollback)."""
        return self._pid

    def close(self) -> None:
        """Stop the worker and remove its private directory. Safe to call twice."""
        if self._state["owner"] != os.getpid():
            self._closed = True  # in a forked copy of the host: forget it, leave the worker be
            return
        with self._exclusive():
            if self._closed:
                return
            self._closed = True
            try:
                if self._sock is not None:
                    self._send("shutdown", {})
                    self._wait_exit(2.0)
            except (OSError, CaveRuntimeError, protocol.PeerClosed):
                pass
            _cleanup(self._state)
            self._finalizer.detach()

    def _wait_exit(self, timeout: float) -> None:
        if self._pidfd < 0:
            return
        ready, _, _ = select.select([self._pidfd], [], [], timeout)
        if not ready:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            select.select([self._pidfd], [], [], timeout)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)

    # --- the public operations ----------------------------------------------------------------

    def execute(self, code: str, *, timeout: float | None = None) -> CellResult:
        """Run one cell. Failures come back in ``CellResult.error``; nothing raises for them."""
        if not isinstance(code, str):
            raise CaveUsageError("code must be a str")
        limit = timeout if timeout is not None else self.cell_timeout
        with self._exclusive():
            self._check_open()
            started = time.perf_counter()
            try:
                self._send("exec", {"code": code})
                kind, fields = self._serve_until_reply(deadline_s=limit)
            except WorkerDiedError:  # nobody holds the socket: worker and checkpoint are gone
                return self._after_kill("crash", limit, started, _WorkerDied(None))
            except _CellTimeout:
                return self._after_kill("timeout", limit, started)
            except _WorkerDied as died:
                return self._after_kill("crash", limit, started, died)
            except ProtocolError as exc:
                self._restart(kill=True)
                error = CellError("crash", "ProtocolError", f"{exc}. The worker was killed and "
                                  "restarted: variables were lost.")
                return CellResult(ok=False, error=error, duration_s=time.perf_counter() - started)
            if kind == "error":
                raise CaveRuntimeError(f"{fields['type']}: {fields['message']}")
            result = _cell_result(fields, time.perf_counter() - started)
            if result.rolled_back:
                self._releases.clear()  # the checkpoint still holds those proxies
                self._await_takeover()
            else:
                self._apply_releases()
            return result

    def inject(self, name: str, value: Any, *, description: str | None = None,
               remote: bool | None = None) -> None:
        """Put ``value`` into the namespace as ``name``.

        Data and classes are copied in. Functions (plain functions, bound
        methods, builtins; not classes) are remote by default: the worker
        gets a proxy and calls run here, in the host. ``remote=True`` makes
        any object remote (its public methods and attributes are forwarded);
        ``remote=False`` copies a function in by value (it then runs in the
        worker, contained).
        """
        _check_name(name)
        if remote is None:
            remote = isinstance(value, _FUNCTION_TYPES)
        with self._exclusive():
            self._check_open()
            if remote:
                self._inject_remote(name, value, description)
            else:
                self._inject_copy(name, value, description)

    def inject_type(self, cls: type, *, name: str | None = None, description: str | None = None) -> None:
        """Make a class available to cells (copied in; its instances can be retrieved)."""
        if not isinstance(cls, type):
            raise CaveUsageError("inject_type expects a class")
        self.inject(name or cls.__name__, cls, description=description, remote=False)

    def _inject_remote(self, name: str, value: Any, description: str | None) -> None:
        ref = self._registry.register(value)
        self._remote_objects[name] = value
        if isinstance(value, _FUNCTION_TYPES) or (callable(value) and not isinstance(value, type)
                                                  and not public_names(value)):
            fname, doc, sig, is_async = describe_callable(value)
            fields = {"kind": "function", "ref": ref, "fname": fname, "doc": doc,
                      "signature": sig, "is_async": is_async}
            info = Injected(name, "function", str(type(value).__name__), sig, doc, description,
                            is_async)
        else:
            names = public_names(value)
            methods = tuple(n for n in names if callable(getattr(value, n, None)))
            fields = {"kind": "object", "ref": ref, "type_name": type(value).__name__,
                      "names": names}
            info = Injected(name, "object", type(value).__name__, "", _doc(value), description,
                            False, methods)
        self._call("inject", {"name": name, "description": description, **fields})
        self._injected[name] = info

    def _inject_copy(self, name: str, value: Any, description: str | None) -> None:
        kind = "type" if isinstance(value, type) else "value"
        if isinstance(value, type):
            self._types[name] = value
        if (isinstance(value, type) and issubclass(value, enum.Enum)
                and not _worker_importable(value.__module__)):
            self._inject_enum(name, value, description)
            return
        others = {n: t for n, t in self._types.items() if t is not value}
        try:
            body, buffers = _encode_for_worker(value, others, by_value=kind == "type"
                                               or isinstance(value, types.FunctionType))
        except UnpicklableValueError as exc:
            raise UnpicklableValueError(
                f"cannot inject {name!r} ({type(value).__name__}): {exc}; "
                "pass remote=True to keep it in the host and use it by proxy"
            ) from None
        try:
            self._call("inject", {"name": name, "kind": kind, "description": description,
                                  "payload": body, "buffers": buffers})
        except CaveRuntimeError as exc:
            text = str(exc)
            if kind == "value" and ("ModuleNotFoundError" in text or "Can't get attribute" in text):
                # A class the worker cannot import: send it (and its code) by value.
                body, buffers = _encode_for_worker(value, others, by_value=True)
                self._call("inject", {"name": name, "kind": kind, "description": description,
                                      "payload": body, "buffers": buffers})
            else:
                raise TransferError(f"cannot inject {name!r}: {exc}") from exc
        self._remote_objects.pop(name, None)
        if kind == "type":
            _fname, _d, signature, _a = describe_callable(value)
            methods = tuple(n for n in public_names(value) if callable(getattr(value, n, None)))
            self._injected[name] = Injected(name, "type", value.__name__, signature, _doc(value),
                                            description, False, methods)
        elif isinstance(value, types.FunctionType):
            fname, doc, sig, is_async = describe_callable(value)
            self._injected[name] = Injected(name, "function", "function", sig, doc, description,
                                            is_async)
        else:
            self._injected.pop(name, None)

    def _inject_enum(self, name: str, cls: type[enum.Enum], description: str | None) -> None:
        # dill cannot send Enum classes by value (they refer to themselves), so the
        # worker rebuilds one with the functional API: same name, members and values.
        bases = [b for b in (enum.IntFlag, enum.Flag, enum.IntEnum, enum.StrEnum) if issubclass(cls, b)]
        members = [(m.name, m.value) for m in cls]
        self._call("inject", {"name": name, "kind": "enum", "description": description,
                              "enum_name": cls.__name__, "base": bases[0].__name__ if bases else "Enum",
                              "members": members})
        self._injected[name] = Injected(name, "type", cls.__name__, "", _doc(cls), description,
                                        False, tuple(m for m, _ in members))

    def retrieve(self, name: str, *, trusted: bool = False) -> Any:
        """Copy a variable back into the host as a native object.

        Only plain data, datetime/decimal/fractions, numpy, pandas and injected
        types are decoded; anything else raises `UntrustedTypeError` unless
        ``trusted=True`` (which lets the worker's pickle run code here).
        """
        _check_name(name)
        with self._exclusive():
            self._check_open()
            head, buffers = self._call("retrieve", {"name": name, "trusted": trusted},
                                       missing=name)
            try:
                return decode.loads_value(head["body"], buffers, types=self._types,
                                          refs=self._registry.objects, trusted=trusted)
            except decode.UntrustedTypeError as exc:
                raise decode.UntrustedTypeError(f"cannot retrieve {name!r}: {exc}") from None
            except (pickle.UnpicklingError, EOFError, ValueError) as exc:
                raise ProtocolError(f"cannot decode {name!r}: {exc}") from exc

    def variables(self) -> list[VariableInfo]:
        """The namespace's variables, each with its type and a bounded summary."""
        with self._exclusive():
            self._check_open()
            fields = self._call("variables", {})
        return [VariableInfo(**v) for v in fields["variables"]]

    def injected(self) -> list[Injected]:
        """What the host injected: remote functions and objects, copied types and functions."""
        return list(self._injected.values())

    def delete(self, name: str) -> None:
        """Remove a variable from the namespace."""
        _check_name(name)
        with self._exclusive():
            self._check_open()
            self._call("delete", {"name": name}, missing=name)
            self._injected.pop(name, None)
            self._remote_objects.pop(name, None)
            self._types.pop(name, None)

    def reset(self) -> None:
        """Forget every variable the cells made; injected remotes and types stay."""
        with self._exclusive():
            self._check_open()
            self._call("reset", {})

    def snapshot(self) -> Snapshot:
        """Park the namespace (remote objects are recorded by name, not copied)."""
        with self._exclusive():
            self._check_open()
            try:
                fields = self._call("snapshot", {})
            except CaveRuntimeError as exc:
                raise UnpicklableValueError(str(exc)) from None
        remotes = tuple(fields["remotes"])
        descriptions = tuple((n, self._injected[n].description or "") for n in remotes
                             if n in self._injected and self._injected[n].description)
        return Snapshot(fields["blob"], remotes, descriptions)

    @classmethod
    def restore(cls, snapshot: Snapshot | bytes, *, remotes: Mapping[str, Any] | None = None,
                **kwargs: Any) -> Runtime:
        """A new runtime holding a snapshot's namespace; remote objects are re-bound by name.

        Pass the host objects for the snapshot's remote names in ``remotes``.
        """
        snap = Snapshot.from_bytes(snapshot) if isinstance(snapshot, bytes) else snapshot
        missing = [n for n in snap.remotes if n not in (remotes or {})]
        if missing:
            raise CaveUsageError(f"restore needs the remote objects {missing} (pass remotes=...)")
        rt = cls(**kwargs)
        try:
            with rt._lock:
                rt._call("restore", {"blob": snap.blob})
            described = dict(snap.descriptions)
            for name, obj in (remotes or {}).items():
                rt.inject(name, obj, description=described.get(name),
                          remote=True if not isinstance(obj, _FUNCTION_TYPES) else None)
        except BaseException:
            rt.close()
            raise
        return rt

    # --- async twins ---------------------------------------------------------------------------

    async def aexecute(self, code: str, *, timeout: float | None = None) -> CellResult:
        return await self._in_thread(self.execute, code, timeout=timeout)

    async def ainject(self, name: str, value: Any, *, description: str | None = None,
                      remote: bool | None = None) -> None:
        await self._in_thread(self.inject, name, value, description=description, remote=remote)

    async def aretrieve(self, name: str, *, trusted: bool = False) -> Any:
        return await self._in_thread(self.retrieve, name, trusted=trusted)

    async def avariables(self) -> list[VariableInfo]:
        return await self._in_thread(self.variables)

    async def adelete(self, name: str) -> None:
        await self._in_thread(self.delete, name)

    async def areset(self) -> None:
        await self._in_thread(self.reset)

    async def asnapshot(self) -> Snapshot:
        return await self._in_thread(self.snapshot)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    async def _in_thread(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()

        def run() -> Any:
            # Remote async functions then run on the caller's loop, not a new one.
            self._loop.value = loop
            try:
                return fn(*args, **kwargs)
            finally:
                self._loop.value = None

        return await asyncio.to_thread(run)

    # --- plumbing -----------------------------------------------------------------------------------

    def _exclusive(self) -> Any:
        """The runtime's lock, unless this call is nested inside one of its remote calls.

        A remote tool may use the runtime whose cell called it (an agent sharing
        the runtime, a tool that retrieves a variable). The outer request holds
        the lock and is blocked until the tool returns, so the nested request
        runs without it, whichever thread the tool hops to (the context follows).
        """
        if id(self) in _NESTED.get():
            return contextlib.nullcontext()
        return self._lock

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeClosedError("this runtime was closed")
        if self._state["owner"] != os.getpid():
            raise CaveUsageError(
                "this Runtime was created before the process forked; create a new one in this "
                "process (its worker belongs to the parent)"
            )

    def _send(self, kind: str, fields: dict[str, Any]) -> None:
        assert self._sock is not None
        buffers = fields.pop("buffers", None) or []
        body, extra = protocol.encode((kind, fields))
        try:
            protocol.send(self._sock, body, [*extra, *buffers] if buffers else extra)
        except OSError as exc:
            raise WorkerDiedError(f"the worker is gone ({exc})") from exc

    def _call(self, kind: str, fields: dict[str, Any], *, missing: str | None = None) -> Any:
        try:
            self._send(kind, fields)
            reply_kind, reply = self._serve_until_reply()
        except WorkerDiedError:  # the send failed: worker and checkpoint are gone
            self._take_over(kill=False)
            raise
        except _WorkerDied as died:
            self._take_over(kill=False, died=died)
            raise WorkerDiedError("the worker died during a request", exitcode=died.exitcode) from None
        except ProtocolError:
            self._restart(kill=True)
            raise
        if reply_kind == "error":
            self._raise_request_error(missing, reply)
        self._apply_releases()
        return reply

    def _apply_releases(self) -> None:
        if self._releases:
            pinned = {self._registry.register(obj) for obj in self._remote_objects.values()}
            self._registry.release(self._releases, pinned)
            self._releases.clear()

    def _raise_request_error(self, name: str | None, fields: Mapping[str, Any]) -> None:
        etype, message = fields.get("type"), fields.get("message", "")
        if etype == "CellMadeType":
            raise decode.UntrustedTypeError(message)
        if etype == "KeyError":
            raise VariableNotFoundError(f"no variable named {name!r} in the runtime")
        if etype in ("TypeError", "PicklingError") and name is not None:
            raise UnpicklableValueError(message)
        raise CaveRuntimeError(f"{etype}: {message}")

    def _read_message(self, timeout: float | None = None) -> tuple[str, Any]:
        assert self._sock is not None
        if timeout is not None:
            ready, _, _ = select.select([self._sock], [], [], timeout)
            if not ready:
                raise _CellTimeout()
        try:
            body, buffers = protocol.recv(self._sock)
        except protocol.PeerClosed as exc:
            raise _WorkerDied(None) from exc
        except ValueError as exc:
            raise ProtocolError(str(exc)) from exc
        try:
            head, rest = decode.split_head(body)
        except (decode.UntrustedTypeError, pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise ProtocolError(f"the worker sent an undecodable message: {exc}") from exc
        if not (isinstance(head, tuple) and len(head) == 2 and isinstance(head[0], str)
                and isinstance(head[1], dict)):
            raise ProtocolError("the worker sent a malformed message")
        kind, fields = head
        if kind in ("value", "call"):
            fields = dict(fields, body=rest)
            return kind, (fields, buffers)
        return kind, fields

    def _serve_until_reply(self, deadline_s: float | None = None) -> tuple[str, Any]:
        """Read messages until the reply to our request, running remote calls meanwhile.

        If the wait is interrupted (Ctrl-C, task cancellation, an error escaping a
        remote tool), the request is abandoned: the serving process is killed and
        the checkpoint takes over, so the next request does not read a stale reply.
        """
        try:
            return self._serve(deadline_s)
        except (_CellTimeout, _WorkerDied, ProtocolError):
            raise
        except BaseException:
            self._take_over(kill=True)
            raise

    def _take_over(self, *, kill: bool, died: _WorkerDied | None = None) -> tuple[bool, str]:
        """The serving process failed (or must go): the checkpoint takes over, else a fresh
        worker starts. Returns (variables lost?, the crash report, if any)."""
        if kill and self._pidfd >= 0:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        crash = died.crash if died is not None else ""
        if died is not None and died.adopted:
            return False, crash
        if self.atomic:
            try:
                return False, self._await_takeover()
            except (WorkerDiedError, ProtocolError, OSError):
                pass
        self._restart()
        return True, crash

    def _serve(self, deadline_s: float | None) -> tuple[str, Any]:
        budget = deadline_s
        while True:
            started = time.perf_counter()
            ready = self._wait_readable(budget)
            if budget is not None:
                budget -= time.perf_counter() - started
            if ready == "dead":
                # Drain a reply the worker may have sent just before dying.
                assert self._sock is not None
                r, _, _ = select.select([self._sock], [], [], 0)
                if not r:
                    raise _WorkerDied(None)
            kind, fields = self._read_message()
            if kind == "call":
                self._releases += fields[0].get("released") or []
                self._run_remote_call(*fields)  # time in the host does not count
                continue
            if kind == "done" and isinstance(fields, dict):
                self._releases += fields.get("released") or []
            if kind == "ready":
                # The checkpoint took over: the process serving our request died.
                self._adopt(fields)
                raise _WorkerDied(None, crash=str(fields.get("crash", "")), adopted=True)
            return kind, fields

    def _wait_readable(self, timeout: float | None) -> str:
        assert self._sock is not None
        if timeout is not None and timeout <= 0:
            r, _, _ = select.select([self._sock], [], [], 0)
            if r:
                return "sock"
            raise _CellTimeout()
        waitables: list[Any] = [self._sock.fileno(), self._pidfd]
        r, _, _ = select.select(waitables, [], [], timeout)
        if not r:
            raise _CellTimeout()
        return "sock" if self._sock.fileno() in r else "dead"

    def _run_remote_call(self, head: dict[str, Any], buffers: list[Any]) -> None:
        try:
            args, kwargs = decode.loads_value(head["body"], buffers, types=self._types,
                                              refs=self._registry.objects)
            loop = getattr(self._loop, "value", None)
            token = _NESTED.set(_NESTED.get() | {id(self)})
            try:
                result = self._registry.resolve(head["op"], head["ref"], head["name"], args, kwargs,
                                                loop=loop)
            finally:
                _NESTED.reset(token)
            bio = io.BytesIO()
            out_buffers: list[Any] = []
            HostPickler(bio, self._registry, self._types,
                        buffer_callback=out_buffers.append).dump(result)
            self._send("call_result", {"ok": True, "payload": bio.getvalue(),
                                       "buffers": out_buffers})
        except Exception as exc:
            message = str(exc)
            if isinstance(exc, decode.UntrustedTypeError):
                message = ("an argument cannot be sent to the host: only plain data, numpy, "
                           f"pandas and injected types travel ({exc})")
                etype = "TypeError"
            elif isinstance(exc, (pickle.PicklingError, TypeError)) and "pickle" in message:
                etype = "TypeError"
                message = f"the remote result cannot be copied into the cave: {message}"
            else:
                etype = type(exc).__name__
            self._send("call_result", {"ok": False, "type": etype, "message": message})

    def _after_kill(self, why: str, limit: float | None, started: float,
                    died: _WorkerDied | None = None) -> CellResult:
        """The cell overran or the worker died: recover the pre-cell state from the backup."""
        self._releases.clear()  # whatever the cell let go of, the checkpoint still holds
        if why == "timeout" and not self.atomic:
            interrupted = self._interrupt(limit, started)
            if interrupted is not None:
                return interrupted
        lost, crash = self._take_over(kill=why == "timeout", died=died)
        duration = time.perf_counter() - started
        if why == "timeout":
            message = f"the cell ran longer than {limit:g} s and was stopped."
            error = CellError("timeout", "Timeout", message + (
                " The worker was restarted: variables were lost." if lost else ""))
        else:
            detail = crash.strip().splitlines()[0] if crash.strip() else "the worker process died"
            message = f"{detail}." + (" The worker was restarted: variables were lost." if lost else "")
            error = CellError("crash", "WorkerCrash", message, traceback=_crash_traceback(crash))
        return CellResult(ok=False, error=error, duration_s=duration, rolled_back=not lost)

    def _interrupt(self, limit: float | None, started: float) -> CellResult | None:
        """Non-atomic mode has no checkpoint: try SIGINT (KeyboardInterrupt) before a kill.

        Pure-Python loops and sleeps stop at once and the namespace is kept; a
        long C call does not, and is killed after a short grace period.
        """
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGINT)
            kind, fields = self._serve_until_reply(deadline_s=_INTERRUPT_GRACE_S)
        except (_CellTimeout, _WorkerDied, ProcessLookupError):
            return None
        if kind != "done":
            return None
        result = _cell_result(fields, time.perf_counter() - started)
        error = CellError("timeout", "Timeout", f"the cell ran longer than {limit:g} s and was "
                          "interrupted; its partial effects were kept (atomic=False).",
                          traceback=result.error.traceback if result.error else "")
        return CellResult(ok=False, stdout=result.stdout, stderr=result.stderr, error=error,
                          duration_s=time.perf_counter() - started, changed=result.changed,
                          deleted=result.deleted)

    def _await_takeover(self) -> str:
        """Wait for the backup's ready message; returns the crash report it carries."""
        deadline = time.monotonic() + _TAKEOVER_WAIT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerDiedError("the checkpoint did not take over in time")
            try:
                kind, fields = self._read_message(timeout=remaining)
            except _CellTimeout:
                raise WorkerDiedError("the checkpoint did not take over in time") from None
            except _WorkerDied:
                raise WorkerDiedError("the worker and its checkpoint are gone") from None
            if kind == "ready":
                self._adopt(fields)
                return str(fields.get("crash", ""))
            # a result the killed worker sent at the last moment: the cell is rolled back anyway

    def _restart(self, kill: bool = False) -> None:
        """Replace a lost worker with a fresh one and re-bind what the host injected."""
        if kill and self._pidfd >= 0:
            # The stream can no longer be trusted: the process goes, whatever it was doing.
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _cleanup({"sock": self._sock, "pidfd": self._pidfd, "workdirs": set()})
        self._pidfd = -1
        self._start_worker()
        def description(name: str) -> str | None:
            info = self._injected.get(name)
            return info.description if info else None

        for name, obj in list(self._remote_objects.items()):
            self._inject_remote(name, obj, description(name))
        for name, cls in list(self._types.items()):
            self._inject_copy(name, cls, description(name))


class _CellTimeout(Exception):
    pass


class _WorkerDied(Exception):
    def __init__(self, exitcode: int | None, crash: str = "", adopted: bool = False):
        super().__init__("worker died")
        self.exitcode = exitcode
        self.crash = crash
        self.adopted = adopted  # the checkpoint already took over


def _cleanup(state: dict[str, Any]) -> None:
    if state.get("owner", os.getpid()) != os.getpid():
        return  # a forked copy of the host must not stop the parent's worker
    sock = state.get("sock")
    pidfd = state.get("pidfd", -1)
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
        state["sock"] = None
    if pidfd is not None and pidfd >= 0:
        try:
            ready, _, _ = select.select([pidfd], [], [], 1.0)
            if not ready:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.close(pidfd)
        except OSError:
            pass
        state["pidfd"] = -1
    for path in state.get("workdirs", ()):
        shutil.rmtree(path, ignore_errors=True)
    state.get("workdirs", set()).clear()


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise CaveUsageError(f"{name!r} is not a valid Python name")
    if is_reserved(name):
        raise CaveUsageError(f"{name!r} is reserved for the runtime")


def _doc(obj: Any) -> str:
    import inspect

    doc = inspect.getdoc(obj) or ""
    return doc if len(doc) <= 2000 else doc[:2000] + "..."


def _crash_traceback(crash: str) -> str:
    lines = [line for line in crash.splitlines() if line.strip().startswith("File \"<cell-")]
    return "\n".join(lines)


def _cell_result(fields: Mapping[str, Any], wall: float) -> CellResult:
    err = fields.get("error")
    error = None
    if err:
        error = CellError(
            kind=err["kind"], type=err["type"], message=err["message"],
            traceback=err.get("traceback", ""), line=err.get("line"),
            violations=tuple(Violation(**v) for v in err.get("violations", [])),
        )
    return CellResult(
        ok=bool(fields["ok"]), stdout=fields.get("stdout", ""), stderr=fields.get("stderr", ""),
        value_repr=fields.get("value_repr"), error=error,
        duration_s=float(fields.get("duration_s", 0.0)),
        changed=tuple(VariableInfo(**v) for v in fields.get("changed", [])),
        deleted=tuple(fields.get("deleted", [])),
        stdout_truncated=bool(fields.get("stdout_truncated", False)),
        output_index=fields.get("output_index"), rolled_back=bool(fields.get("rolled_back")),
    )


# --- copying values into the worker ------------------------------------------------------------

def _worker_importable(module_name: str | None) -> bool:
    """Whether the worker can import this module by name (stdlib, site-packages, cavelite)."""
    if not module_name or module_name == "__main__":
        return False
    top = module_name.split(".")[0]
    if top in sys.builtin_module_names or top == "cavelite":
        return True
    module = sys.modules.get(top)
    path = getattr(module, "__file__", None)
    if not path:
        return False
    real = os.path.realpath(path)
    return any(real.startswith(root + os.sep) for root in library_roots())


def _encode_for_worker(value: Any, types_: dict[str, type], *, by_value: bool) -> tuple[bytes, list[Any]]:
    buffers: list[Any] = []
    if not by_value:
        try:
            bio = io.BytesIO()
            # persistent_id costs a Python call per object: only when there are types to map.
            pickler = (_TypeRefPickler(bio, types_, buffer_callback=buffers.append) if types_
                       else pickle.Pickler(bio, protocol=5, buffer_callback=buffers.append))
            pickler.dump(value)
            return bio.getvalue(), buffers
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            if "pickle" in str(exc) and ("lock" in str(exc) or "socket" in str(exc)):
                raise UnpicklableValueError(f"cannot copy this value into the cave: {exc}") from None
            buffers.clear()
    bio = io.BytesIO()
    try:
        _by_value_pickler()(bio, types_, buffer_callback=buffers.append).dump(value)
    except Exception as exc:
        raise UnpicklableValueError(f"cannot copy this value into the cave: {exc}") from None
    return bio.getvalue(), buffers


class _TypeRefPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, types_: dict[str, type], **kwargs: Any):
        super().__init__(file, protocol=5, **kwargs)
        self._type_names = {id(cls): name for name, cls in types_.items()}

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, type):
            name = self._type_names.get(id(obj))
            if name is not None:
                return ("type", name)
        return None


@functools.lru_cache(maxsize=1)
def _by_value_pickler() -> type:
    import dill  # imported on first use: most sessions never send code by value

    class ByValuePickler(dill.Pickler):  # type: ignore[misc]
        """dill, but code from modules the worker cannot import travels by value."""

        def __init__(self, file: io.BytesIO, types_: dict[str, type], **kwargs: Any):
            super().__init__(file, protocol=5, recurse=True, **kwargs)
            self._type_names = {id(cls): name for name, cls in types_.items()}
            self._top = True

        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, type) and not self._top:
                name = self._type_names.get(id(obj))
                if name is not None:
                    return ("type", name)
            self._top = False
            return None

        def save(self, obj: Any, save_persistent_id: bool = True) -> None:
            if isinstance(obj, (type, types.FunctionType)):
                module = getattr(obj, "__module__", None)
                if module and module != "__main__" and not _worker_importable(module):
                    try:
                        obj.__module__ = "__main__"  # dill sends __main__ objects by value
                    except (AttributeError, TypeError):
                        return super().save(obj, save_persistent_id)
                    try:
                        return super().save(obj, save_persistent_id)
                    finally:
                        obj.__module__ = module
            return super().save(obj, save_persistent_id)

    return ByValuePickler
