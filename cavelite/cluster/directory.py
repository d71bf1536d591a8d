"""Where each session lives: records in Ray's GCS key-value store, moved by epochs.

A session's history is a chain of *epochs*. Epoch ``e`` is the key
``e/<sid>/<e>``, written once with insert-if-absent, so exactly one process
wins each move (open, sleep, wake, failover) however many race for it; its
value says where the session is from then on (a node, or asleep) and why it
moved. A ``head`` key is only a hint to find the latest epoch quickly: the
truth is the last epoch key present. Beside the chain:

    o/<sid>   the options the session was opened with (written once)
    p/<sid>   its latest committed snapshot: store key and sequence number
    d/<sid>   "dirty": the state changed since that snapshot (default mode)

A host is a Ray named actor, ``cavelite-host-<space>-<node id>``, in the same Ray
namespace: the name is the route, nothing here keeps a list of hosts.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass
from typing import Any

from ray.experimental import internal_kv as _kv

KV_NAMESPACE = "cavelite"


def host_name(space: str, node_id: str) -> str:
    return f"cavelite-host-{space}-{node_id}"


@dataclass(frozen=True)
class Epoch:
    """One move of a session: where it went (``node`` empty: asleep) and why."""

    number: int
    node: str
    cause: str  # "open", "sleep", "wake", "failover", "evict", "close"
    lost: bool = False  # failover only: the state had changed since the last snapshot
    restored_seq: int = 0  # the snapshot sequence number it came back from (0: empty)
    host: str = ""  # the Ray actor id of the host holding it (a restarted host is another)


@dataclass(frozen=True)
class Committed:
    """The latest snapshot of a session that is safe in the store."""

    key: str
    seq: int


class Directory:
    """The GCS key-value records of one cavelite deployment (``space`` keeps deployments apart)."""

    def __init__(self, space: str):
        self.space = space

    def _key(self, kind: str, sid: str, *rest: object) -> bytes:
        return "/".join([self.space, kind, sid, *map(str, rest)]).encode()

    def _get(self, key: bytes) -> bytes | None:
        value: bytes | None = _kv._internal_kv_get(key, namespace=KV_NAMESPACE)
        return value

    def _put(self, key: bytes, value: bytes, overwrite: bool = True) -> bool:
        """Returns True when the key was written (with ``overwrite=False``: it was absent)."""
        existed = _kv._internal_kv_put(key, value, overwrite, namespace=KV_NAMESPACE)
        return overwrite or not existed

    # --- epochs ------------------------------------------------------------------------------

    def latest(self, sid: str) -> Epoch | None:
        """The session's current epoch, or None if it was never opened (or was closed)."""
        head = self._get(self._key("head", sid))
        number = int(head) if head else 0
        found = self._epoch(sid, number) if number else None
        while True:  # the head is a hint: later epochs may exist
            following = self._epoch(sid, number + 1)
            if following is None:
                return found
            number, found = number + 1, following

    def _epoch(self, sid: str, number: int) -> Epoch | None:
        raw = self._get(self._key("e", sid, number))
        return Epoch(**json.loads(raw)) if raw else None

    def epoch(self, sid: str, number: int) -> Epoch | None:
        return self._epoch(sid, number)

    def history(self, sid: str, after: int, upto: int) -> list[Epoch]:
        """Epochs ``after+1 .. upto`` (what a handle attached at ``after`` has missed)."""
        found = [self._epoch(sid, n) for n in range(after + 1, upto + 1)]
        return [e for e in found if e is not None]

    def claim(self, sid: str, epoch: Epoch) -> bool:
        """Write ``epoch`` if nobody has: True when this caller won the move."""
        won = self._put(self._key("e", sid, epoch.number), json.dumps(asdict(epoch)).encode(),
                        overwrite=False)
        if won:
            self._put(self._key("head", sid), str(epoch.number).encode())
        return won

    # --- options, snapshots, dirtiness -------------------------------------------------------

    def put_options(self, sid: str, options: dict[str, Any]) -> dict[str, Any]:
        """Record the session's options once; returns the ones in force (maybe another's)."""
        blob = pickle.dumps(options)
        if self._put(self._key("o", sid), blob, overwrite=False):
            return options
        return self.options(sid) or options

    def options(self, sid: str) -> dict[str, Any] | None:
        # Written by cavelite hosts and clients of this Ray cluster, which can run code
        # on it anyway: not a trust boundary (the cells' bytes never come here).
        raw = self._get(self._key("o", sid))
        return pickle.loads(raw) if raw else None  # noqa: S301

    def commit(self, sid: str, committed: Committed) -> None:
        self._put(self._key("p", sid), json.dumps(asdict(committed)).encode())

    def committed(self, sid: str) -> Committed | None:
        raw = self._get(self._key("p", sid))
        return Committed(**json.loads(raw)) if raw else None

    def mark_dirty(self, sid: str) -> None:
        self._put(self._key("d", sid), b"1")

    def is_dirty(self, sid: str) -> bool:
        return bool(self._get(self._key("d", sid)))

    def clear_dirty(self, sid: str) -> None:
        _kv._internal_kv_del(self._key("d", sid), namespace=KV_NAMESPACE)

    def forget(self, sid: str) -> None:
        """Remove every record of a closed session."""
        for kind in ("e", "head", "o", "p", "d"):
            _kv._internal_kv_del(self._key(kind, sid) + (b"/" if kind == "e" else b""),
                                 del_by_prefix=kind == "e", namespace=KV_NAMESPACE)

    def sessions(self) -> list[str]:
        """Every open session id (from the head keys)."""
        prefix = f"{self.space}/head/".encode()
        keys: list[bytes] = _kv._internal_kv_list(prefix, namespace=KV_NAMESPACE)
        return sorted(k[len(prefix):].decode() for k in keys)
