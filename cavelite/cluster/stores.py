"""Where sleeping and checkpointed sessions are kept: Ray's object store, a directory, or yours.

A store is any object with ``put(key, data)`` and ``get(key)`` (bytes in,
bytes out; ``get`` raises `KeyError` for a missing key) and, optionally,
``delete(key)``. It is pickled into every host actor, so it must survive
that (a path, a bucket name and credentials read on the node, ...).

The default, `ObjectStore`, keeps snapshots in Ray's object store, owned by
one actor on the head node (`SnapshotKeeper`): an object's fate is tied to
its owner and its primary copy, so both must sit where a session's node is
not. The head node is the one a Ray cluster cannot lose anyway (its GCS);
to survive that too, give a `DirectoryStore` on shared storage or your own.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Protocol, runtime_checkable

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..errors import CaveUsageError

KEEPER_NAME = "cavelite-snapshots"
RAY_NAMESPACE = "cavelite"  # where every named actor of cavelite lives


@runtime_checkable
class SnapshotStore(Protocol):
    """What a store must offer (``delete`` is optional)."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...


class DirectoryStore:
    """Snapshots as files in ``path`` (shared storage, for sessions to move between machines)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        os.makedirs(self.path, exist_ok=True)

    def _file(self, key: str) -> str:
        if not key or "/" in key or key.startswith("."):
            raise CaveUsageError(f"bad snapshot key {key!r}")
        return os.path.join(self.path, key)

    def put(self, key: str, data: bytes) -> None:
        # Written whole, then renamed: a reader never sees half a snapshot.
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._file(key))
        except BaseException:
            with_suppressed_remove(tmp)
            raise

    def get(self, key: str) -> bytes:
        try:
            with open(self._file(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise KeyError(key) from None

    def delete(self, key: str) -> None:
        with_suppressed_remove(self._file(key))

    def __repr__(self) -> str:
        return f"DirectoryStore({self.path!r})"


def with_suppressed_remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


@ray.remote(num_cpus=0, max_concurrency=16)  # type: ignore[call-overload]
class SnapshotKeeper:
    """Owns the snapshots in Ray's object store (one per deployment, on the head node)."""

    def __init__(self) -> None:
        self._refs: dict[str, ray.ObjectRef] = {}

    def put(self, key: str, data: bytes) -> None:
        # ray.put here: this actor owns the object and its primary copy is on this node.
        self._refs[key] = ray.put(data)

    def get(self, key: str) -> list[ray.ObjectRef]:
        ref = self._refs.get(key)
        if ref is None:
            raise KeyError(key)
        return [ref]  # in a list: the caller fetches the bytes straight from the object store

    def delete(self, key: str) -> None:
        self._refs.pop(key, None)

    def count(self) -> int:
        return len(self._refs)


class ObjectStore:
    """Snapshots in Ray's object store, kept alive by the `SnapshotKeeper` of ``space``."""

    def __init__(self, space: str):
        self.space = space
        self._keeper: Any = None

    def _actor(self) -> Any:
        if self._keeper is None:
            self._keeper = ray.get_actor(f"{KEEPER_NAME}-{self.space}", namespace=RAY_NAMESPACE)
        return self._keeper

    def put(self, key: str, data: bytes) -> None:
        ray.get(self._actor().put.remote(key, data))

    def get(self, key: str) -> bytes:
        try:
            ref = ray.get(self._actor().get.remote(key))[0]
        except KeyError:
            raise
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, KeyError):
                raise KeyError(key) from None
            raise
        data: bytes = ray.get(ref)
        return data

    def delete(self, key: str) -> None:
        self._actor().delete.remote(key)  # fire and forget: a stale snapshot is only space

    def __getstate__(self) -> dict[str, Any]:
        return {"space": self.space, "_keeper": None}  # each process looks the actor up

    def __repr__(self) -> str:
        return f"ObjectStore(space={self.space!r})"


def start_keeper(space: str, head_node: str) -> None:
    """Create the deployment's keeper on the head node, unless it runs already."""
    SnapshotKeeper.options(  # type: ignore[attr-defined]
        name=f"{KEEPER_NAME}-{space}", namespace=RAY_NAMESPACE, lifetime="detached",
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(head_node, soft=False),
    ).remote()


def check_store(store: Any) -> Any:
    if isinstance(store, (str, os.PathLike)):
        return DirectoryStore(store)
    if not (callable(getattr(store, "put", None)) and callable(getattr(store, "get", None))):
        raise CaveUsageError("store must be a directory path or an object with put(key, data) "
                             f"and get(key); got {type(store).__name__}")
    return store
