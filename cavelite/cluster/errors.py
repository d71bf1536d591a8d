"""Errors of sessions on a Ray cluster (all `CaveliteError` subclasses).

    CaveRuntimeError
    ├── WorkerDiedError
    │   └── SessionLostError     the node holding a session died with changes no snapshot had
    ├── ClusterFullError         every node is at its session or memory cap
    └── NotDurableError          (durable="cell") the change happened, its snapshot could not
"""

from __future__ import annotations

from typing import Any

from ..errors import CaveRuntimeError, WorkerDiedError


class SessionLostError(WorkerDiedError):
    """The node that held the session was lost with changes made since its last snapshot.

    The session is back, on another node, as of that snapshot (``restored_seq``
    counts the changes it holds; 0: it started empty); what was done after it is
    gone. The error is raised once per handle; the next call works on the session
    as it now is. ``variables_lost`` is always True.
    """

    def __init__(self, message: str, *, restored_seq: int = 0, node: str = ""):
        super().__init__(message, variables_lost=True)
        self.restored_seq = restored_seq
        self.node = node


class ClusterFullError(CaveRuntimeError):
    """No node has room for one more awake session (``max_sessions`` / ``max_memory_mb``)."""


class NotDurableError(CaveRuntimeError):
    """With ``durable="cell"``: the operation succeeded but its snapshot could not be taken.

    The session holds the change (``result`` is what the operation returned),
    but a node loss now would lose it: something in the namespace cannot be
    saved (a lock, a generator...). Delete or replace it.
    """

    def __init__(self, message: str, *, result: Any = None):
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> Any:  # keep ``result`` across Ray
        return (_rebuild, (type(self), str(self), self.result))


def _rebuild(cls: type[NotDurableError], message: str, result: Any) -> NotDurableError:
    return cls(message, result=result)
