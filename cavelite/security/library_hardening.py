"""Layer 2: library internals changed in place, where a stand-in cannot reach.

`library_doors` swaps functions a cell calls for checked ones. Some doors are
opened by the library itself, from inside: typing evaluates a forward
reference in a module it picks, enum's functional API makes a class from names
the cell gives, pandas dispatches ``df.agg("name")`` to ``getattr`` and imports
any module named as a plotting backend. These are patched once, in the
zygote, before any cell runs; each patch keeps the behaviour ordinary code
relies on.
"""

from __future__ import annotations

import builtins
import functools
import sys
from collections.abc import Callable
from typing import Any

from .library_doors import _FOR_A_CELL, AccessDenied

# --- typing: a forward reference may name the module it is evaluated in ---------------------



def harden_typing() -> None:
    """Forward references evaluated for a cell ignore the module they name (once per process).

    ``ForwardRef("getattr", module="json")`` is evaluated in json's globals, with the
    real built-ins, whatever globals the caller passed; typing gives the string
    annotations of a ``TypedDict`` the cell's module, ``__main__``, which in the worker
    is the interpreter's own. While `LibraryDoors.get_type_hints` runs they are
    evaluated in the globals it chose instead (a library class's are its module's).
    """
    import typing

    evaluate = typing.ForwardRef._evaluate
    if getattr(evaluate, "_cave_checked", False):
        return

    def _evaluate(self: Any, globalns: Any, localns: Any, *args: Any, **kwargs: Any) -> Any:
        if _FOR_A_CELL and self.__forward_module__ is not None:
            self = typing.ForwardRef(self.__forward_arg__, self.__forward_is_argument__,
                                     is_class=self.__forward_is_class__)
        return evaluate(self, globalns, localns, *args, **kwargs)

    _evaluate.__dict__["_cave_checked"] = True
    typing.ForwardRef._evaluate = _evaluate  # type: ignore[method-assign]


# --- enum: the functional API makes a class from names the cell gives ---------------------

def harden_enum() -> None:
    """``Enum("E", names)`` may name members only, not dunders or sunders (once per process).

    The functional API puts every name into the new class's namespace, where
    ``__getattr__``, ``__reduce_ex__`` or ``__array_interface__`` are not members
    but class attributes: the same door as ``type(name, bases, dict)``.
    ``EnumType.__call__`` is replaced, not wrapped, because ``_create_`` finds the
    calling module two frames up.
    """
    import enum
    import inspect

    call = enum.EnumType.__call__
    if getattr(call, "_cave_checked", False):
        return
    expected = ["cls", "value", "names", "module", "qualname", "type", "start", "boundary"]
    known = list(inspect.signature(call).parameters) == expected  # Python 3.11's

    def __call__(cls: Any, value: Any, names: Any = None, *, module: Any = None,
                 qualname: Any = None, type: Any = None, start: int = 1,
                 boundary: Any = None) -> Any:
        if names is None:  # simple value lookup
            return cls.__new__(cls, value)
        if not known:  # pragma: no cover - another Python: fail closed
            raise AccessDenied("enum's functional API is not available in the cave on this "
                               "Python; write a class statement")
        names = _plain_member_names(names)
        if module is not None and (builtins.type(module) is not str or module != "__main__"):
            # A class the cell makes belongs to the cell's module (see guards.is_cell_made).
            raise AccessDenied("an enum a cell makes belongs to the cell's module")
        return cls._create_(value, names, module=module, qualname=qualname, type=type,
                            start=start, boundary=boundary)

    __call__.__doc__ = call.__doc__
    __call__.__dict__["_cave_checked"] = True
    enum.EnumType.__call__ = __call__  # type: ignore[method-assign]


def _plain_member_names(names: Any) -> Any:
    if isinstance(names, str):
        names = names.replace(",", " ").split()
    elif hasattr(names, "items"):
        names = list(names.items())
    else:
        names = list(names)
    for item in names:
        name = item if isinstance(item, str) else (
            item[0] if isinstance(item, (tuple, list)) and item else None)
        if type(name) is not str or (name[:1] == "_" and name[-1:] == "_"):
            raise AccessDenied(f"enum member names must be plain names, not {name!r}")
    return names


# --- pandas: string dispatch and plotting backends -----------------------------------------

def harden_pandas(check_name: Callable[[str], None], numpy_denied: Callable[[str], bool]) -> None:
    """Put the cave's name rules into pandas' own string dispatch (once per process).

    ``df.agg("x")``, ``s.apply("x")``, ``df.groupby(k).agg("x")``,
    ``groupby(k)[c].filter("x")`` and every route to them
    (``pivot_table(aggfunc="x")``, named aggregation...) end in
    ``getattr(obj, "x")`` or ``getattr(numpy, "x")`` inside pandas: privates,
    dunders, ``eval``/``query`` and policy-denied names would be reached there
    without a guard. A plotting backend name is imported as a module.
    """
    if "pandas" not in sys.modules:
        return
    try:
        from pandas.core import apply
        from pandas.core.groupby import generic, groupby
        from pandas.plotting import _core as plotting
    except ImportError:  # pragma: no cover - a pandas without these modules
        return
    if getattr(apply.Apply._apply_str, "_cave_checked", False):
        return

    def checked(name: Any) -> None:
        if isinstance(name, str):
            if type(name) is not str:  # a str subclass can lie to the checks, not to getattr
                raise AccessDenied("function names must be plain strings")
            check_name(name)
            if numpy_denied(name):
                raise AccessDenied(f"'{name}' is not available in the cave")

    apply_str = apply.Apply._apply_str

    def _apply_str(self: Any, obj: Any, func: str, *args: Any, **kwargs: Any) -> Any:
        checked(func)
        return apply_str(self, obj, func, *args, **kwargs)

    aggregate = generic.SeriesGroupBy.aggregate

    def series_aggregate(self: Any, func: Any = None, *args: Any, **kwargs: Any) -> Any:
        checked(func)
        return aggregate(self, func, *args, **kwargs)

    series_filter = generic.SeriesGroupBy.filter

    def filter_groups(self: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        checked(func)
        return series_filter(self, func, *args, **kwargs)

    group_apply = groupby.GroupBy.apply

    def apply_by_group(self: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        checked(func)
        return group_apply(self, func, *args, **kwargs)

    load_backend = plotting._load_backend

    def _load_backend(backend: str) -> Any:
        if backend != "matplotlib":
            raise AccessDenied("pandas' plotting backend is fixed in the cave (it would import "
                               f"the module named {backend!r})")
        if "matplotlib" not in sys.modules:  # it can only be set up before the cave closes
            raise ImportError("plotting needs matplotlib preloaded by the runtime: ask the user "
                              "to create it with preload=('numpy', 'pandas', 'matplotlib')")
        return load_backend(backend)

    patches: list[tuple[type, str, Callable[..., Any], Callable[..., Any]]] = [
        (apply.Apply, "_apply_str", _apply_str, apply_str),
        (generic.SeriesGroupBy, "aggregate", series_aggregate, aggregate),
        (generic.SeriesGroupBy, "agg", series_aggregate, aggregate),
        (generic.SeriesGroupBy, "filter", filter_groups, series_filter),
        (groupby.GroupBy, "apply", apply_by_group, group_apply),
    ]
    for cls, name, func, original in patches:
        functools.update_wrapper(func, original)
        func.__dict__["_cave_checked"] = True
        setattr(cls, name, func)
    plotting._load_backend = _load_backend
