"""Remote objects: values that stay in the host and are used from a cell by proxy.

Worker side: `make_function_proxy` and `RemoteObject` forward calls (and
attribute reads) over the worker's channel. Host side: `RemoteRegistry`
keeps the real objects by reference id and runs the forwarded operations.
Results that are plain data (or numpy/pandas, or injected types) are copied
back; anything else comes back as another remote reference, so
``home.room("kitchen").lights.on()`` works.
"""

from __future__ import annotations

import builtins
import datetime
import decimal
import fractions
import inspect
import io
import pickle
import sys
import uuid
from collections.abc import Callable
from typing import Any

_PLAIN = (
    type(None), bool, int, float, complex, str, bytes, bytearray, decimal.Decimal,
    fractions.Fraction, datetime.date, datetime.datetime, datetime.time, datetime.timedelta,
    datetime.timezone, uuid.UUID, range, slice,
)
_CONTAINERS = (list, tuple, dict, set, frozenset)
# Classes from these packages exist in the worker too, so they travel by name.
_BY_NAME_MODULES = frozenset(["builtins", "cavelite", "numpy", "pandas", "datetime", "decimal", "fractions",
                              "collections", "uuid"])
# Pickled numpy and pandas values name their rebuild functions (numpy's _reconstruct,
# pandas' _unpickle_block, copyreg's _reconstructor); those must travel by name too,
# or the worker would call back into the host for every block of a returned DataFrame.
_REBUILD_MODULES = frozenset(["numpy", "pandas", "copyreg"])


class RemoteError(Exception):
    """An exception raised by a remote function in the host, re-raised in the cell."""

    def __init__(self, remote_type: str, message: str):
        super().__init__(f"{message}" if message else remote_type)
        self.remote_type = remote_type


def rebuild_exception(type_name: str, message: str) -> BaseException:
    """Builtin exception types come back as themselves; others as `RemoteError`."""
    cls = getattr(builtins, type_name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            exc = cls(message)
        except Exception:
            return RemoteError(type_name, message)
        exc.remote_type = type_name  # type: ignore[attr-defined]
        return exc
    return RemoteError(type_name, message)


# --- worker side --------------------------------------------------------------------------


class RemoteObject:
    """A host object seen from a cell: public attributes and methods are forwarded."""

    __slots__ = ("_cave_ref", "_cave_type", "_cave_names", "_cave_channel", "_cave_methods",
                 "__weakref__")

    def __init__(self, ref: int, type_name: str, names: tuple[str, ...], channel: Any):
        object.__setattr__(self, "_cave_ref", ref)
        object.__setattr__(self, "_cave_type", type_name)
        object.__setattr__(self, "_cave_names", names)
        object.__setattr__(self, "_cave_channel", channel)
        object.__setattr__(self, "_cave_methods", {})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"'{name}' is private to the remote object")
        methods = object.__getattribute__(self, "_cave_methods")
        if name in methods:
            return methods[name]
        channel = object.__getattribute__(self, "_cave_channel")
        ref = object.__getattribute__(self, "_cave_ref")
        reply = channel.remote("getattr", ref, name, (), {})
        if isinstance(reply, _MethodMarker):
            method = make_function_proxy(channel, ref, name, reply.name, reply.doc, reply.signature,
                                         reply.is_async)
            methods[name] = method
            return method
        return reply

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        channel = object.__getattribute__(self, "_cave_channel")
        return channel.remote("call", object.__getattribute__(self, "_cave_ref"), None, args, kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("remote objects are read-only from a cell; call their methods")

    def __dir__(self) -> list[str]:
        return list(object.__getattribute__(self, "_cave_names"))

    def __repr__(self) -> str:
        return f"<remote {object.__getattribute__(self, '_cave_type')}>"

    def __reduce__(self) -> Any:
        raise pickle.PicklingError("remote objects stay in the host and cannot be copied")


class _MethodMarker:
    """Sent instead of a value when a remote attribute is callable."""

    def __init__(self, name: str, doc: str, signature: str, is_async: bool):
        self.name, self.doc, self.signature, self.is_async = name, doc, signature, is_async


def make_function_proxy(channel: Any, ref: int, method: str | None, name: str, doc: str,
                        signature: str, is_async: bool) -> Callable[..., Any]:
    """A real function object with the remote's name, docstring and signature."""
    def call(*args: Any, **kwargs: Any) -> Any:
        return channel.remote("call", ref, method, args, kwargs)

    async def acall(*args: Any, **kwargs: Any) -> Any:
        return channel.remote("call", ref, method, args, kwargs)

    proxy: Callable[..., Any] = acall if is_async else call
    proxy.__name__ = proxy.__qualname__ = name
    proxy.__doc__ = doc or None
    proxy.__module__ = "cavelite.remote"
    proxy.__cave_signature__ = signature  # type: ignore[attr-defined]
    return proxy


# --- host side ----------------------------------------------------------------------------


def describe_callable(obj: Any) -> tuple[str, str, str, bool]:
    """(name, doc, signature, is_async) of a callable, for the proxy and the model."""
    name = getattr(obj, "__name__", type(obj).__name__)
    doc = inspect.getdoc(obj) or ""
    try:
        signature = str(inspect.signature(obj, eval_str=True))
    except Exception:  # unresolvable string annotations: fall back to their text
        try:
            signature = str(_unquoted(inspect.signature(obj)))
        except (TypeError, ValueError):
            signature = "(...)"
    return name, doc, signature, inspect.iscoroutinefunction(obj)


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


class RemoteRegistry:
    """The host's table of objects that cells reach by reference."""

    MAX_REFS = 100_000

    def __init__(self) -> None:
        self.objects: dict[int, Any] = {}
        self._ids: dict[int, int] = {}
        self._next = 1

    def release(self, refs: list[int], pinned: set[int]) -> None:
        """Forget objects no cell holds a proxy to any more (never the injected ones)."""
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
            raise RuntimeError("too many remote references held for this runtime")
        ref = self._next
        self._next += 1
        self.objects[ref] = obj
        self._ids[key] = ref
        return ref

    def resolve(self, op: str, ref: int, name: str | None, args: tuple[Any, ...],
                kwargs: dict[str, Any], loop: Any = None) -> Any:
        target = self.objects[ref]
        if op == "getattr":
            assert name is not None
            if name.startswith("_"):
                raise AttributeError(f"'{name}' is private")
            value = getattr(target, name)
            if callable(value) and not isinstance(value, type):
                n, doc, sig, is_async = describe_callable(value)
                return _MethodMarker(n, doc, sig, is_async)
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


def is_copyable(obj: Any, types: tuple[type, ...]) -> bool:
    """Whether ``obj`` is sent by value (else it becomes a remote reference)."""
    t = type(obj)
    if t in _PLAIN or t in _CONTAINERS or isinstance(obj, _MethodMarker):
        return True
    module = getattr(t, "__module__", "") or ""
    if module.startswith(("numpy", "pandas")):
        return True
    return bool(types) and isinstance(obj, types)


def _is_rebuild_function(obj: Any) -> bool:
    """A module-level numpy/pandas/copyreg function, which pickle saves as a global name."""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or module.split(".")[0] not in _REBUILD_MODULES or isinstance(obj, type):
        return False
    owner = sys.modules.get(module)
    return owner is not None and getattr(owner, getattr(obj, "__name__", ""), None) is obj


class HostPickler(pickle.Pickler):
    """Pickles remote-call results: non-copyable objects become remote references."""

    def __init__(self, file: io.BytesIO, registry: RemoteRegistry, types: dict[str, type],
                 **kwargs: Any):
        super().__init__(file, protocol=5, **kwargs)
        self.registry = registry
        self.type_names = {id(cls): name for name, cls in types.items()}
        self.types = tuple(types.values())

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, type):
            name = self.type_names.get(id(obj))
            if name is not None:
                return ("type", name)
        if is_copyable(obj, self.types):
            return None
        if isinstance(obj, type) and (obj.__module__ or "").split(".")[0] in _BY_NAME_MODULES:
            return None
        if isinstance(obj, pickle.PickleBuffer):
            return None  # an array's data, sent out of band
        if _is_rebuild_function(obj):
            return None
        ref = self.registry.register(obj)
        if callable(obj):
            n, doc, sig, is_async = describe_callable(obj)
            return ("function", ref, n, doc, sig, is_async)
        return ("object", ref, type(obj).__name__, public_names(obj))
