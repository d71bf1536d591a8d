"""What the host sends to inject a value, and what it then tells a model about it.

Pure functions over host values: they build the request for the worker (a
remote proxy, a copied value, an Enum rebuilt there) and the `Injected`
record that the agent's prompt describes. They never talk to the worker.
"""

from __future__ import annotations

import enum
import inspect
import keyword
import pickle
import types
from dataclasses import dataclass, field
from typing import Any

from ..errors import CaveUsageError, UnpicklableValueError
from ..security.transformer import is_reserved
from .codec import encode_for_worker
from .messages import InjectEnum, InjectRemote, InjectValue
from .registry import describe_callable, public_names
from .results import Injected

FUNCTION_TYPES = (types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                  types.BuiltinMethodType)


def check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise CaveUsageError(f"{name!r} is not a valid Python name")
    if is_reserved(name):
        raise CaveUsageError(f"{name!r} is reserved for the runtime")


def check_description(description: Any) -> None:
    if description is not None and not isinstance(description, str):
        raise CaveUsageError("description must be a str")


def doc_of(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc if len(doc) <= 2000 else doc[:2000] + "..."


def is_remote_function(value: Any) -> bool:
    """Callables travel as one proxy function (not an object with forwarded attributes)."""
    return isinstance(value, FUNCTION_TYPES) or (
        callable(value) and not isinstance(value, type) and not public_names(value))


def remote_request(name: str, value: Any, ref: int,
                   description: str | None) -> tuple[InjectRemote, Injected]:
    if is_remote_function(value):
        fname, doc, sig, is_async = describe_callable(value)
        request = InjectRemote(name, description, ref, True, fname, doc, sig, is_async, "", ())
        return request, Injected(name, "function", type(value).__name__, sig, doc, description,
                                 is_async)
    names = public_names(value)
    methods = tuple(n for n in names if callable(getattr(value, n, None)))
    request = InjectRemote(name, description, ref, False, "", "", "", False,
                           type(value).__name__, names)
    return request, Injected(name, "object", type(value).__name__, "", doc_of(value),
                             description, False, methods)


def needs_enum_rebuild(value: Any, importable: bool) -> bool:
    return isinstance(value, type) and issubclass(value, enum.Enum) and not importable


def enum_request(name: str, cls: type[enum.Enum],
                 description: str | None) -> tuple[InjectEnum, Injected]:
    # dill cannot send Enum classes by value (they refer to themselves), so the
    # worker rebuilds one with the functional API: same name, members and values.
    bases = [b for b in (enum.IntFlag, enum.Flag, enum.IntEnum, enum.StrEnum) if issubclass(cls, b)]
    members = [(m.name, m.value) for m in cls]
    request = InjectEnum(name, description, cls.__name__, bases[0].__name__ if bases else "Enum",
                         pickle.dumps(members, protocol=5))
    return request, Injected(name, "type", cls.__name__, "", doc_of(cls), description, False,
                             tuple(m for m, _ in members))


def copied_info(name: str, value: Any, description: str | None) -> Injected | None:
    """What a model learns of a copied class or function (plain data is listed as a variable)."""
    if isinstance(value, type):
        _fname, _doc, signature, _async = describe_callable(value)
        methods = tuple(n for n in public_names(value) if callable(getattr(value, n, None)))
        return Injected(name, "type", value.__name__, signature, doc_of(value), description,
                        False, methods)
    if isinstance(value, types.FunctionType):
        _fname, doc, sig, is_async = describe_callable(value)
        return Injected(name, "function", "function", sig, doc, description, is_async)
    return None


def copy_request(name: str, value: Any, description: str | None, types_: dict[str, type], *,
                 by_value: bool | None = None) -> tuple[InjectValue, list[Any]]:
    """The request that copies ``value`` in; classes and functions go by value (their code)."""
    if by_value is None:
        by_value = isinstance(value, (type, types.FunctionType))
    others = {n: t for n, t in types_.items() if t is not value}
    try:
        payload, buffers = encode_for_worker(value, others, by_value=by_value)
    except UnpicklableValueError as exc:
        raise UnpicklableValueError(
            f"cannot inject {name!r} ({type(value).__name__}): {exc}; "
            "pass remote=True to keep it in the host and use it by proxy") from None
    return InjectValue(name, description, payload, isinstance(value, type)), buffers


@dataclass
class HostRecords:
    """What the host injected, by name: the only account of the session it trusts."""

    types: dict[str, type] = field(default_factory=dict)  # copied classes, by injected name
    injected: dict[str, Injected] = field(default_factory=dict)
    remote_objects: dict[str, Any] = field(default_factory=dict)

    def copied(self, name: str, value: Any, info: Injected | None) -> None:
        self.forget(name)
        if isinstance(value, type):
            self.types[name] = value
        if info is not None:
            self.injected[name] = info

    def remote(self, name: str, value: Any, info: Injected) -> None:
        self.forget(name)
        self.remote_objects[name] = value
        self.injected[name] = info

    def forget(self, name: str) -> None:
        self.types.pop(name, None)
        self.injected.pop(name, None)
        self.remote_objects.pop(name, None)

    def description(self, name: str) -> str | None:
        info = self.injected.get(name)
        return info.description if info else None
