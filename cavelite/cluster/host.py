"""`NodeHost`: the Ray actor on each node that owns its zygote and many sessions.

One per node (not per session: a zygote per node is what keeps a session
start in milliseconds), named after its node (`directory.host_name`) and
pinned to it. It holds each session as a plain `Runtime` and runs the
public `Runtime` API on it for the clients' handles; it never forks: the
zygote is started as a fresh ``python -I`` (fork+exec) by `Runtime` itself,
so it holds none of this process's Ray or gRPC threads.

It also decides what the directory says: it claims the epoch of every move
it makes (open, wake, failover, sleep), commits snapshots to the store (after
every state change with ``durable="cell"``, before its reply; on sleep
otherwise), marks a session dirty before its first change since the last
snapshot, and puts idle sessions to sleep (``idle_s``) or the least recently
used ones when the node is at its cap.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import ray

from ..errors import CaveliteError, CaveRuntimeError, RuntimeClosedError
from ..runtime import Runtime
from ..runtime.zygote import Zygote
from .directory import Committed, Directory, Epoch, host_name
from .envelope import decode_snapshot, encode_snapshot, store_key
from .errors import NotDurableError
from .exchange import Exchange, Item, ask
from .operations import CHANGES, LiveSession, apply, changed_state
from .remotes import CallAnswer, stand_in
from .stores import RAY_NAMESPACE


@dataclass(frozen=True)
class HostSettings:
    space: str
    store: Any
    idle_s: float | None = 300.0
    max_sessions: int | None = None
    max_memory_mb: float | None = None


def _pss_mb(pid: int) -> float:
    """Proportional memory of a process and its children (the checkpoint), in MB."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total / 1024


@ray.remote(num_cpus=0, max_concurrency=512, max_restarts=0)  # type: ignore[call-overload]
class NodeHost:
    """See the module docstring. Every public method is called by `ClusterRuntime` or `Sessions`."""

    def __init__(self, settings: HostSettings, preload: tuple[str, ...]):
        self.settings = settings
        self.node = ray.get_runtime_context().get_node_id()
        self.actor = ray.get_runtime_context().get_actor_id() or ""
        self.directory = Directory(settings.space)
        self._sessions: dict[str, LiveSession] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._exchange_ids = itertools.count(1)
        # The zygote starts now, so the first session on this node does not wait for it.
        threading.Thread(target=self._warm, args=(preload,), daemon=True).start()
        if settings.idle_s is not None or settings.max_memory_mb is not None:
            threading.Thread(target=self._sweep, daemon=True, name="cavelite-sweeper").start()

    # --- what this node has ------------------------------------------------------------------

    def load(self, memory: bool = True) -> dict[str, Any]:
        """Awake sessions, their memory (reading it costs: skipped for placement without a
        memory cap) and whether another one fits."""
        with self._lock:
            live = [s for s in self._sessions.values() if not s.gone]
        measure = memory or self.settings.max_memory_mb is not None
        return {"node": self.node, "sessions": len(live),
                "memory_mb": self._memory(live) if measure else 0.0,
                "full": not self._has_room(live)}

    def info(self) -> dict[str, Any]:
        """Processes of this host (for tests and operators): its own, its zygotes', its workers'."""
        with self._lock:
            live = list(self._sessions.values())
        return {"node": self.node, "pid": os.getpid(),
                "zygotes": [z.pid for z in Zygote._instances.values() if z.alive()],
                "workers": {s.sid: s.runtime.pid for s in live if s.runtime is not None},
                "epochs": {s.sid: s.epoch for s in live}}

    def _memory(self, live: list[LiveSession]) -> float:
        return sum(_pss_mb(s.runtime.pid) for s in live if s.runtime is not None)

    def _has_room(self, live: list[LiveSession]) -> bool:
        cap, mem = self.settings.max_sessions, self.settings.max_memory_mb
        if cap is not None and len(live) >= cap:
            return False
        return not (mem is not None and live and self._memory(live) >= mem)

    # --- placing a session here ---------------------------------------------------------------

    def place(self, sid: str, after: int, cause: str) -> Item:
        """Take the session's next epoch (after ``after``) and hold it here.

        ``cause`` is "open", "wake" or "failover" (then the host of epoch ``after``
        is checked to be gone). Returns ("done", epoch) or ("moved", None) when
        another move won; ("full", None) when this node has no room.
        """
        options = self.directory.options(sid)
        if options is None:
            return ("error", RuntimeClosedError(f"the session {sid!r} was closed"))
        if cause == "failover":
            previous = self.directory.epoch(sid, after)
            if previous is None or self._holder_alive(sid, previous):
                return ("moved", None)
        if not self._make_room():
            return ("full", None)
        committed = self.directory.committed(sid)
        lost = cause == "failover" and self.directory.is_dirty(sid)
        runtime_options = dict(options)
        durable = runtime_options.pop("durable", None) == "cell"
        live = LiveSession(sid, after + 1, runtime_options, durable, committed=committed)
        with self._lock:
            old = self._sessions.get(sid)
            if old is not None and old.epoch > after:
                return ("moved", None)
            self._sessions[sid] = live
        epoch = Epoch(after + 1, self.node, cause, lost, committed.seq if committed else 0,
                      self.actor)
        if not self.directory.claim(sid, epoch):
            self._drop(live)
            return ("moved", None)
        try:
            self._start(live)
        except Exception as exc:
            if not isinstance(exc, CaveliteError):  # the store's own error, say
                exc = CaveRuntimeError(f"session {sid!r} could not start on node {self.node}: "
                                       f"{type(exc).__name__}: {exc}")
            live.failed = exc
            self._drop(live)
            # Nobody holds it now: the next call wakes it again, from the same snapshot.
            self.directory.claim(sid, Epoch(after + 2, "", "sleep", False, epoch.restored_seq))
            return ("error", exc)
        finally:
            live.ready.set()
        if lost:
            self.directory.clear_dirty(sid)
        return ("done", live.epoch)

    def _holder_alive(self, sid: str, epoch: Epoch) -> bool:
        """Whether the host that took ``epoch`` still runs (then the session is not lost)."""
        if epoch.host == self.actor:  # this host: it holds the session unless it let it go
            return sid in self._sessions
        if not epoch.node or not any(n["NodeID"] == epoch.node and n["Alive"] for n in ray.nodes()):
            return False
        try:
            holder = ray.get_actor(host_name(self.settings.space, epoch.node), namespace=RAY_NAMESPACE)
            return bool(ray.get(holder.identity.remote(), timeout=30) == epoch.host)
        except (ValueError, ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return False

    def identity(self) -> str:
        """This host's Ray actor id: a host restarted on the same node has another."""
        return self.actor

    def _start(self, live: LiveSession) -> None:
        if live.committed is None:
            live.runtime = Runtime(**live.options)
            return
        data = self.settings.store.get(live.committed.key)
        live.seq, live.remotes, snapshot = decode_snapshot(data)
        live.had_remotes = bool(live.remotes)
        stand_ins = {name: stand_in(desc, ask) for name, (desc, _text) in live.remotes.items()}
        live.runtime = Runtime.restore(snapshot, remotes=stand_ins, **live.options)

    def _make_room(self) -> bool:
        """Sleep the least recently used idle sessions until this node is under its caps."""
        while True:
            with self._lock:
                live = [s for s in self._sessions.values() if not s.gone]
            if self._has_room(live):
                return True
            for victim in sorted(live, key=lambda s: s.last_used):
                if self._sleep(victim, "evict", wait=False):
                    break
            else:
                return False

    def _drop(self, live: LiveSession) -> None:
        live.gone = True
        with self._changed:
            if self._sessions.get(live.sid) is live:
                del self._sessions[live.sid]
            self._changed.notify_all()
        if live.runtime is not None:
            live.runtime.close()

    # --- requests -------------------------------------------------------------------------------

    def request(self, sid: str, epoch: int, op: str, args: tuple[Any, ...],
                within: int = 0) -> Item:
        """Run one `Runtime` operation; ``within``: the remote call it is nested in."""
        live = self._sessions.get(sid)
        if live is None or live.epoch != epoch:
            return self._missing(sid, epoch)
        live.ready.wait()
        if live.gone:
            return ("moved", None)
        if not live.had_remotes and not within:
            # Nothing of a client was ever in this session, so no call can travel back: run here,
            # without the hand-over to a thread that could wait for one.
            try:
                return ("done", self._run(live, op, args, nested=False))
            except _Moved:
                return ("moved", None)
            except Exception as exc:
                return ("error", exc)
        exchange = Exchange(self._answer_timeout(live))
        context = None
        if within:
            outer_key, outer_call = _decode_call_id(within)
            outer = live.exchanges.get(outer_key)
            context = outer.context_of(outer_call) if outer is not None else None
        key = next(self._exchange_ids)
        live.exchanges[key] = exchange
        item = exchange.start(lambda: self._run(live, op, args, nested=context is not None),
                              context)
        return self._outgoing(live, key, item)

    def _missing(self, sid: str, epoch: int) -> Item:
        """Not held here: moved on, or held by a host that died on this node ("orphan")."""
        latest = self.directory.latest(sid)
        if latest is not None and latest.number == epoch and latest.node == self.node \
                and latest.host != self.actor:
            return ("orphan", None)
        return ("moved", None)

    def resume(self, sid: str, epoch: int, call_id: int, answer: CallAnswer) -> Item:
        """The client's answer to a remote call; returns what the operation does next."""
        live = self._sessions.get(sid)
        key, inner = _decode_call_id(call_id)
        exchange = live.exchanges.get(key) if live is not None else None
        if exchange is None:
            return ("error", RuntimeClosedError("the request this answer belongs to is over"))
        return self._outgoing(live, key, exchange.resume(inner, answer))  # type: ignore[arg-type]

    @staticmethod
    def _outgoing(live: LiveSession, key: int, item: Item) -> Item:
        if item[0] == "call":
            _kind, call_id, request = item  # type: ignore[misc]
            return ("call", _encode_call_id(key, call_id), request)
        live.exchanges.pop(key, None)
        if item[0] == "error" and isinstance(item[1], _Moved):
            return ("moved", None)
        return item

    def _answer_timeout(self, live: LiveSession) -> float | None:
        limits = [live.options.get("cell_timeout", 30.0), live.options.get("request_timeout", 60.0)]
        return None if None in limits else max(limits) + 5.0

    def _run(self, live: LiveSession, op: str, args: tuple[Any, ...], nested: bool) -> Any:
        if nested:  # the outer operation holds the lock and is waiting for this one
            return apply(live, op, args, self.node)
        with live.lock:
            if live.gone:
                raise _Moved()
            live.last_used = time.monotonic()
            try:
                if op in CHANGES and not live.durable and not live.dirty_marked:
                    self.directory.mark_dirty(live.sid)  # before the change: a loss is then known
                    live.dirty_marked = True
                result = apply(live, op, args, self.node)
                if op in CHANGES and changed_state(live, op, result):
                    live.seq += 1
                    if live.durable:
                        try:
                            self._commit(live)
                        except CaveliteError as exc:
                            raise NotDurableError(
                                f"the {op} succeeded, but the session cannot be snapshotted, so a "
                                f"node loss would lose it: {exc}; delete or replace the variable "
                                "that cannot be saved", result=result) from None
                return result
            finally:
                live.last_used = time.monotonic()

    # --- snapshots, sleep, close --------------------------------------------------------------------

    def _commit(self, live: LiveSession) -> None:
        """Store a snapshot of the session and point the directory at it (the lock is held)."""
        assert live.runtime is not None
        data = encode_snapshot(live.seq, live.remotes, live.runtime.snapshot())
        key = store_key(live.sid, live.epoch, live.seq)
        self.settings.store.put(key, data)
        previous, live.committed = live.committed, Committed(key, live.seq)
        self.directory.commit(live.sid, live.committed)
        if live.dirty_marked:
            self.directory.clear_dirty(live.sid)
            live.dirty_marked = False
        if previous is not None and previous.key != key:
            delete = getattr(self.settings.store, "delete", None)
            if callable(delete):
                delete(previous.key)

    def _sleep(self, live: LiveSession, cause: str, *, wait: bool) -> bool:
        """Snapshot the session, record it asleep and free its worker. False if it cannot now."""
        if not live.lock.acquire(blocking=wait):
            return False  # busy: it is not idle after all
        try:
            if live.gone or live.runtime is None:
                return False
            if live.committed is None or live.committed.seq != live.seq:
                if live.unsleepable_at == live.seq:
                    return False
                try:
                    self._commit(live)
                except CaveliteError:
                    live.unsleepable_at = live.seq  # something in it cannot be saved: stay awake
                    return False
            self.directory.claim(live.sid, Epoch(live.epoch + 1, "", cause, False, live.seq))
            self._drop(live)
            return True
        finally:
            live.lock.release()

    def sleep(self, sid: str, epoch: int) -> Item:
        live = self._sessions.get(sid)
        if live is None or live.epoch != epoch:
            return ("moved", None)
        live.ready.wait()
        if self._sleep(live, "sleep", wait=True):
            return ("done", None)
        if live.gone:
            return ("moved", None)
        return ("error", NotDurableError(f"the session {sid!r} cannot be snapshotted, so it "
                                         "stays awake"))

    def close(self, sid: str, epoch: int) -> Item:
        live = self._sessions.get(sid)
        if live is None or live.epoch != epoch:
            return ("moved", None)
        live.ready.wait()
        with live.lock:
            self._drop(live)
        forget(self.directory, self.settings.store, sid)
        return ("done", None)

    def wait_gone(self, sid: str, timeout: float) -> bool:
        """Block until this host no longer holds ``sid`` (asleep, moved, closed)."""
        with self._changed:
            return self._changed.wait_for(lambda: sid not in self._sessions, timeout)

    def shutdown(self) -> None:
        self._stop.set()
        for live in list(self._sessions.values()):
            self._drop(live)

    # --- background ---------------------------------------------------------------------------------

    def _warm(self, preload: tuple[str, ...]) -> None:
        try:
            Zygote.shared(preload)
        except CaveliteError:
            pass  # the first session will say why

    def _sweep(self) -> None:
        """Sleep sessions idle for ``idle_s``, and the least recently used ones while the
        node's sessions use more than ``max_memory_mb`` (they grow after placement)."""
        idle_s, cap = self.settings.idle_s, self.settings.max_memory_mb
        interval = min(max(idle_s / 4, 0.05), 1.0) if idle_s is not None else 1.0
        while not self._stop.wait(interval):
            now = time.monotonic()
            live = [s for s in list(self._sessions.values()) if s.ready.is_set() and not s.gone]
            if idle_s is not None:
                for session in live:
                    if now - session.last_used >= idle_s:
                        self._sleep(session, "sleep", wait=False)
            if cap is not None:
                live = sorted((s for s in live if not s.gone), key=lambda s: s.last_used)
                while len(live) > 1 and self._memory(live) > cap:
                    self._sleep(live.pop(0), "evict", wait=False)  # the busiest stays awake


class _Moved(Exception):
    pass


def _encode_call_id(key: int, inner: int) -> int:
    return (key << 20) | inner


def _decode_call_id(call_id: int) -> tuple[int, int]:
    return call_id >> 20, call_id & ((1 << 20) - 1)




def forget(directory: Directory, store: Any, sid: str) -> None:
    """Remove a session's records and its last snapshot."""
    committed = directory.committed(sid)
    directory.forget(sid)
    delete = getattr(store, "delete", None)
    if committed is not None and callable(delete):
        delete(committed.key)

