"""Layer 2: library functions that would act for a cell where the guards cannot see.

The guards police what a cell's own code does. Some library functions take a
name, a template or a class from the cell and then read attributes, evaluate
text or write attributes themselves, with the real built-ins and no guard:

- ``str.format`` / ``format_map`` read attributes named in the template;
  ``operator.attrgetter`` / ``methodcaller`` read them by name;
- ``typing.get_type_hints`` (and ``functools.singledispatch``'s ``register``,
  which calls it) evaluates annotation text, with the *real* built-ins when
  the globals it picks have none (a callable object, a cell class);
- ``dataclasses.dataclass`` compiles methods from field names it does not
  check, ``functools.update_wrapper`` copies attributes it is told to copy,
  and these, ``total_ordering``, ``typing.final`` & co. write onto whatever
  class or function they are given (a shared library class included);
- pandas dispatches ``df.agg("name")`` to ``getattr(df, name)`` and imports
  any module named as a plotting backend.

`LibraryDoors` hands cells checked stand-ins for these functions (matched by
identity, so a re-export under another module's name is replaced too), and
`harden_pandas` puts the same name check into pandas' own dispatch points.
Each stand-in keeps the library's behaviour for what ordinary code passes.
"""

from __future__ import annotations

import _string  # str.format's own field parser
import builtins
import functools
import operator
import sys
import types
from collections.abc import Callable
from typing import Any

from .transformer import REFUSED_ATTRIBUTES, SENSITIVE_ATTRIBUTES


class AccessDenied(AttributeError):
    """A cell asked for something the cave does not hand out."""


# --- format strings: the one place where a *string* performs attribute access ---------

def _check_format_fields(template: str, depth: int = 0) -> None:
    if depth > 2:
        return
    for _literal, field_name, spec, _conv in _string.formatter_parser(template):
        if field_name:
            # The parser str.format itself uses: "a.b[c].d" -> attributes b and d.
            _first, rest = _string.formatter_field_name_split(field_name)
            for is_attr, part in rest:
                if is_attr and (part.startswith("_") or part in REFUSED_ATTRIBUTES):
                    raise AccessDenied(f"format field '{field_name}' reaches a protected attribute")
        if spec:
            _check_format_fields(spec, depth + 1)


def safe_format(template: str, /, *args: Any, **kwargs: Any) -> str:
    _check_format_fields(template)
    return str.format(template, *args, **kwargs)


def safe_format_map(template: str, mapping: Any, /) -> str:
    _check_format_fields(template)
    return str.format_map(template, mapping)


_RAW_FORMATTERS = {"format": (str.format, safe_format), "format_map": (str.format_map, safe_format_map)}


def checked_formatter(name: str, value: Any) -> Any:
    """The checked version of ``str.format``/``format_map`` however it was reached.

    Unbound (``str.format``, ``np.str_.format``, ``type(s).format``) is the method
    descriptor itself; bound (``s.format``, ``super().format``) is a builtin method
    whose ``__self__`` is a ``str`` (``np.str_`` and cell-made subclasses included).
    A ``format`` method a cell class defines itself is left alone.
    """
    raw, safe = _RAW_FORMATTERS[name]
    if value is raw:
        return safe
    if type(value) is types.BuiltinMethodType and value.__name__ == name:
        template = value.__self__
        if isinstance(template, str):
            return functools.partial(safe, template)
    return value


def _checked_name(name: Any) -> str:
    if type(name) is not str:
        raise AccessDenied("attribute names must be plain strings")
    for part in name.split("."):
        # format/format_map would hand out the unguarded str.format (field access by text).
        if part.startswith("_") or part in REFUSED_ATTRIBUTES or part in SENSITIVE_ATTRIBUTES:
            raise AccessDenied(f"'{name}' reaches a protected attribute; call it directly")
    return name


def safe_attrgetter(*names: str) -> operator.attrgetter:
    return operator.attrgetter(*(_checked_name(n) for n in names))


def safe_methodcaller(name: str, /, *args: Any, **kwargs: Any) -> operator.methodcaller:
    return operator.methodcaller(_checked_name(name), *args, **kwargs)


# --- functions that write onto the class or function they are given ---------------------

class LibraryDoors:
    """Checked stand-ins for library doors, bound to one guard's idea of "cell-made".

    ``owned(obj)`` says whether a class, function or instance belongs to the cell
    (writes onto it are the cell's business); ``cell_builtins()`` is the cell's
    restricted built-ins dict, used wherever a library would evaluate text.
    """

    def __init__(self, owned: Callable[[Any], bool], cell_builtins: Callable[[], dict[str, Any]]):
        self.owned = owned
        self.cell_builtins = cell_builtins
        self._table: dict[int, Any] | None = None
        self._extra: dict[int, Any] = {}
        self._extra_originals: list[Any] = []

    def add(self, original: Any, stand_in: Any) -> None:
        """A stand-in provided by the runtime (``asyncio.run`` on the worker's own loop)."""
        self._extra_originals.append(original)
        self._extra[id(original)] = stand_in

    def replacement(self, value: Any) -> Any | None:
        """The stand-in for ``value`` if it is one of the doors, else None."""
        if self._table is None:
            self._table = self._build()
        found = self._table.get(id(value))
        return found if found is not None else self._extra.get(id(value))

    def _build(self) -> dict[int, Any]:
        import abc
        import dataclasses
        import typing

        table: dict[Any, Any] = {
            operator.attrgetter: safe_attrgetter,
            operator.methodcaller: safe_methodcaller,
            typing.get_type_hints: self.get_type_hints,
            functools.update_wrapper: self.update_wrapper,
            functools.wraps: self.wraps,
            functools.singledispatch: self.singledispatch,
            functools.singledispatchmethod: self._singledispatchmethod_class(),
            functools.total_ordering: self._writes_to_argument(functools.total_ordering),
            dataclasses.dataclass: self.dataclass,
            typing.final: self._writes_to_argument(typing.final),
            typing.no_type_check: self._writes_to_argument(typing.no_type_check),
            typing.runtime_checkable: self._writes_to_argument(typing.runtime_checkable),
            abc.update_abstractmethods: self._writes_to_argument(abc.update_abstractmethods),
        }
        # Keep the originals alive with the table: ids are only unique among live objects.
        self._originals = list(table)
        return {id(original): stand_in for original, stand_in in table.items()}

    def _require_owned(self, target: Any, what: str) -> None:
        if not self.owned(target):
            name = getattr(target, "__qualname__", None) or type(target).__name__
            raise AccessDenied(f"{what} changes the object it is given, and {name} is not "
                               "defined by the cell; apply it to your own classes and functions")

    def _writes_to_argument(self, func: Callable[..., Any]) -> Callable[..., Any]:
        def checked(target: Any, *args: Any, **kwargs: Any) -> Any:
            self._require_owned(target, f"{func.__name__}()")
            return func(target, *args, **kwargs)

        # Name and docstring only: no __wrapped__ that would lead back to the original.
        checked.__name__ = checked.__qualname__ = func.__name__
        checked.__doc__ = func.__doc__
        return checked

    # functools ---------------------------------------------------------------------------

    def update_wrapper(self, wrapper: Any, wrapped: Any,
                       assigned: Any = functools.WRAPPER_ASSIGNMENTS,
                       updated: Any = functools.WRAPPER_UPDATES) -> Any:
        """``functools.update_wrapper`` onto the cell's own wrapper, with the standard names only.

        Other names would copy any attribute (``__array_interface__``, ``__class__``)
        onto any object; the annotations are copied, not shared, so that editing the
        wrapper's cannot change the wrapped library function's.
        """
        self._require_owned(wrapper, "update_wrapper()")
        if tuple(assigned) != tuple(functools.WRAPPER_ASSIGNMENTS) or \
                tuple(updated) != tuple(functools.WRAPPER_UPDATES):
            raise AccessDenied("update_wrapper() copies the standard attributes only "
                               "(__module__, __name__, __qualname__, __doc__, __annotations__)")
        for name in assigned:
            if name == "__module__" and isinstance(wrapper, type):
                continue  # a cell's class stays the cell's (a library module would disown it)
            try:
                value = getattr(wrapped, name)
            except AttributeError:
                continue
            if name == "__annotations__" and isinstance(value, dict):
                value = dict(value)
            setattr(wrapper, name, value)
        source = getattr(wrapped, "__dict__", {})
        target = getattr(wrapper, "__dict__", None)
        if isinstance(target, dict):
            # Public entries only: the cell may read any attribute of its own wrapper,
            # and a library function's private ones are the library's.
            for key, value in dict(source).items():
                if type(key) is str and not key.startswith("_"):
                    target[key] = value
        wrapper.__wrapped__ = wrapped
        return wrapper

    def wraps(self, wrapped: Any, assigned: Any = functools.WRAPPER_ASSIGNMENTS,
              updated: Any = functools.WRAPPER_UPDATES) -> Callable[[Any], Any]:
        return functools.partial(self.update_wrapper, wrapped=wrapped, assigned=assigned,
                                 updated=updated)

    def _annotated_dispatch(self, register: Callable[..., Any], cls: Any, func: Any) -> Any:
        """``register(f)`` reads f's dispatch type from its annotations: evaluate them safely.

        functools calls ``typing.get_type_hints`` itself, which evaluates a callable
        object's annotations with the real built-ins; here they go through
        `get_type_hints` below and the type found is registered explicitly.
        """
        if func is not None or isinstance(cls, (type, types.UnionType)):
            return register(cls, func)
        hints = self.get_type_hints(cls)
        if not hints:
            raise TypeError(f"Invalid first argument to `register()`: {cls!r}. Use either "
                            "`@register(some_class)` or plain `@register` on an annotated function.")
        return register(next(iter(hints.values())), cls)

    def singledispatch(self, func: Callable[..., Any]) -> Callable[..., Any]:
        dispatcher = functools.singledispatch(func)
        register = dispatcher.register  # type: ignore[attr-defined]

        def checked_register(cls: Any, func: Any = None) -> Any:
            return self._annotated_dispatch(register, cls, func)

        dispatcher.register = checked_register  # type: ignore[attr-defined, method-assign]
        return dispatcher

    def _singledispatchmethod_class(self) -> type:
        doors = self

        class singledispatchmethod(functools.singledispatchmethod):  # type: ignore[type-arg]  # noqa: N801
            __doc__ = functools.singledispatchmethod.__doc__

            def __init__(self, func: Callable[..., Any]) -> None:
                super().__init__(func)
                # The public .dispatcher is the checked one: its register is the only one.
                self.dispatcher = doors.singledispatch(func)  # type: ignore[assignment]

            def register(self, cls: Any, method: Any = None) -> Any:
                return doors._annotated_dispatch(self.dispatcher.register, cls, method)

        singledispatchmethod.__module__ = "functools"
        return singledispatchmethod

    # typing ------------------------------------------------------------------------------

    def get_type_hints(self, obj: Any, globalns: Any = None, localns: Any = None,
                       include_extras: bool = False) -> dict[str, Any]:
        """``typing.get_type_hints`` that evaluates a cell's annotations with the cell's built-ins.

        typing picks the globals itself: a function's own, a class's module dict
        (for a cell class the interpreter's ``__main__``, not the cell's namespace)
        or ``{}`` for other objects; ``eval`` fills a dict without ``__builtins__``
        with the real ones. Here the globals always carry the cell's built-ins,
        and an annotation must evaluate to something other than a module.
        """
        import typing

        if isinstance(obj, types.ModuleType) or type(obj).__name__ == "ModuleView":
            raise AccessDenied("get_type_hints() of a module is not available in the cave")
        if globalns is None:
            globalns = self._annotation_globals(obj)
        elif not isinstance(globalns, dict):
            raise TypeError("globalns must be a dict")
        elif "__builtins__" not in globalns:
            globalns = {**globalns, "__builtins__": self.cell_builtins()}
        _FOR_A_CELL.append(True)
        try:
            hints = typing.get_type_hints(obj, globalns, localns, include_extras)
        finally:
            _FOR_A_CELL.pop()
        for name, value in hints.items():
            if isinstance(value, types.ModuleType):
                raise AccessDenied(f"the annotation of '{name}' names a module")
        return hints

    def _annotation_globals(self, obj: Any) -> dict[str, Any] | None:
        """What the annotations of ``obj`` are evaluated in (None: typing's own choice).

        The cell's own objects carry annotation text the cell wrote: it is evaluated
        in the cell's namespace (a cell function's globals, or those of a cell class's
        methods), else in a dict with only the cell's built-ins. Never in the globals
        typing would find by following ``__wrapped__`` (a library's), nor ``{}``.
        A library's objects keep typing's choice: their (read-only) annotations
        are the library's own text.
        """
        if type(obj) is types.FunctionType:
            return obj.__globals__ if self.owned(obj) else None  # type: ignore[no-any-return]
        cls = obj if isinstance(obj, type) else type(obj)
        if not self.owned(cls):
            return None
        for klass in cls.__mro__:
            for member in vars(klass).values():
                member = getattr(member, "__func__", member)
                if type(member) is types.FunctionType and self.owned(member):
                    return member.__globals__  # type: ignore[no-any-return]
        return {"__builtins__": self.cell_builtins()}

    # dataclasses -------------------------------------------------------------------------

    def dataclass(self, cls: Any = None, /, **options: Any) -> Any:
        """``dataclasses.dataclass`` for the cell's own classes, with field names checked.

        dataclasses compiles ``__init__``, ``__repr__``, ``__eq__`` and ``__hash__``
        from text that splices in every field name unchecked, so a name such as
        ``"x, print(open)"`` (from ``__annotations__`` or a base's fields) would be
        compiled and run with the real built-ins.
        """
        import dataclasses

        def wrap(klass: Any) -> Any:
            self._require_owned(klass, "dataclass()")
            for name in _field_names(klass):
                if type(name) is not str or not name.isidentifier() or _is_keyword(name):
                    raise AccessDenied(f"dataclass field names must be identifiers, not {name!r}")
            return dataclasses.dataclass(klass, **options)

        return wrap if cls is None else wrap(cls)


def _field_names(cls: type) -> list[Any]:
    names: list[Any] = []
    for klass in cls.__mro__:
        own = klass.__dict__
        names.extend(own.get("__annotations__", {}) or {})
        fields = own.get("__dataclass_fields__")
        if isinstance(fields, dict):
            names.extend(fields)
            names.extend(getattr(f, "name", None) for f in fields.values())
    return names


def _is_keyword(name: str) -> bool:
    import keyword

    return keyword.iskeyword(name)


# --- typing: a forward reference may name the module it is evaluated in ---------------------

_FOR_A_CELL: list[bool] = []  # non-empty while typing evaluates annotations for a cell


def harden_typing() -> None:
    """Forward references evaluated for a cell ignore the module they name (once per process).

    ``ForwardRef("getattr", module="json")`` is evaluated in json's globals, with the
    real built-ins, whatever globals the caller passed; typing gives the string
    annotations of a ``TypedDict`` the cell's module, ``__main__``, which in the worker
    is the interpreter's own. While `LibraryDoors.get_type_hints` runs they are
    evaluated in the globals it chose instead (a library class's are its module's).
    """
    import typing

    evaluate = typing.ForwardRef._evaluate  # type: ignore[attr-defined]
    if getattr(evaluate, "_cave_checked", False):
        return

    def _evaluate(self: Any, globalns: Any, localns: Any, *args: Any, **kwargs: Any) -> Any:
        if _FOR_A_CELL and self.__forward_module__ is not None:
            self = typing.ForwardRef(self.__forward_arg__, self.__forward_is_argument__,
                                     is_class=self.__forward_is_class__)
        return evaluate(self, globalns, localns, *args, **kwargs)

    _evaluate.__dict__["_cave_checked"] = True
    typing.ForwardRef._evaluate = _evaluate  # type: ignore[attr-defined, method-assign]


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
