"""Worker side of remote objects: proxies that forward calls to the host.

A host object injected with ``remote=True`` (and every function, by
default) reaches a cell as a proxy: `make_function_proxy` for callables,
`RemoteObject` for objects. Calls and attribute reads travel over the
worker's channel (``channel.remote(op, ref, name, args, kwargs)``) and run in
the host; see `registry` for the host side.
"""

from __future__ import annotations

import builtins
import pickle
from collections.abc import Callable
from typing import Any


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


class MethodMarker:
    """Sent instead of a value when a remote attribute is callable."""

    def __init__(self, name: str, doc: str, signature: str, is_async: bool):
        self.name, self.doc, self.signature, self.is_async = name, doc, signature, is_async


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
        if isinstance(reply, MethodMarker):
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
