"""Host side of remote objects: the table of host objects that cells reach by reference.

`RemoteRegistry` keeps the real objects by reference id and runs the
operations a worker forwards (``call``, ``getattr``). Results that are plain
data (or numpy/pandas, or injected types) are copied back; anything else
comes back as another remote reference (see `codec`), so
``home.room("kitchen").lights.on()`` works.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import inspect
import uuid
from typing import Any

from ..errors import CaveRuntimeError
from .proxies import MethodMarker

_PLAIN = (
    type(None), bool, int, float, complex, str, bytes, bytearray, decimal.Decimal,
    fractions.Fraction, datetime.date, datetime.datetime, datetime.time, datetime.timedelta,
    datetime.timezone, uuid.UUID, range, slice,
)
_CONTAINERS = (list, tuple, dict, set, frozenset)


class TooManyReferencesError(CaveRuntimeError):
    """A session holds more live remote references than `RemoteRegistry.MAX_REFS`."""


def describe_callable(obj: Any) -> tuple[str, str, str, bool]:
    """(name, doc, signature, is_async) of a host callable, for the proxy and the model.

    Annotations are shown as written, never evaluated (``eval_str`` would run
    text in the host, and a callable a tool returns may carry text a cell chose).
    """
    name = getattr(obj, "__name__", type(obj).__name__)
    doc = inspect.getdoc(obj) or ""
    try:
        signature = str(_unquoted(inspect.signature(obj)))
    except (TypeError, ValueError):
        signature = "(...)"
    return str(name), doc, signature, inspect.iscoroutinefunction(obj)


class _Annotation(str):
    """A string annotation that prints without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _unquoted(sig: inspect.Signature) -> inspect.Signature:
    params = [
        p.replace(annotation=_Annotation(p.annotation)) if isinstance(p.annotation, str) else p
        for p in sig.parameters.values()
    ]
    ret = sig.return_annotation
    return sig.replace(parameters=params,
                       return_annotation=_Annotation(ret) if isinstance(ret, str) else ret)


def public_names(obj: Any) -> tuple[str, ...]:
    return tuple(n for n in dir(obj) if not n.startswith("_"))


def is_copyable(obj: Any, types: tuple[type, ...]) -> bool:
    """Whether ``obj`` is sent by value (else it becomes a remote reference)."""
    t = type(obj)
    if t in _PLAIN or t in _CONTAINERS or isinstance(obj, MethodMarker):
        return True
    module = getattr(t, "__module__", "") or ""
    if module.startswith(("numpy", "pandas", "pyarrow")):  # pandas string columns hold pyarrow arrays
        return True
    return bool(types) and isinstance(obj, types)


class RemoteRegistry:
    """The host's table of objects that cells reach by reference."""

    MAX_REFS = 100_000

    def __init__(self) -> None:
        self.objects: dict[int, Any] = {}
        self._ids: dict[int, int] = {}
        self._next = 1

    def release(self, refs: tuple[int, ...] | list[int], pinned: set[int]) -> None:
        """Forget objects no cell holds a proxy to any more (never the pinned, injected ones)."""
        for ref in refs:
            if ref in pinned:
                continue
            obj = self.objects.pop(ref, None)
            if obj is not None and self._ids.get(id(obj)) == ref:
                del self._ids[id(obj)]

    def register(self, obj: Any) -> int:
        key = id(obj)
        ref = self._ids.get(key)
        if ref is not None and self.objects.get(ref) is obj:
            return ref
        if len(self.objects) >= self.MAX_REFS:
            raise TooManyReferencesError("too many remote references held for this runtime")
        ref = self._next
        self._next += 1
        self.objects[ref] = obj
        self._ids[key] = ref
        return ref

    def resolve(self, op: str, ref: int, name: str | None, args: tuple[Any, ...],
                kwargs: dict[str, Any], loop: Any = None) -> Any:
        """Run a forwarded operation; ``ref`` and ``name`` come from the worker: both checked."""
        if ref not in self.objects:
            raise LookupError("the cell used a remote reference that does not exist")
        target = self.objects[ref]
        if op == "getattr":
            if name is None or name.startswith("_"):
                raise AttributeError(f"'{name}' is private")
            value = getattr(target, name)
            if callable(value) and not isinstance(value, type):
                n, doc, sig, is_async = describe_callable(value)
                return MethodMarker(n, doc, sig, is_async)
            return value
        if name is not None:
            if name.startswith("_"):
                raise AttributeError(f"'{name}' is private")
            target = getattr(target, name)
        result = target(*args, **kwargs)
        if inspect.isawaitable(result):
            result = _run_awaitable(result, loop)
        return result


def _run_awaitable(awaitable: Any, loop: Any) -> Any:
    """Await a remote coroutine: on the caller's loop when called via an ``a*`` method."""
    import asyncio

    async def wait() -> Any:
        return await awaitable

    if loop is not None and loop.is_running():
        return asyncio.run_coroutine_threadsafe(wait(), loop).result()
    return asyncio.run(wait())
