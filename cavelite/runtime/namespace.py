"""The worker's namespace bookkeeping: what is a user variable, what changed, bounded text.

Everything here runs in the worker, on values cells made. Cell-made code
(``__repr__``, ``__len__``, ``__del__``) may raise, lie or spin: summaries
and reprs run under a short time limit and never fail, and every string
that leaves is plain and cut to a bound (see `wire.plain_text`).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
import types
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..security.guards import Guard
from ..security.modules import ModuleView
from ..security.transformer import is_reserved
from .describe import bounded_repr, summarize, type_name
from .results import VariableInfo
from .wire import plain_text

T = TypeVar("T")

OUTPUTS_NAME = "cell_outputs"
_HIDDEN = frozenset([OUTPUTS_NAME])
# A summary or repr that takes longer than this is replaced by a note (a spinning
# __repr__ must not stall every later listing; the host's deadline is the backstop).
DESCRIBE_TIME_S = 0.5
_TICK_S = 0.05
_IMMUTABLE = (int, float, str, bytes, bool, tuple, type(None), frozenset)


class _TookTooLong(BaseException):
    """A BaseException, so a cell's ``except Exception`` inside a slow ``__repr__`` lets it out."""


# One interval timer per batch of descriptions (a listing, a cell's changes), not per
# value: arming a timer costs syscalls; checking a deadline in the handler costs nothing.
_deadline = [math.inf]
_depth = [0]


def _alarm(signum: int, frame: Any) -> None:
    if time.monotonic() > _deadline[0]:
        raise _TookTooLong()


def install_time_limits() -> None:
    """Called once by the worker: SIGALRM enforces the per-value limit of `bounded`."""
    signal.signal(signal.SIGALRM, _alarm)


@contextlib.contextmanager
def describing() -> Iterator[None]:
    """A batch of `bounded` calls (re-entrant): the timer ticks only inside it."""
    _depth[0] += 1
    if _depth[0] == 1:
        signal.setitimer(signal.ITIMER_REAL, _TICK_S, _TICK_S)
    try:
        yield
    finally:
        _depth[0] -= 1
        if _depth[0] == 0:
            signal.setitimer(signal.ITIMER_REAL, 0)


def bounded(fn: Callable[..., T], *args: Any, fallback: T, seconds: float = DESCRIBE_TIME_S) -> T:
    """``fn(*args)``, or ``fallback`` if it takes longer than ``seconds`` (in a batch).

    Re-ticks every `_TICK_S` after the limit, so a cell that swallows the first
    interruption meets the next; the host's deadline covers what never yields.
    """
    _deadline[0] = time.monotonic() + seconds
    try:
        return fn(*args)
    except _TookTooLong:
        return fallback
    finally:
        _deadline[0] = math.inf


def safe_summary(value: Any) -> str:
    return bounded(summarize, value, fallback="<summary unavailable: it took too long>")


def safe_repr(value: Any, limit: int) -> str:
    return bounded(bounded_repr, value, limit, fallback="<repr unavailable: it took too long>")


def safe_type_name(value: Any) -> str:
    try:
        return plain_text(type_name(value), 500)
    except Exception:
        return "<unknown type>"


class Namespace:
    """The persistent dict cells run in, and what the worker knows about its entries."""

    def __init__(self, guard: Guard):
        self.guard = guard
        # The namespace is the dict of a module that *is* ``__main__`` in this process:
        # libraries that look up a cell class's module (typing, dataclasses, pickle) find
        # the cell's own globals and built-ins, never the interpreter's real ``__main__``.
        self.module = types.ModuleType("__main__")
        sys.modules["__main__"] = self.module
        self.ns: dict[str, Any] = self.module.__dict__
        self.types: dict[str, type] = {}  # injected classes, by the name cells know them
        self.remotes: set[str] = set()  # names bound to host objects
        self.descriptions: dict[str, str] = {}
        self._summaries: dict[str, tuple[int, str]] = {}
        self.ns.update(guard.namespace_globals())
        self.ns[OUTPUTS_NAME] = []

    def user_names(self) -> list[str]:
        return [
            name for name, value in self.ns.items()
            if not is_reserved(name) and name not in _HIDDEN and name not in self.remotes
            and type(value) is not ModuleView
        ]

    def has(self, name: str) -> bool:
        return name in self.ns and not is_reserved(name)

    def bind(self, name: str, value: Any, description: str | None) -> None:
        self.ns[name] = value
        if description:
            self.descriptions[name] = description
        self._summaries.pop(name, None)

    def forget(self, name: str) -> None:
        with describing():
            bounded(self.ns.__delitem__, name, fallback=None)  # a cell-made __del__ runs here
        self.remotes.discard(name)
        self.types.pop(name, None)
        self.descriptions.pop(name, None)
        self._summaries.pop(name, None)

    def info(self, name: str, summary: str | None = None) -> VariableInfo:
        value = self.ns[name]
        if summary is None:
            summary = safe_summary(value)
        self._summaries[name] = (id(value), summary)
        return VariableInfo(name, safe_type_name(value), summary, self.descriptions.get(name))

    def snapshot_ids(self) -> dict[str, int]:
        return {name: id(self.ns[name]) for name in self.user_names()}

    def diff(self, before: dict[str, int]) -> tuple[list[VariableInfo], list[str]]:
        """What a cell created or changed (by identity, or by summary for mutable values)."""
        changed = []
        now = self.user_names()
        for name in now:
            value = self.ns[name]
            old = before.get(name)
            if old is None or old != id(value):
                changed.append(self.info(name))
            elif not isinstance(value, _IMMUTABLE):
                cached = self._summaries.get(name)
                summary = safe_summary(value)
                if cached is None or cached[1] != summary:
                    changed.append(self.info(name, summary))
        names = set(now)
        deleted = [name for name in before if name not in names]
        for name in deleted:
            self._summaries.pop(name, None)
        return changed, deleted

    def keep_output(self, text: str) -> int:
        """Store a cut cell output in ``cell_outputs``; returns its index."""
        outputs = self.ns.get(OUTPUTS_NAME)
        if not isinstance(outputs, list):
            outputs = self.ns[OUTPUTS_NAME] = []
        outputs.append(text)
        return len(outputs) - 1


def bound_output(text: str, budget: int, index: int | None) -> tuple[str, bool]:
    """Cut ``text`` to ``budget`` characters (head and tail), saying where the rest is."""
    if len(text) <= budget:
        return text, False
    head = text[: budget * 2 // 3]
    tail = text[-(budget // 3):]
    cut = len(text) - len(head) - len(tail)
    where = (f"the full text is in {OUTPUTS_NAME}[{index}]; slice it, e.g. "
             f"print({OUTPUTS_NAME}[{index}][{len(head)}:{len(head) + 2000}])"
             if index is not None else "the cell was rolled back, so it was not kept")
    return f"{head}\n... [{cut} characters cut; {where}] ...\n{tail}", True
