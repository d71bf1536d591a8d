"""`Runtime`: the host's handle to one contained, persistent Python namespace.

The public API over a `Session` (requests, deadlines, recovery) and the
host's own records of what it injected (remote objects, classes), which are
the only source it trusts about the session.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import (
    CaveUsageError,
    ProtocolError,
    RuntimeClosedError,
    UntrustedTypeError,
)
from ..security.policy import Policy
from . import calls, codec, injection, outcomes
from .aio import AsyncTwins
from .config import DEFAULT, Default, WorkerConfig
from .injection import FUNCTION_TYPES, check_description, check_name
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
    ListVariables,
    Restore,
    Restored,
    Retrieve,
    SnapshotBlob,
    TakeSnapshot,
    Value,
    Variables,
)
from .registry import RemoteRegistry
from .results import CellResult, Injected, VariableInfo
from .session import Failed, Session
from .snapshot import Snapshot
from .zygote import track_session

DEFAULT_PRELOAD: tuple[str, ...] = ("numpy", "pandas")
# matplotlib can only be set up before the cave closes, so figures need it preloaded.
# It is not the default: the zygote's start pays ~2.5x and back-to-back atomic cells
# wait for a larger fork (benchmarks/figures_bench.py); the CLI and the MCP server,
# where charts are the point, preload it where installed.
FIGURES_PRELOAD: tuple[str, ...] = DEFAULT_PRELOAD + (
    ("matplotlib",) if importlib.util.find_spec("matplotlib") is not None else ())


class Runtime(AsyncTwins):
    """A persistent, contained Python namespace in a worker process.

    >>> with Runtime() as rt:
    ...     rt.execute("x = 40 + 2").ok
    True

    ``cell_timeout`` (seconds, None for no limit) bounds each cell, remote calls
    included; ``request_timeout`` bounds every other request (variables,
    retrieve, inject...); ``memory_limit_mb`` is the memory a cell may
    allocate on top of the worker's baseline; ``max_output_chars`` bounds the
    stdout a result carries (the rest stays in ``cell_outputs`` in the
    namespace). ``preload`` names the modules the zygote imports before forking
    workers: numpy, pandas and, where it is installed, matplotlib
    (`DEFAULT_PRELOAD`). ``atomic=False`` turns off per-cell rollback (as in Jupyter)
    for state that cannot be forked. A cell returns at most ``max_figures``
    figures (matplotlib, when preloaded), each at most ``max_figure_bytes`` of
    PNG. These are fixed for the runtime's life.
    """

    def __init__(
        self,
        *,
        preload: Iterable[str] = DEFAULT_PRELOAD,
        cell_timeout: float | None = 30.0,
        request_timeout: float = 60.0,
        memory_limit_mb: int | None = 2048,
        max_output_chars: int = 20_000,
        max_repr_chars: int = 2_000,
        hard_output_limit: int = 10_000_000,
        atomic: bool = True,
        policy: Policy | None = None,
        max_figures: int = 8,
        max_figure_bytes: int = 5_000_000,
    ):
        if cell_timeout is not None and not cell_timeout > 0:
            raise CaveUsageError("cell_timeout must be positive (or None for no limit)")
        if not request_timeout > 0:
            raise CaveUsageError("request_timeout must be positive")
        if max_output_chars < 100:
            raise CaveUsageError("max_output_chars must be at least 100")
        if memory_limit_mb is not None and memory_limit_mb < 16:
            raise CaveUsageError("memory_limit_mb must be at least 16 (or None)")
        if not 0 <= max_figures <= 100:
            raise CaveUsageError("max_figures must be between 0 and 100")
        if not 1_000 <= max_figure_bytes <= 1 << 28:
            raise CaveUsageError("max_figure_bytes must be between 1000 and 2**28")
        if policy is not None and not isinstance(policy, Policy):
            raise CaveUsageError(f"policy must be a cavelite.Policy, not {type(policy).__name__}")
        self._config = WorkerConfig(policy or Policy.default(), bool(atomic), memory_limit_mb,
                                    max_output_chars, max_repr_chars, hard_output_limit,
                                    max_figures=int(max_figures),
                                    max_figure_bytes=int(max_figure_bytes))
        self._cell_timeout = cell_timeout
        self._request_timeout = float(request_timeout)
        self._preload = tuple(preload)
        self._owner = os.getpid()
        self._lock = threading.RLock()
        self._registry = RemoteRegistry()
        self._records = injection.HostRecords()
        self._loop = threading.local()
        self._closed = False
        self._session = Session(self._preload, self._config, self._serve_call, self._rebind)
        self._finalizer = weakref.finalize(self, self._session.resources.close)
        track_session(self)

    # --- what the runtime is ------------------------------------------------------------

    @property
    def atomic(self) -> bool:
        """Whether a failed cell rolls back (fixed at creation)."""
        return self._config.atomic

    @property
    def cell_timeout(self) -> float | None:
        """The default time limit of a cell, in seconds (None: no limit)."""
        return self._cell_timeout

    @property
    def request_timeout(self) -> float:
        """The time limit of every other request, in seconds."""
        return self._request_timeout

    @property
    def policy(self) -> Policy:
        """The policy cells are checked against (fixed at creation)."""
        return self._config.policy

    @property
    def preload(self) -> tuple[str, ...]:
        """The modules the worker's zygote imported before forking it."""
        return self._preload

    @property
    def max_output_chars(self) -> int:
        """How much stdout a `CellResult` carries (the rest is kept in the cave)."""
        return self._config.max_output_chars

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    @property
    def confinement(self) -> tuple[str, ...]:
        """The containment the worker applied: ``rlimits``, ``audit-hook`` and, where the
        machine allows each, ``landlock``, ``seccomp``, ``private-uid`` (root host) or
        ``user-namespace``, ``nproc``, ``no-capabilities`` (or
        ``capabilities:dac_read_search``), ``cgroup-memory``, ``cgroup-pids``
        (docs/security.md, layer 4). A host can refuse to run without one it needs."""
        return self._session.conn.confinement if not self._closed else ()

    @property
    def pid(self) -> int:
        """The pid of the process currently serving this runtime (changes after a rollback)."""
        return self._session.conn.pid if not self._closed else 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pid={self.pid}"
        return f"<Runtime {state} atomic={self.atomic} preload={list(self._preload)}>"

    # --- cells ----------------------------------------------------------------------------

    def execute(self, code: str, *, timeout: float | None | Default = DEFAULT) -> CellResult:
        """Run one cell. Failures come back in ``CellResult.error``; nothing raises for them.

        ``timeout`` (seconds) overrides the runtime's ``cell_timeout``; ``None`` is no limit.
        """
        if not isinstance(code, str):
            raise CaveUsageError("code must be a str")
        limit = self._cell_timeout if isinstance(timeout, Default) else timeout
        if limit is not None and not limit > 0:
            raise CaveUsageError("timeout must be positive (or None for no limit)")
        with self._exclusive():
            self._check_open()
            started = time.perf_counter()
            self._session.interrupted = False
            try:
                incoming = self._session.request(Exec(code), timeout=limit,
                                                 interruptible=not self.atomic)
            except Failed as failed:
                interrupted, self._session.interrupted = self._session.interrupted, False
                return outcomes.failed_cell(failed, limit, time.perf_counter() - started,
                                            interrupted=interrupted)
            reply = incoming.message
            if not isinstance(reply, CellReply):
                self._session.recover(kill=True)
                raise ProtocolError("the worker answered a cell with something else")
            lost = False
            if reply.rolled_back:
                lost = self._session.after_rollback().lost
            else:
                self._apply_releases()
            return outcomes.cell_result(reply, limit, time.perf_counter() - started, lost)

    def interrupt(self) -> bool:
        """Stop the cell (or request) running now, from any thread; True if one was running.

        The serving process is killed and the checkpoint takes over, so the
        namespace is as it was before the cell; `execute` returns with an
        ``interrupted`` error (a non-cell request raises `WorkerDiedError`).
        """
        return self._session.interrupt()

    # --- the namespace --------------------------------------------------------------------

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
        check_name(name)
        check_description(description)
        if remote is None:
            remote = isinstance(value, FUNCTION_TYPES)
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
        request, info = injection.remote_request(name, value, self._registry.register(value),
                                                 description)
        self._request(request, "inject", expect=InjectDone)
        self._records.remote(name, value, info)

    def _inject_copy(self, name: str, value: Any, description: str | None) -> None:
        info: Injected | None
        if injection.needs_enum_rebuild(value, codec.worker_importable(getattr(value, "__module__", None))):
            request, info = injection.enum_request(name, value, description)
            self._request(request, "inject", expect=InjectDone)
        else:
            copy, buffers = injection.copy_request(name, value, description, self._records.types)
            if self._request(copy, "inject", buffers=buffers, expect=InjectDone,
                             by_value_ok=True) is None:  # the worker cannot import a class it names
                copy, buffers = injection.copy_request(name, value, description, self._records.types,
                                                       by_value=True)
                self._request(copy, "inject", buffers=buffers, expect=InjectDone)
            info = injection.copied_info(name, value, description)
        self._records.copied(name, value, info)

    def retrieve(self, name: str, *, trusted: bool = False) -> Any:
        """Copy a variable back into the host as a native object.

        Only plain data, datetime/decimal/fractions, numpy, pandas and injected
        types are decoded; anything else raises `UntrustedTypeError` unless
        ``trusted=True`` (which lets the worker's pickle run code here).
        """
        check_name(name)
        with self._exclusive():
            self._check_open()
            reply, buffers = self._request(Retrieve(name, bool(trusted)), "retrieve", missing=name,
                                           expect=Value, with_buffers=True)
            try:
                return codec.decode_from_worker(reply.payload, buffers, types_=self._records.types,
                                                refs=self._registry.objects, trusted=trusted)
            except UntrustedTypeError as exc:
                raise UntrustedTypeError(f"cannot retrieve {name!r}: {exc}") from None
            except Exception as exc:  # what a hostile pickle can provoke in the decoder
                raise ProtocolError(f"cannot decode {name!r}: {type(exc).__name__}: {exc}") from None

    def variables(self) -> list[VariableInfo]:
        """The namespace's variables, each with its type and a bounded summary."""
        with self._exclusive():
            self._check_open()
            return list(self._request(ListVariables(), "variables", expect=Variables).variables)

    def injected(self) -> list[Injected]:
        """What the host injected: remote functions and objects, copied types and functions."""
        return list(self._records.injected.values())

    def delete(self, name: str) -> None:
        """Remove a variable from the namespace."""
        check_name(name)
        with self._exclusive():
            self._check_open()
            self._request(Delete(name), "delete", missing=name, expect=Done)
            self._records.forget(name)

    def reset(self) -> None:
        """Start over in a fresh worker, as new as a new session; injected remotes and types stay.

        Every variable goes, injected values included, and so does any module
        state, thread or task a cell left behind.
        """
        with self._exclusive():
            self._check_open()
            self._session.restart()

    def snapshot(self) -> Snapshot:
        """Park the namespace (remote objects are recorded by name, not copied)."""
        with self._exclusive():
            self._check_open()
            blob = self._request(TakeSnapshot(), "snapshot", expect=SnapshotBlob).blob
            remotes = tuple(sorted(self._records.remote_objects))  # the host's records, not the worker's
            descriptions = tuple((n, self._records.injected[n].description or "") for n in remotes
                                 if n in self._records.injected and self._records.injected[n].description)
            return Snapshot(blob, remotes, descriptions)

    @classmethod
    def restore(cls, snapshot: Snapshot | bytes, *, remotes: Mapping[str, Any] | None = None,
                **kwargs: Any) -> Runtime:
        """A new runtime holding a snapshot's namespace; remote objects are re-bound by name.

        Pass the host objects for the snapshot's remote names in ``remotes``;
        other keyword arguments go to `Runtime`.
        """
        snap = Snapshot.from_bytes(snapshot) if isinstance(snapshot, bytes) else snapshot
        missing = [n for n in snap.remotes if n not in (remotes or {})]
        if missing:
            raise CaveUsageError(f"restore needs the remote objects {missing} (pass remotes=...)")
        rt = cls(**kwargs)
        try:
            with rt._lock:
                rt._request(Restore(snap.blob), "restore", expect=Restored)
            described = dict(snap.descriptions)
            for name, obj in (remotes or {}).items():
                rt.inject(name, obj, description=described.get(name),
                          remote=True if not isinstance(obj, FUNCTION_TYPES) else None)
        except BaseException:
            rt.close()
            raise
        return rt

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker and remove its private directory. Safe to call twice."""
        if self._owner != os.getpid():
            self._closed = True  # in a forked copy of the host: forget it, leave the worker be
            return
        with self._exclusive():
            if self._closed:
                return
            self._closed = True
            self._session.close()
            self._finalizer.detach()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------------------

    def _exclusive(self) -> Any:
        """The runtime's lock, unless this call is nested inside one of its remote calls.

        A remote tool may use the runtime whose cell called it (an agent sharing
        the runtime, a tool that retrieves a variable). The outer request holds
        the lock and is blocked until the tool returns, so the nested request
        runs without it, whichever thread the tool hops to (the context follows).
        """
        if calls.serving(id(self)):
            return contextlib.nullcontext()
        return self._lock

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeClosedError("this runtime was closed")
        if self._owner != os.getpid():
            raise CaveUsageError(
                "this Runtime was created before the process forked; create a new one in this "
                "process (its worker belongs to the parent)"
            )

    def _request(self, message: Any, what: str, *, expect: type, missing: str | None = None,
                 buffers: list[Any] = (), by_value_ok: bool = False,  # type: ignore[assignment]
                 with_buffers: bool = False) -> Any:
        """Send a request that is not a cell; map its failures to exceptions."""
        try:
            incoming = self._session.request(message, timeout=self._request_timeout,
                                             buffers=buffers)
        except Failed as failed:
            raise outcomes.request_error(failed, what, self._request_timeout) from None
        reply = incoming.message
        if isinstance(reply, Failure):
            if by_value_ok and reply.code is ErrorCode.NEEDS_BY_VALUE:
                return None
            raise outcomes.failure_error(reply, missing)
        if not isinstance(reply, expect):
            self._session.recover(kill=True)
            raise ProtocolError(f"the worker answered `{what}` with {type(reply).__name__}")
        self._apply_releases()
        return (reply, incoming.buffers) if with_buffers else reply

    def _apply_releases(self) -> None:
        if self._session.releases:
            pinned = {self._registry.register(obj) for obj in self._records.remote_objects.values()}
            self._registry.release(self._session.releases, pinned)
            self._session.releases.clear()

    def _serve_call(self, call: Call, buffers: list[Any]) -> tuple[CallResult, list[Any]]:
        return calls.serve(call, buffers, self._registry, self._records.types,
                           getattr(self._loop, "value", None), nested_in=id(self))

    def _rebind(self) -> None:
        """A fresh worker replaced a lost one: bind the host's remotes and types again."""
        pinned = {self._registry.register(obj) for obj in self._records.remote_objects.values()}
        self._registry.release(list(self._registry.objects), pinned)

        for name, obj in list(self._records.remote_objects.items()):
            self._inject_remote(name, obj, self._records.description(name))
        for name, cls in list(self._records.types.items()):
            self._inject_copy(name, cls, self._records.description(name))
