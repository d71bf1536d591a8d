"""Host side of remote objects: the table of host objects that cells reach by reference.

`RemoteRegistry` keeps the real objects by reference id and runs the
operations a worker forwards (``call``, ``getattr``). What a call returns
crosses as `returned_as` decides (and `codec` encodes):

- **by value** (copied into the worker, where the sandbox applies): plain
  data, numpy/pandas, injected types, and every other object of Python's
  standard library (a ``pathlib.Path``, an ``ipaddress``, a
  ``SimpleNamespace``...). A copy in the worker has the worker's powers, not
  the host's: ``path.read_text()`` there meets the audit hook and Landlock.
- **as a remote reference**: objects and functions of the host's own code
  (the application's classes, third-party libraries), so
  ``home.room("kitchen").lights.on()`` works.
- **refused** (the cell's call raises ``TypeError``): a standard-library
  object that cannot be copied (an open file, a socket, a ``Popen``, a
  ``sqlite3`` connection, an ``os.DirEntry``, a ``ZipFile``, a logging
  handler, a generator) and standard-library functions and bound methods
  (``os.remove``, ``open``, ``path.unlink``). A proxy of one of those would
  be a capability over the host's files, sockets or processes that no one
  handed out. (Standard-library classes travel by name, like a value's
  class: in the worker they have the worker's powers.) The one exception: what a standard-library object the
  host did hand out (``inject(..., remote=True)``, or a remote function such
  as ``open``) returns stays remote when it cannot be copied (a connection's
  cursor), since it adds no power the cell was not given.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import inspect
import pickle
import sys
import types as _types
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


def from_standard_library(obj: Any) -> bool:
    """Whether ``obj`` (an object, class, function or bound method) is defined by Python's
    standard library (the home of a process's ambient powers: files, sockets, processes)."""
    if isinstance(obj, _types.MethodType):  # a bound Python method: its function or its object
        return from_standard_library(obj.__func__) or from_standard_library(obj.__self__)
    if isinstance(obj, _types.BuiltinFunctionType):  # os.remove, or a bound builtin: f.write
        owner = obj.__self__
        if owner is not None and not isinstance(owner, _types.ModuleType):
            return _stdlib_module(type(owner).__module__)
        return _stdlib_module(obj.__module__) or obj.__module__ is None
    if isinstance(obj, (type, _types.FunctionType)):
        return _stdlib_module(obj.__module__)
    return _stdlib_module(type(obj).__module__)


def _stdlib_module(module: Any) -> bool:
    return isinstance(module, str) and module.partition(".")[0] in sys.stdlib_module_names


VALUE = "value"
REMOTE = "remote"


class NotHandedOut(TypeError):
    """A remote call returned a standard-library capability: it is not handed to the cell."""


_ADVICE = ("objects of Python's standard library cross only as values, never as remote "
           "objects (a file, socket, process or connection would act in the host). Return "
           "plain data, or inject it with remote=True if the cell should have it")


def returned_as(obj: Any, types: tuple[type, ...], *, stdlib_target: bool = False) -> str:
    """How one object of a remote call's result crosses to the worker: `VALUE` or `REMOTE`
    (see the module docstring); raises `NotHandedOut` for what no cell is handed.

    A `VALUE` that turns out not to pickle fails the call (`copy_failed`).
    ``stdlib_target``: the object whose method (or the function) ran is itself one of the
    standard library's, which the host handed out explicitly.
    """
    if is_copyable(obj, types):
        return VALUE
    if not from_standard_library(obj):
        return REMOTE
    if stdlib_target:
        return VALUE if not callable(obj) and pickles(obj, types) else REMOTE
    if isinstance(obj, type) or _reconstructor(obj):
        return VALUE  # by name: a class (or a value's private rebuilder) in the worker
    if callable(obj):
        raise NotHandedOut(
            f"the remote call returned {_describe_stdlib(obj)}, a function or class of Python's "
            "standard library: the cave does not hand those to a cell (they would run in the "
            "host, with its files, sockets and processes). Return plain data, or inject it "
            "with remote=True if the cell should have it")
    return VALUE


def _reconstructor(obj: Any) -> bool:
    """A private module-level function a standard-library value pickles with (``re._compile``
    for a pattern, ``array._array_reconstructor``, ``ZoneInfo._unpickle``): by name."""
    name = getattr(obj, "__name__", "")
    return (isinstance(obj, (_types.FunctionType, _types.BuiltinFunctionType))
            and isinstance(name, str) and name.startswith("_") and not name.startswith("__"))


def copy_failed(exc: BaseException) -> NotHandedOut:
    """The error for a result that was to be copied and cannot be."""
    return NotHandedOut(f"the remote result cannot be copied into the cave ({str(exc)[:300]}); "
                        + _ADVICE)


class _Probe(pickle.Pickler):
    """Pickles to nowhere, the host's own objects standing in as references (as they would)."""

    def __init__(self, root: Any, types: tuple[type, ...]):
        super().__init__(_Sink(), protocol=5, buffer_callback=lambda _: None)
        self.root, self.types = root, types

    def persistent_id(self, obj: Any) -> Any:
        if obj is self.root or is_copyable(obj, self.types) or from_standard_library(obj):
            return None
        return 0


class _Sink:
    def write(self, data: Any) -> int:
        return len(data)


def pickles(obj: Any, types: tuple[type, ...]) -> bool:
    """Whether ``obj`` pickles, the host's own objects inside it counting as references."""
    try:
        _Probe(obj, types).dump(obj)
    except Exception:
        return False
    return True


def _describe_stdlib(obj: Any) -> str:
    if isinstance(obj, (type, _types.FunctionType, _types.BuiltinFunctionType, _types.MethodType)):
        module = getattr(obj, "__module__", None) or type(getattr(obj, "__self__", None)).__module__
        return f"{module}.{getattr(obj, '__qualname__', type(obj).__name__)}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object"


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

    @property
    def next_ref(self) -> int:
        return self._next

    def forget_since(self, first: int) -> None:
        """Forget the references made from ``first`` on (a result that failed to encode)."""
        self.release([ref for ref in self.objects if ref >= first], set())

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
