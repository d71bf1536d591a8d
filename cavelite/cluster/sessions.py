"""`connect` and `Sessions`: open, find, move and close sessions on a Ray cluster.

`Sessions` is what a client holds: it starts a host actor on every node it
finds (`NodeHost`, one per node, detached so sessions outlive the client),
places new and waking sessions on the least-loaded node, and routes an id
to the node that holds it through the directory in Ray's GCS.
"""

from __future__ import annotations

import inspect
import os
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..errors import CaveRuntimeError, CaveUsageError, RuntimeClosedError
from ..runtime import Runtime
from .directory import Directory, host_name
from .errors import ClusterFullError
from .handle import ClusterRuntime
from .host import HostSettings, NodeHost, forget, nodes
from .remotes import ClientRemotes
from .stores import RAY_NAMESPACE, ObjectStore, check_store, start_keeper

_RUNTIME_OPTIONS = set(inspect.signature(Runtime.__init__).parameters) - {"self"}
_PLACE_TRIES = 10
_NODES_FRESH_S = 1.0


def connect(address: str | None = None, *, space: str = "default", store: Any = None,
            idle_s: float | None = 300.0, max_sessions: int | None = None,
            max_memory_mb: float | None = None, durable: str | None = None,
            preload: tuple[str, ...] = ("numpy", "pandas"), **ray_init: Any) -> Sessions:
    """Connect to a Ray cluster (``"auto"``, an address) or start a local one (``None``).

    ``space`` keeps deployments on one cluster apart. The node settings
    (``store``, ``idle_s``, ``max_sessions``, ``max_memory_mb``) are fixed by the
    first client that starts a node's host: a directory path or an object with
    ``put``/``get`` for ``store`` (default: Ray's object store), seconds of
    idleness before a session sleeps (None: never), awake sessions per node,
    and their memory per node (MB). ``durable="cell"`` makes it the default for
    sessions opened by this client. Other keywords go to ``ray.init``.
    """
    if durable not in (None, "cell"):
        raise CaveUsageError('durable must be None or "cell"')
    if idle_s is not None and not idle_s > 0:
        raise CaveUsageError("idle_s must be positive (or None: never sleep)")
    for label, cap in (("max_sessions", max_sessions), ("max_memory_mb", max_memory_mb)):
        if cap is not None and not cap > 0:
            raise CaveUsageError(f"{label} must be positive (or None)")
    if not space or "/" in space:
        raise CaveUsageError("space must be a non-empty name without '/'")
    if not ray.is_initialized():
        if address is None:
            # A local Ray for this machine: every address stays on the loopback.
            ray_init.setdefault("_node_ip_address", "127.0.0.1")
            ray_init.setdefault("include_dashboard", False)
        _quiet_init(address, ray_init)
    settings = HostSettings(space, check_store(store) if store is not None else ObjectStore(space),
                            idle_s, max_sessions, max_memory_mb)
    return Sessions(settings, durable, tuple(preload))


class Sessions:
    """The sessions of one deployment (``space``) on the Ray cluster this process is connected to."""

    def __init__(self, settings: HostSettings, durable: str | None, preload: tuple[str, ...]):
        self.settings = settings
        self.durable = durable
        self.preload = preload
        self.directory = Directory(settings.space)
        self.remotes = ClientRemotes()  # the remote objects this process injected
        self._hosts: dict[str, Any] = {}
        self._nodes_at = -_NODES_FRESH_S
        if isinstance(settings.store, ObjectStore):
            start_keeper(settings.space, _head_node())
        self.hosts()

    # --- nodes --------------------------------------------------------------------------------

    def hosts(self) -> dict[str, Any]:
        """The host actor of every live node (started where missing).

        The node list is asked of Ray at most once a second: placement calls this
        for every new or waking session, and a host that died is dropped from the
        cache by the call that found it dead.
        """
        now = time.monotonic()
        if now - self._nodes_at < _NODES_FRESH_S and self._hosts:
            return dict(self._hosts)
        self._nodes_at = now
        alive = {n["NodeID"] for n in nodes() if n["Alive"]}
        for node in list(self._hosts):
            if node not in alive:
                del self._hosts[node]
        for node in alive - set(self._hosts):
            self._hosts[node] = NodeHost.options(  # type: ignore[attr-defined]
                name=host_name(self.settings.space, node), namespace=RAY_NAMESPACE, lifetime="detached",
                get_if_exists=True,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            ).remote(self.settings, self.preload)
        return dict(self._hosts)

    def load(self, *, memory: bool = True) -> list[dict[str, Any]]:
        """Each node's awake sessions and their memory (MB), least loaded first."""
        hosts = self.hosts()
        refs = {node: host.load.remote(memory) for node, host in hosts.items()}
        found = []
        for node, ref in refs.items():
            try:
                found.append(ray.get(ref, timeout=30))
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                self._hosts.pop(node, None)
        return sorted(found, key=lambda x: (x["full"], x["sessions"], x["memory_mb"]))

    def _host(self, node: str) -> Any | None:
        """The host actor on ``node``, or None if that node (or its host) is gone."""
        host = self._hosts.get(node)
        if host is not None:
            return host
        try:
            host = ray.get_actor(host_name(self.settings.space, node), namespace=RAY_NAMESPACE)
        except ValueError:
            return None
        self._hosts[node] = host
        return host

    # --- sessions -----------------------------------------------------------------------------

    def open(self, session_id: str, *, durable: str | None | bool = False, **options: Any) -> ClusterRuntime:
        """A handle to the session ``session_id``, opened on the least-loaded node if new.

        The same id always reaches the same session, from any process. ``options``
        are `Runtime`'s (``cell_timeout``, ``memory_limit_mb``, ``policy``...) and
        are fixed when the session is first opened. ``durable="cell"``: snapshot
        after every change, so a node loss loses nothing acknowledged (default: the
        client's ``durable``).
        """
        if not isinstance(session_id, str) or not session_id or len(session_id) > 200:
            raise CaveUsageError("session_id must be a non-empty str of at most 200 characters")
        unknown = set(options) - _RUNTIME_OPTIONS
        if unknown:
            raise CaveUsageError(f"unknown session options: {sorted(unknown)}")
        mode = self.durable if durable is False else durable
        if mode not in (None, "cell"):
            raise CaveUsageError('durable must be None or "cell"')
        wanted = {"preload": self.preload, **options, "durable": mode}
        latest = self.directory.latest(session_id)
        if latest is None:
            stored = self.directory.put_options(session_id, wanted)
            try:  # racing openers all try: the claim of epoch 1 picks one, the others follow it
                self.place(session_id, 0, "open")
            except Exception:
                if stored is wanted:  # this call created the records
                    forget(self.directory, self.settings.store, session_id)
                raise
            latest = self.directory.latest(session_id)
        else:
            stored = self.directory.options(session_id) or {}
        if (options or durable is not False) and stored != wanted:
            raise CaveUsageError(f"the session {session_id!r} is open with other options")
        return ClusterRuntime(self, session_id, latest.number if latest else 0)

    def ids(self) -> list[str]:
        """Every session of this deployment (awake or asleep)."""
        return self.directory.sessions()

    def where(self, session_id: str) -> str:
        """The node id holding the session now ("" when it is asleep)."""
        latest = self.directory.latest(session_id)
        if latest is None:
            raise RuntimeClosedError(f"no session {session_id!r}")
        return latest.node

    def wait_moved(self, session_id: str, timeout: float) -> bool:
        """Block until the session leaves the node holding it now (it slept, was evicted,
        closed); True if it did within ``timeout`` seconds (also when it is asleep already)."""
        latest = self.directory.latest(session_id)
        host = self._host(latest.node) if latest is not None and latest.node else None
        if host is None:
            return True
        return bool(ray.get(host.wait_gone.remote(session_id, timeout)))

    def sleep(self, session_id: str) -> None:
        """Put a session to sleep now (snapshot into the store, worker freed)."""
        self._on_holder(session_id, "sleep")

    def close(self, session_id: str) -> None:
        """Close a session: its worker stops and its records and snapshot go. Safe twice."""
        try:
            self._on_holder(session_id, "close")
        except RuntimeClosedError:
            pass

    def _on_holder(self, session_id: str, method: str) -> None:
        for _ in range(_PLACE_TRIES):
            latest = self.directory.latest(session_id)
            if latest is None:
                raise RuntimeClosedError(f"no session {session_id!r}")
            host = self._host(latest.node) if latest.node else None
            if latest.node == "" or host is None:
                if method == "close":  # asleep or its node is gone: only records are left
                    forget(self.directory, self.settings.store, session_id)
                return
            try:
                kind, value = ray.get(getattr(host, method).remote(session_id, latest.number))
            except ray.exceptions.RayActorError:
                self._hosts.pop(latest.node, None)
                continue
            if kind == "error":
                raise value
            if kind == "done":
                return

    def shutdown(self) -> None:
        """Stop every host actor of this deployment (their sessions' workers stop; records stay)."""
        for host in self.hosts().values():
            try:
                ray.get(host.shutdown.remote(), timeout=30)
                ray.kill(host)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass
        self._hosts.clear()

    # --- placement (used by the handles) ----------------------------------------------------------

    def locate(self, session_id: str, attached: int) -> tuple[Any, int]:
        """(host actor, epoch) holding the session, waking it or bringing it back as needed."""
        for _ in range(_PLACE_TRIES):
            latest = self.directory.latest(session_id)
            if latest is None or latest.number < attached:
                raise RuntimeClosedError(f"the session {session_id!r} was closed")
            if latest.node == "":
                self.place(session_id, latest.number, "wake")
                continue
            host = self._host(latest.node)
            if host is None:  # its node is gone, or its host there
                self.place(session_id, latest.number, "failover", avoid=latest.node)
                continue
            return host, latest.number
        raise ClusterFullError(f"could not place the session {session_id!r}")

    def recover(self, session_id: str, epoch: int) -> None:
        """A call to the session's host failed, or found it gone: bring the session back
        elsewhere unless its host still runs (each host checks that before taking it)."""
        latest = self.directory.latest(session_id)
        if latest is None or latest.number != epoch or not latest.node:
            return  # it moved already (someone else recovered it, or it slept)
        self._hosts.pop(latest.node, None)
        self.place(session_id, epoch, "failover")

    def place(self, session_id: str, after: int, cause: str, avoid: str = "") -> None:
        """Put the session's next epoch on the least-loaded node that has room."""
        loads = self.load(memory=False)
        if not loads:
            raise CaveRuntimeError("no cavelite host answered on any node of the Ray cluster "
                                   "(see the Ray logs of the NodeHost actors)")
        for load in loads:
            host = self._hosts.get(load["node"])
            if host is None or load["node"] == avoid:
                continue
            try:
                kind, value = ray.get(host.place.remote(session_id, after, cause))
            except ray.exceptions.RayActorError:
                self._hosts.pop(load["node"], None)
                continue
            if kind == "error":
                raise value
            if kind in ("done", "moved"):
                return
        raise ClusterFullError(f"no node has room for the session {session_id!r} "
                               f"(max_sessions={self.settings.max_sessions}, "
                               f"max_memory_mb={self.settings.max_memory_mb})")

    def __repr__(self) -> str:
        return f"<Sessions space={self.settings.space!r} nodes={len(self._hosts)} pid={os.getpid()}>"


def _head_node() -> str:
    for node in nodes():
        if node["Alive"] and "node:__internal_head__" in node.get("Resources", {}):
            return str(node["NodeID"])
    return ray.get_runtime_context().get_node_id()


def _quiet_init(address: str | None, options: dict[str, Any]) -> None:
    """``ray.init``, with the files its start-up leaves open collected out of sight.

    Ray's start-up (accelerator probes among others) leaves file objects open;
    their ResourceWarnings would land on whatever the caller does next, at the
    garbage collector's whim (a test suite that turns warnings into errors
    fails at random). They are Ray's, not the caller's: collected here, quietly.
    """
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        ray.init(address=address, log_to_driver=False, **options)
        gc.collect()
