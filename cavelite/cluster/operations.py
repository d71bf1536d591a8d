"""What a host holds for a session (`LiveSession`), and the `Runtime` operations it runs on it.

Clients name an operation and its arguments; `apply` maps each to the
session's `Runtime`, and keeps the host's own account in step: the remote
objects a session holds (as `Descriptor`s, to rebuild stand-ins after a wake)
and whether anything of a client was ever in it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import CaveUsageError
from ..runtime import Runtime, Snapshot
from .directory import Committed
from .exchange import Exchange, ask
from .remotes import Descriptor, stand_in

# Operations that may change the namespace (a dirty mark before, a commit after).
CHANGES = {"execute", "inject", "inject_type", "inject_remote", "delete", "reset", "restore"}


@dataclass
class LiveSession:
    """A session this host holds."""

    sid: str
    epoch: int
    options: dict[str, Any]
    durable: bool
    runtime: Runtime | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one operation at a time
    gone: bool = False
    failed: Exception | None = None
    last_used: float = field(default_factory=time.monotonic)
    seq: int = 0  # state changes so far (counting those in the snapshot it came from)
    committed: Committed | None = None
    dirty_marked: bool = False
    unsleepable_at: int = -1  # the seq at which a snapshot failed (no retry until it changes)
    remotes: dict[str, tuple[Descriptor, str | None]] = field(default_factory=dict)
    exchanges: dict[int, Exchange] = field(default_factory=dict)
    had_remotes: bool = False  # a cell may still hold a stand-in after its name was deleted


def changed_state(live: LiveSession, op: str, result: Any) -> bool:
    """Whether an operation that may change the namespace did (a rolled-back cell did not)."""
    if op != "execute":
        return True
    return bool(result.ok) or not live.options.get("atomic", True)


def apply(live: LiveSession, op: str, args: tuple[Any, ...], node: str) -> Any:
    """Run one `Runtime` operation on the session; what the host keeps of it follows."""
    rt = live.runtime
    assert rt is not None
    if op == "execute":
        code, timeout = args
        return rt.execute(code, timeout=timeout)
    if op == "inject":
        name, value, description = args
        rt.inject(name, value, description=description, remote=False)
        live.remotes.pop(name, None)
        return None
    if op == "inject_type":
        cls, name, description = args
        rt.inject_type(cls, name=name, description=description)
        live.remotes.pop(name or cls.__name__, None)
        return None
    if op == "inject_remote":
        name, desc, description = args
        rt.inject(name, stand_in(desc, ask), description=description, remote=True)
        live.remotes[name] = (desc, description)
        live.had_remotes = True
        return None
    if op == "delete":
        (name,) = args
        rt.delete(name)
        live.remotes.pop(name, None)
        return None
    if op == "restore":
        (data, descriptors) = args
        snapshot = Snapshot.from_bytes(data)
        stand_ins = {n: stand_in(d, ask) for n, (d, _t) in descriptors.items()}
        fresh = Runtime.restore(snapshot, remotes=stand_ins, **live.options)
        live.runtime, old = fresh, rt
        live.remotes = dict(descriptors)
        live.had_remotes = live.had_remotes or bool(descriptors)
        old.close()
        return None
    if op in ("retrieve",):
        name, trusted = args
        return rt.retrieve(name, trusted=trusted)
    if op in ("variables", "injected", "reset", "snapshot"):
        return getattr(rt, op)()
    if op == "info":
        return {"confinement": rt.confinement, "preload": rt.preload, "atomic": rt.atomic,
                "cell_timeout": rt.cell_timeout, "request_timeout": rt.request_timeout,
                "max_output_chars": rt.max_output_chars, "policy": rt.policy,
                "node": node, "pid": rt.pid, "durable": live.durable}
    raise CaveUsageError(f"unknown operation {op!r}")
