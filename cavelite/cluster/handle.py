"""`ClusterRuntime`: a `Runtime`-like handle to a session that lives on some node of a Ray cluster.

Every call looks the session up (cached until it moves), sends the operation
to that node's host actor, serves the remote calls a cell makes on the way
(they run here, in this process), and returns what the host's `Runtime`
returned or raised. When the session has moved (slept, woke elsewhere), the
handle looks it up again; when it is asleep, the call wakes it; when its node
is gone, the call brings it back on another node from its last snapshot and,
if changes were lost with the node, raises `SessionLostError` once.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import TYPE_CHECKING, Any

import ray

from ..errors import (
    CaveRuntimeError,
    CaveUsageError,
    RuntimeClosedError,
    UnpicklableValueError,
    WorkerDiedError,
)
from ..runtime.config import DEFAULT, Default
from ..runtime.injection import FUNCTION_TYPES, check_description, check_name
from ..runtime.results import CellError, CellResult, Injected, VariableInfo
from ..runtime.snapshot import Snapshot
from ..security.policy import Policy
from .errors import SessionLostError
from .remotes import CallAnswer

if TYPE_CHECKING:
    from ..runtime.like import RuntimeLike
    from .sessions import Sessions

# (sessions id, session id, call id) of the remote call this context is serving, if any.
_SERVING: contextvars.ContextVar[tuple[int, str, int] | None] = contextvars.ContextVar(
    "cavelite_cluster_serving", default=None)

_MAX_HOPS = 20  # moves followed by one call before it gives up


class ClusterRuntime:
    """A session on the cluster, with the `Runtime` API (see `Sessions.open`).

    Results, errors and promises are those of the `Runtime` on the node:
    cells are atomic, timeouts are the session's, ``confinement`` reports the
    layers applied on the node that holds the session now.
    """

    def __init__(self, sessions: Sessions, session_id: str, attached: int):
        self._sessions = sessions
        self.session_id = session_id
        self._attached = attached  # the epoch this handle last worked at (losses before: not ours)
        self._route: tuple[Any, int] | None = None
        self._info: dict[str, Any] | None = None
        self._closed = False
        self._loop = threading.local()

    # --- what the session is --------------------------------------------------------------

    def _about(self, key: str) -> Any:
        if self._info is None:
            self._info = self._call("info")
        return self._info[key]

    @property
    def confinement(self) -> tuple[str, ...]:
        """The containment layers on the node that holds the session now."""
        return tuple(self._about("confinement")) if not self._closed else ()

    @property
    def preload(self) -> tuple[str, ...]:
        return tuple(self._about("preload"))

    @property
    def atomic(self) -> bool:
        return bool(self._about("atomic"))

    @property
    def cell_timeout(self) -> float | None:
        value: float | None = self._about("cell_timeout")
        return value

    @property
    def request_timeout(self) -> float:
        return float(self._about("request_timeout"))

    @property
    def max_output_chars(self) -> int:
        return int(self._about("max_output_chars"))

    @property
    def policy(self) -> Policy:
        policy: Policy = self._about("policy")
        return policy

    @property
    def durable(self) -> bool:
        return bool(self._about("durable"))

    @property
    def node_id(self) -> str:
        """The Ray node id of the node that holds the session now."""
        return str(self._about("node"))

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<ClusterRuntime {self.session_id!r}{' closed' if self._closed else ''}>"

    # --- the Runtime API --------------------------------------------------------------------

    def execute(self, code: str, *, timeout: float | None | Default = DEFAULT) -> CellResult:
        """Run one cell on the session's node (see `Runtime.execute`)."""
        if not isinstance(code, str):
            raise CaveUsageError("code must be a str")
        if not isinstance(timeout, Default) and timeout is not None and not timeout > 0:
            raise CaveUsageError("timeout must be positive (or None for no limit)")
        result: CellResult = self._call("execute", code, timeout)
        return result

    def inject(self, name: str, value: Any, *, description: str | None = None,
               remote: bool | None = None) -> None:
        """Put ``value`` into the session as ``name`` (see `Runtime.inject`).

        Copied values travel through Ray's object store. Remote objects (functions
        by default, anything with ``remote=True``) stay in this process: cells call
        them through the session's node, and they run here.
        """
        check_name(name)
        check_description(description)
        if remote is None:
            remote = isinstance(value, FUNCTION_TYPES)
        if remote:
            descriptor = self._sessions.remotes.describe(value)
            self._call("inject_remote", name, descriptor, description)
        else:
            self._call("inject", name, value, description)

    def inject_type(self, cls: type, *, name: str | None = None, description: str | None = None) -> None:
        """Make a class available to cells (copied in; its instances can be retrieved)."""
        if not isinstance(cls, type):
            raise CaveUsageError("inject_type expects a class")
        check_name(name or cls.__name__)
        check_description(description)
        self._call("inject_type", cls, name, description)
        self._sessions.remotes.types[name or cls.__name__] = cls

    def retrieve(self, name: str, *, trusted: bool = False) -> Any:
        """A variable's value, decoded on the node by the restricted decoder (see `Runtime.retrieve`)."""
        check_name(name)
        return self._call("retrieve", name, bool(trusted))

    def variables(self) -> list[VariableInfo]:
        found: list[VariableInfo] = self._call("variables")
        return found

    def injected(self) -> list[Injected]:
        found: list[Injected] = self._call("injected")
        return found

    def delete(self, name: str) -> None:
        check_name(name)
        self._call("delete", name)

    def reset(self) -> None:
        """A fresh worker for the session, as new as a new session (see `Runtime.reset`)."""
        self._call("reset")

    def snapshot(self) -> Snapshot:
        """The session's namespace as a `Snapshot` (remote objects recorded by name)."""
        snap: Snapshot = self._call("snapshot")
        return snap

    def restore(self, snapshot: Snapshot | bytes, *, remotes: dict[str, Any] | None = None) -> None:
        """Replace the session's namespace with a snapshot's (unlike `Runtime.restore`, in place).

        Remote objects named by the snapshot are re-bound from ``remotes`` (objects of
        this process), else from those the session holds now under the same names.
        """
        snap = Snapshot.from_bytes(snapshot) if isinstance(snapshot, bytes) else snapshot
        descriptors = {}
        for name, obj in (remotes or {}).items():
            check_name(name)
            descriptors[name] = (self._sessions.remotes.describe(obj), dict(snap.descriptions).get(name))
        self._call("restore", snap.to_bytes(), descriptors)

    def close(self) -> None:
        """Close the session (for every handle to it): its worker stops, its records go."""
        if self._closed:
            return
        self._sessions.close(self.session_id)
        self._closed = True

    def __enter__(self) -> ClusterRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- async twins --------------------------------------------------------------------------

    async def aexecute(self, code: str, *, timeout: float | None | Default = DEFAULT) -> CellResult:
        result: CellResult = await self._in_thread(self.execute, code, timeout=timeout)
        return result

    async def ainject(self, name: str, value: Any, *, description: str | None = None,
                      remote: bool | None = None) -> None:
        await self._in_thread(self.inject, name, value, description=description, remote=remote)

    async def aretrieve(self, name: str, *, trusted: bool = False) -> Any:
        return await self._in_thread(self.retrieve, name, trusted=trusted)

    async def avariables(self) -> list[VariableInfo]:
        found: list[VariableInfo] = await self._in_thread(self.variables)
        return found

    async def adelete(self, name: str) -> None:
        await self._in_thread(self.delete, name)

    async def areset(self) -> None:
        await self._in_thread(self.reset)

    async def asnapshot(self) -> Snapshot:
        snap: Snapshot = await self._in_thread(self.snapshot)
        return snap

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    async def _in_thread(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()

        def run() -> Any:
            self._loop.value = loop  # remote async functions run on the caller's loop
            try:
                return fn(*args, **kwargs)
            finally:
                self._loop.value = None
        return await asyncio.to_thread(run)

    # --- plumbing -------------------------------------------------------------------------------

    def _call(self, op: str, *args: Any) -> Any:
        if self._closed:
            raise RuntimeClosedError("this session was closed")
        serving = _SERVING.get()
        within = serving[2] if serving and serving[:2] == (id(self._sessions), self.session_id) else 0
        for _ in range(_MAX_HOPS):
            host, epoch = self._where()
            try:
                try:
                    pending = host.request.remote(self.session_id, epoch, op, args, within)
                except TypeError as exc:  # Ray could not serialize an argument
                    raise UnpicklableValueError(
                        f"cannot send `{op}` to the session: {str(exc).splitlines()[0]}; pass "
                        "remote=True to keep the object here and use it by proxy") from None
                item = ray.get(pending)
                while item[0] == "call":
                    answer = self._serve(item[1], item[2])
                    item = ray.get(host.resume.remote(self.session_id, epoch, item[1], answer))
            except ray.exceptions.RayTaskError as exc:  # the host failed, not the session's Runtime
                raise CaveRuntimeError(f"the host of session {self.session_id!r} failed on "
                                       f"`{op}`: {str(exc).splitlines()[0]}") from None
            except ray.exceptions.RayActorError:
                self._route = None
                self._info = None
                self._sessions.recover(self.session_id, epoch)
                self._where()  # raises SessionLostError if the node took changes with it
                if op == "execute":  # the cell's fate is unknown: as after a crash, it did not happen
                    return _lost_cell()
                continue
            kind, value = item[0], item[1]
            if kind == "orphan":  # its host on that node died and another runs there now
                self._sessions.recover(self.session_id, epoch)
                kind = "moved"
            if kind == "moved":
                self._route = None
                self._info = None
                continue
            if kind == "error":
                raise value
            self._attached = epoch
            return value
        raise WorkerDiedError(f"the session {self.session_id!r} kept moving; try again",
                              variables_lost=False)

    def _serve(self, call_id: int, request: Any) -> CallAnswer:
        token = _SERVING.set((id(self._sessions), self.session_id, call_id))
        try:
            return self._sessions.remotes.serve(request, getattr(self._loop, "value", None))
        finally:
            _SERVING.reset(token)

    def _where(self) -> tuple[Any, int]:
        """The host actor holding the session now, and its epoch (waking or moving it if needed)."""
        if self._route is not None:
            return self._route
        host, epoch = self._sessions.locate(self.session_id, self._attached)
        missed = self._sessions.directory.history(self.session_id, self._attached, epoch)
        self._route, self._attached = (host, epoch), max(self._attached, epoch)
        for move in missed:
            if move.cause == "failover" and move.lost:
                restored = (f"its snapshot after {move.restored_seq} changes" if move.restored_seq
                            else "an empty namespace (it had no snapshot)")
                raise SessionLostError(
                    f"the node holding session {self.session_id!r} was lost with changes made "
                    f"since its last snapshot; the session is back on another node from {restored}",
                    restored_seq=move.restored_seq, node=move.node)
        return self._route


def _lost_cell() -> CellResult:
    error = CellError("crash", "NodeLost", "the node running the session was lost during the cell; "
                      "the session is back on another node as it was before the cell.")
    return CellResult(ok=False, error=error, rolled_back=True)


if TYPE_CHECKING:
    def _handle_is_runtime_like(handle: ClusterRuntime) -> RuntimeLike:
        return handle  # mypy checks that CaveLite(runtime=handle) is well typed
