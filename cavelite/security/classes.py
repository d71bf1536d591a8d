"""Layer 2: what a cell-made class is, and how cells may make classes.

A class a cell defines has ``__module__ == "__main__"`` (the cell namespace
is ``__main__`` in the worker); its instances may use their own private
attributes. Classes made any other way (``type(name, bases, dict)``, a
library metaclass such as ``abc.ABCMeta``) are checked the way a class
statement is: no attribute a class statement could not define, and the
hooks a cell may write (``__getattr__``, ``__getstate__``) never answer for
a dunder name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .library_doors import AccessDenied
from .transformer import DEFINABLE_DUNDERS, is_reserved

CELL_MODULE = "__main__"


def is_cell_made(obj: Any) -> bool:
    """True for classes defined by a cell and their instances."""
    if isinstance(obj, type):
        return obj.__dict__.get("__module__") == CELL_MODULE
    return getattr(type(obj), "__module__", None) == CELL_MODULE


def check_self(obj: Any) -> None:
    """Entry check of a cell method that reads its own _private attributes natively."""
    if type(obj).__module__ == CELL_MODULE:
        return  # the common case, kept to one attribute read: this runs on every call
    if not is_cell_made(obj):
        raise AccessDenied(
            f"this method reads private attributes, and {type(obj).__name__} objects are not "
            "made by a cell"
        )


class _CellTypes(dict):  # type: ignore[type-arg]
    """``_cell_types_[type(self)]``: the entry check of a cell method, at C speed on a hit.

    A hit is a dict lookup; a miss decides once (and remembers cell-made classes).
    Only the runtime's guards can reach this object: its name is reserved.
    """

    def __reduce__(self) -> str:
        # dill follows a method's globals when it copies cell code (snapshots,
        # trusted retrieve): the table travels as a reference, not with its classes.
        return "CELL_TYPES"

    def __missing__(self, cls: Any) -> bool:
        if getattr(cls, "__module__", None) == CELL_MODULE:
            self[cls] = True
            return True
        raise AccessDenied(
            f"this method uses attributes of its first argument directly, and {cls.__name__} "
            "objects are not made by a cell"
        )


CELL_TYPES = _CellTypes()


# Dunders a dict-made class may carry (what a class statement could define).
_TYPE_DICT_DUNDERS = (DEFINABLE_DUNDERS | frozenset(
    ["__module__", "__qualname__", "__doc__", "__slots__", "__annotations__",
     "__orig_bases__", "__firstlineno__", "__static_attributes__"]
)) - frozenset(["__getattr__", "__getstate__"])


class _CaveTypeMeta(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, type)

    def __subclasscheck__(cls, sub: Any) -> bool:
        return issubclass(sub, type)


class CaveType(metaclass=_CaveTypeMeta):
    """``type`` for cells: ``type(x)`` as usual; ``type(name, bases, dict)`` checks the dict.

    A dict-made class could otherwise carry attributes no class statement may
    define (``__array_interface__`` hands numpy a raw memory address, ``__reduce__``
    runs code wherever the object is unpickled).
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        if len(args) == 1 and not kwargs:
            return cell_class(type(args[0]))
        if len(args) != 3 or not isinstance(args[2], dict):
            raise TypeError("type() takes 1 or 3 arguments")
        _check_class_dict(args[2])
        return type(*args, **kwargs)


def _check_class_dict(namespace: dict[Any, Any]) -> None:
    for key in namespace:
        if type(key) is not str:
            raise AccessDenied("class attribute names must be plain strings")
        if is_reserved(key) and key not in _TYPE_DICT_DUNDERS:
            raise AccessDenied(f"a class made from a dict may not define '{key}'; "
                               "use a class statement with ordinary methods")
    module = namespace.get("__module__", CELL_MODULE)
    if type(module) is not str or module != CELL_MODULE:
        # A class the cell made, claiming a library's module: typing would evaluate its
        # annotations in that module's globals, and it would not count as the cell's.
        raise AccessDenied("a class made by a cell belongs to the cell's module")


def cell_class(cls: type) -> Any:
    """What a cell gets for a class: a metaclass (``type``, ``abc.ABCMeta``) only as a view."""
    if cls is type or cls is _CaveTypeMeta or cls is _MetaclassView:
        return CaveType  # the view's own metaclass would make classes from unchecked dicts
    if isinstance(cls, type) and issubclass(cls, type):
        view = _METACLASS_VIEWS.get(cls)
        if view is None:
            view = _METACLASS_VIEWS[cls] = _MetaclassView(
                cls.__name__, (), {"__cave_real__": cls, "__doc__": cls.__doc__,
                                   "__module__": cls.__module__, "__qualname__": cls.__qualname__})
        return view
    return cls


class _MetaclassView(type):
    """The metaclass of a cell's view of a library metaclass (``abc.ABCMeta``, ``enum.EnumType``).

    Calling a metaclass with a name, bases and a dict makes a class from that dict,
    as ``type(name, bases, dict)`` does: the view checks the dict the same way.
    ``isinstance``/``issubclass`` and the metaclass's public methods work as usual.
    The real metaclass sits under a dunder name, which no cell can read.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if isinstance(value, dict):  # the namespace, however it is passed
                _check_class_dict(value)
        return cls.__cave_real__(*args, **kwargs)  # type: ignore[attr-defined]

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, cls.__cave_real__)  # type: ignore[attr-defined]

    def __subclasscheck__(cls, sub: Any) -> bool:
        real = sub.__dict__.get("__cave_real__", sub) if isinstance(sub, _MetaclassView) else sub
        return issubclass(real, cls.__cave_real__)  # type: ignore[attr-defined]

    def __getattr__(cls, name: str) -> Any:
        if name[:1] == "_":
            raise AttributeError(name)
        return getattr(cls.__cave_real__, name)  # type: ignore[attr-defined]

    def __eq__(cls, other: Any) -> bool:
        return other is cls or other is cls.__dict__.get("__cave_real__")

    def __hash__(cls) -> int:
        return hash(cls.__dict__.get("__cave_real__"))

    def __repr__(cls) -> str:
        return repr(cls.__dict__.get("__cave_real__"))


_METACLASS_VIEWS: dict[type, type] = {}


def guard_getattr_hook(method: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    """Wraps a cell class's ``__getattr__``: dunder lookups never reach it.

    Libraries probe objects for protocol attributes with getattr
    (numpy's ``__array_interface__`` takes a raw memory address); a cell's
    catch-all ``__getattr__`` must not be able to answer those.
    """

    def __getattr__(self: Any, name: str) -> Any:
        if name[:2] == "__" and name[-2:] == "__":
            raise AttributeError(name)
        return method(self, name)

    __getattr__.__qualname__ = getattr(method, "__qualname__", "__getattr__")
    return __getattr__


def guard_getstate_hook(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wraps a cell class's ``__getstate__``: copies may not gain dunder attributes.

    copy.copy() puts the state into the new object's ``__dict__``; a state
    with ``__array_interface__`` would give numpy a raw address.
    """

    def __getstate__(self: Any) -> Any:
        state = method(self)
        for part in state if isinstance(state, tuple) else (state,):
            if isinstance(part, dict):
                for key in part:
                    if type(key) is not str or (key[:1] == "_" and key[-1:] == "_"):
                        raise AccessDenied(f"__getstate__ may not return the key {key!r}")
        return state

    __getstate__.__qualname__ = getattr(method, "__qualname__", "__getstate__")
    return __getstate__
