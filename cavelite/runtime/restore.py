"""Snapshots inside the worker: each variable pickled by dill, restored into the live namespace.

A snapshot is made by one worker and restored by another, and the worker that
made it may have been taken (layer 2 fallen), so on restore its bytes are as
untrusted as any cell, and restoring must do nothing a cell of the restoring
worker could not. The outer layer is plain data, decoded without loading any
global. Each variable is then loaded by `SnapshotLoader`, not by dill's
unpickler:

- **Globals** are what a cell of this worker could name: a public attribute
  of a module its policy allows, read through the guards (``from m import
  n``); the cell's own built-ins (no ``exec``, ``eval``, ``open``, real
  ``getattr`` or ``type``); the restricted decoder's reconstruction entry
  points for plain data, numpy and pandas; and checked stand-ins for dill's
  helpers (``_eval_repr`` evaluates only ``NotImplemented`` and ``Ellipsis``,
  ``_import_module`` goes through the policy, ``_load_type`` gives value
  types only and ``type`` as the cave's checked ``type``).
- **Nothing it did not create is modified**: ``BUILD``, ``APPEND(S)``,
  ``SETITEM(S)`` and ``ADDITEMS`` only on objects made by this load (the
  restricted decoder's rule), and ``setattr``/``BUILD`` on a function or class
  only for its name, qualified name, docstring, annotations and defaults
  (never ``__code__``).
- **Code is never taken from the snapshot.** A cell's function is rebuilt from
  its cell's *source*, which the snapshot carries and which is compiled again
  here, with this worker's policy and guards: the pickled bytecode is only
  used to find which function of that source it is. Library code (a
  dataclass's ``__repr__`` wrapper) is the library's own code object, found by
  file, name and line. Every function gets the *restoring* namespace as its
  globals (dill would give it a fresh globals dict, with the real builtins).

Methods a library generated from text at run time (dataclasses' ``__init__``,
``__repr__``, ``__eq__``, file ``<string>``) have no source to compile again:
their bytecode is dropped and a dataclass is decorated again here from its
fields (a namedtuple is made again by ``collections.namedtuple``). Generated
code anywhere else makes the restore fail. Code the host injected by value (a
``remote=False`` helper, an injected class's methods) has no source either:
its bytecode loads only if every name it reaches is public and it writes only
attributes of its first argument, i.e. if it can do nothing a cell's guarded
code could not; it runs with the cave's builtins.
"""

from __future__ import annotations

import io
import linecache
import os
import pickle
import re
import sys
import types
from dataclasses import dataclass
from typing import Any

from ..security import decode
from ..security.audit import library_roots
from ..security.classes import CELL_TYPES, CaveType
from ..security.decode import GuardedUnpickler, loads_plain
from ..security.guards import Guard

CELL_FILENAME_PREFIX = "<cell-"
_CELL_FILENAME = re.compile(r"<cell-(\d+)>")


@dataclass(frozen=True)
class SnapshotState:
    variables: dict[str, bytes]
    descriptions: dict[str, str]
    types: list[str]
    sources: dict[str, str]  # cell filename -> its source (the code of its functions)


def pack_snapshot(variables: dict[str, bytes], descriptions: dict[str, str], types_: list[str],
                  sources: dict[str, str] | None = None) -> bytes:
    return pickle.dumps({"vars": variables, "descriptions": dict(descriptions),
                         "types": list(types_), "sources": dict(sources or {})}, protocol=5)


def cell_sources() -> dict[str, str]:
    """The source of every cell this worker compiled (kept for tracebacks), by filename."""
    return {name: "".join(entry[2]) for name, entry in list(linecache.cache.items())
            if type(name) is str and _CELL_FILENAME.fullmatch(name) and len(entry) > 2}


def parse_snapshot(blob: bytes) -> SnapshotState:
    state = loads_plain(blob, budget=4 * len(blob) + (64 << 20))  # mostly bytes: ~1x
    if (type(state) is not dict or type(state.get("vars")) is not dict
            or type(state.get("descriptions")) is not dict or type(state.get("types")) is not list):
        raise ValueError("not a snapshot of this cavelite version")
    variables = {k: v for k, v in state["vars"].items() if type(k) is str and type(v) is bytes}
    descriptions = {k: v for k, v in state["descriptions"].items()
                    if type(k) is str and type(v) is str}
    raw_sources = state.get("sources")
    sources = {k: v for k, v in raw_sources.items()
               if type(k) is str and _CELL_FILENAME.fullmatch(k) and type(v) is str} \
        if type(raw_sources) is dict else {}
    return SnapshotState(variables, descriptions, [t for t in state["types"] if type(t) is str],
                         sources)


def last_cell_number(sources: dict[str, str]) -> int:
    """The highest cell number in these filenames (the restoring worker counts on from it)."""
    numbers = [int(m.group(1)) for name in sources if (m := _CELL_FILENAME.fullmatch(name))]
    return max(numbers, default=0)


GUARD_TAG = "guard"


def guard_entries(namespace: dict[str, Any]) -> dict[int, str]:
    """The namespace's guard functions by identity: they travel by name (a restoring worker
    uses its own), never pickled with the guard they are bound to."""
    from ..security.transformer import is_reserved

    return {id(value): name for name, value in namespace.items()
            if is_reserved(name) and name not in ("__name__", "__builtins__")
            and not isinstance(value, (str, int))}


def dumps_variable(value: Any, entries: dict[int, str] | None = None) -> bytes:
    import dill

    class _Pickler(dill.Pickler):  # type: ignore[misc]
        def persistent_id(self, obj: Any) -> Any:
            name = (entries or {}).get(id(obj))
            return (GUARD_TAG, name) if name is not None else None

    out = io.BytesIO()
    _Pickler(out, recurse=True).dump(value)
    return out.getvalue()


def loads_variable(raw: bytes, namespace: dict[str, Any], guard: Guard,
                   sources: dict[str, str], compiled: dict[str, dict[Any, Any]]) -> Any:
    """One variable of a snapshot, loaded as `SnapshotLoader` allows (``compiled``: a cache
    of the cells compiled again, shared by the variables of one restore)."""
    return SnapshotLoader(raw, namespace, guard, sources, compiled).load()


# --- what a snapshot may name ----------------------------------------------------------------

# Reconstruction entry points beyond the restricted decoder's (private names a cell could not
# import, each rebuilding a value from data).
_EXTRA_GLOBALS = frozenset([
    ("re", "_compile"), ("dataclasses", "MISSING"), ("dataclasses", "_FIELD"),
    ("dataclasses", "_FIELD_CLASSVAR"), ("dataclasses", "_FIELD_INITVAR"),
    ("dataclasses", "_DataclassParams"), ("dataclasses", "Field"), ("dataclasses", "KW_ONLY"),
    ("dataclasses", "_HAS_DEFAULT_FACTORY"), ("dataclasses", "_EMPTY_METADATA"),
])
# Types dill names by `_load_type`: values and the class machinery of a class statement.
_LOADABLE_TYPES = frozenset(["NoneType", "MappingProxyType", "EllipsisType",
                             "NotImplementedType", "PartialType"])
_EVAL_REPRS = {"NotImplemented": NotImplemented, "Ellipsis": Ellipsis}
# Attributes a snapshot may set on a function or class it made (what dill sets after creating
# one); never __code__, __globals__, __closure__, __dict__, __class__ or __bases__.
_SETTABLE = frozenset(["__qualname__", "__name__", "__doc__", "__annotations__",
                       "__kwdefaults__", "__defaults__", "__module__", "cell_contents"])


class _DillHelpers:
    """Stands for the module ``dill._dill`` in a snapshot (only ``_setattr`` is read from it)."""


class _NotLoaded:
    """A module the snapshot names that the restoring policy does not allow (an unused global)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<module {self.name!r}: not available in the cave>"


_PythonUnpickler: Any = GuardedUnpickler


class SnapshotLoader(_PythonUnpickler):  # type: ignore[misc]
    """The restricted decoder's unpickler, with a worker's rules for what a snapshot names."""

    dispatch = dict(GuardedUnpickler.dispatch)

    def __init__(self, raw: bytes, namespace: dict[str, Any], guard: Guard,
                 sources: dict[str, str], compiled: dict[str, dict[Any, Any]]):
        super().__init__(io.BytesIO(raw))
        self._namespace = namespace
        self._guard = guard
        self._builtins = guard.cell_builtins()
        self._sources = sources
        self._compiled = compiled
        self._library_globals: dict[int, dict[str, Any]] = {}
        self._helpers = _DillHelpers()
        self._pending: set[int] = set()  # generated methods not yet made again
        self._host_code_ids: set[int] = set()
        self._special: dict[tuple[str, str], Any] = {
            ("dill._dill", "_create_function"): self._create_function,
            ("dill._dill", "_create_code"): self._create_code,
            ("dill._dill", "_create_cell"): self._create_cell,
            ("dill._dill", "_create_type"): self._create_type,
            ("dill._dill", "_load_type"): self._load_type,
            ("dill._dill", "_create_array"): self._create_array,
            ("dill._dill", "_import_module"): self._import_module,
            ("dill._dill", "_eval_repr"): _eval_repr,
            ("dill._dill", "_create_namedtuple"): self._create_namedtuple,
            ("dill", "_dill"): self._helpers,
            ("builtins", "getattr"): self._getattr,
            ("builtins", "setattr"): self._setattr,
            ("cavelite.security.modules", "_restore_view"): self._import_module,
            ("cavelite.security.classes", "CELL_TYPES"): CELL_TYPES,
        }

    def load(self) -> Any:
        value = super().load()
        if self._pending:
            raise pickle.UnpicklingError(
                "the snapshot holds code generated from text outside a dataclass (its bytecode "
                "would come from the snapshot)")
        return value

    # --- globals -------------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        special = self._special.get(key)
        if special is not None:
            return special
        if module in ("builtins", "__builtin__"):
            if name == "NoneType":
                return type(None)
            if name in self._builtins and not name.startswith("_"):
                return self._builtins[name]
            raise pickle.UnpicklingError(f"a snapshot may not use the built-in {name!r}")
        if module == "__main__":  # a class the restoring namespace already holds (an Enum)
            held = self._namespace.get(name)
            if held is None or name.startswith("_"):
                raise pickle.UnpicklingError(f"the snapshot names {name!r}, which is not defined")
            return held
        if key in _EXTRA_GLOBALS:
            __import__(module)
            return getattr(sys.modules[module], name)
        if key in decode.SAFE_GLOBALS or key in decode.ARROW_GLOBALS:
            return super().find_class(module, name)
        # Anything else as a cell would reach it: `from module import name`, through the guards.
        try:
            value: Any = self._guard.import_module(module)
            for part in name.split("."):
                value = self._guard.getattr(value, part)
        except (ImportError, AttributeError, PermissionError, TypeError) as exc:
            raise pickle.UnpicklingError(f"a snapshot may not use {module}.{name}: {exc}") from None
        return value

    def persistent_load(self, pid: Any) -> Any:
        from ..security.transformer import is_reserved

        if type(pid) is tuple and len(pid) == 2 and pid[0] == GUARD_TAG and type(pid[1]) is str \
                and is_reserved(pid[1]) and pid[1] in self._namespace:
            return self._namespace[pid[1]]  # this worker's own guard entry of that name
        raise pickle.UnpicklingError("unknown persistent reference in a snapshot")

    # --- dill's helpers, checked ---------------------------------------------------------

    def _fresh_made(self, value: Any) -> Any:
        self._fresh.add(id(value))
        return value

    def _create_code(self, *args: Any) -> Any:
        import dill._dill

        forged = dill._dill._create_code(*args)  # only read: its bytecode is never run
        filename = forged.co_filename
        if _CELL_FILENAME.fullmatch(filename):
            return self._cell_code(forged)
        if filename == "<string>":
            return _Generated(forged.co_name)  # generated from text: made again (dataclasses)
        return self._library_code(forged)

    def _cell_code(self, forged: Any) -> Any:
        filename = forged.co_filename
        index = self._compiled.get(filename)
        if index is None:
            source = self._sources.get(filename)
            if source is None:
                raise pickle.UnpicklingError(
                    f"the snapshot holds a function of {filename} without that cell's source")
            from .cell import compile_cell

            result = compile_cell(source, self._guard.policy, filename)
            if result.code is None:
                message = result.error.message if result.error else "it does not compile"
                raise pickle.UnpicklingError(
                    f"the snapshot's code from {filename} is refused here: {message}")
            index = self._compiled[filename] = _code_index([result.code])
        code = index.get((forged.co_qualname, forged.co_firstlineno, forged.co_name))
        if code is None:
            raise pickle.UnpicklingError(
                f"the snapshot's function {forged.co_qualname!r} is not in the source of {filename}")
        return code

    def _library_code(self, forged: Any) -> Any:
        real = os.path.realpath(forged.co_filename)
        if not any(real.startswith(root + os.sep) for root in library_roots()):
            return self._host_code(forged)
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if not isinstance(path, str) or os.path.realpath(path) != real:
                continue
            code = _code_index(_module_code(module)).get(
                (forged.co_qualname, forged.co_firstlineno, forged.co_name))
            if code is not None:
                self._library_globals[id(code)] = vars(module)
                return code
        raise pickle.UnpicklingError(
            f"the snapshot's {forged.co_qualname!r} is not code of {forged.co_filename}")

    def _host_code(self, forged: Any) -> Any:
        """Code the host injected by value (a helper, an injected class's methods): no source
        to compile again, so its bytecode is loaded, but only if it could do nothing a cell's
        own code cannot: every name it reaches is public (what a cell reads without a guard),
        and it writes attributes of its first argument only (``self.x = ...``)."""
        why = _unguarded_reach(forged, self._guard)
        if why is not None:
            raise pickle.UnpicklingError(
                f"the snapshot's {forged.co_qualname!r} (from {forged.co_filename!r}) is refused: "
                f"{why}; inject it again after restoring")
        self._host_code_ids.add(id(forged))
        return forged

    def _create_function(self, fcode: Any, fglobals: Any, fname: Any = None, fdefaults: Any = None,
                         fclosure: Any = None, fdict: Any = None, fkwdefaults: Any = None) -> Any:
        if type(fcode) is _Generated:
            self._pending.add(id(fcode))
            return self._fresh_made(fcode)  # stands for the method until it is generated again
        if type(fcode) is not types.CodeType:
            raise pickle.UnpicklingError("a snapshot's function without code")
        # The restoring namespace (the cave's builtins and guards), a library's own module, or
        # for the host's code its own globals (the names it uses) with the cave's builtins.
        globals_ = self._library_globals.get(id(fcode), self._namespace)
        if id(fcode) in self._host_code_ids:
            if type(fglobals) is not dict or any(type(k) is not str for k in fglobals):
                raise pickle.UnpicklingError("a snapshot's function with malformed globals")
            globals_ = {**fglobals, "__builtins__": self._builtins}
        func = types.FunctionType(fcode, globals_, fname, fdefaults, fclosure)
        if fdict:
            if type(fdict) is not dict or any(type(k) is not str for k in fdict):
                raise pickle.UnpicklingError("a snapshot's function with a malformed __dict__")
            func.__dict__.update(fdict)
        if fkwdefaults is not None:
            func.__kwdefaults__ = fkwdefaults
        return self._fresh_made(func)

    def _create_namedtuple(self, name: Any, fieldnames: Any, modulename: Any,
                           defaults: Any = None) -> Any:
        """A cell's namedtuple class, generated again here (its code never comes from the
        snapshot); namedtuple itself checks that the names are identifiers."""
        import collections

        if type(name) is not str or type(fieldnames) not in (tuple, list) \
                or not all(type(f) is str for f in fieldnames) or modulename != "__main__" \
                or (defaults is not None and type(defaults) not in (tuple, list)):
            raise pickle.UnpicklingError("a snapshot's namedtuple with a malformed description")
        return self._fresh_made(collections.namedtuple(name, fieldnames, defaults=defaults,
                                                       module="__main__"))

    def _create_cell(self, *args: Any) -> Any:
        import dill._dill

        return self._fresh_made(dill._dill._create_cell(*args))

    def _create_type(self, typeobj: Any, *args: Any) -> Any:
        if typeobj is type:
            typeobj = CaveType
        later: dict[str, Any] = {}
        if len(args) == 3 and type(args[2]) is dict:
            # copyreg's cache of slot names (set on a class once it was pickled): recomputed.
            body = {k: v for k, v in args[2].items() if k != "__slotnames__"}
            later = {k: body.pop(k) for k in _DATACLASS_DUNDERS if k in body}
            _check_dataclass(later)
            args = (args[0], args[1], body)
        if len(args) == 3 and type(args[2]) is dict and later.get("__dataclass_params__"):
            for value in args[2].values():
                self._pending.difference_update(_generated_ids(value))
            return self._fresh_made(_dataclass_again(typeobj, args, later))
        if len(args) == 3 and any(_holds_generated(v) for v in args[2].values()):
            raise pickle.UnpicklingError("a snapshot's class with generated methods that are "
                                         "not a dataclass's")
        cls = typeobj(*args)  # CaveType checks the class dict
        for key, value in later.items():  # what @dataclass set on the cell's class, checked
            setattr(cls, key, value)
        return self._fresh_made(cls)

    def _load_type(self, name: Any) -> Any:
        if name == "type":
            return CaveType
        import dill._dill

        value = self._builtins.get(name) if type(name) is str else None
        if isinstance(value, type):
            return value
        value = dill._dill._reverse_typemap.get(name) if type(name) is str else None
        # dill's name for a built-in a cell has (SuperType is `super`), or a value type.
        if isinstance(value, type) and (name in _LOADABLE_TYPES or any(
                value is b for b in self._builtins.values())):
            return value
        raise pickle.UnpicklingError(f"a snapshot may not use the type {name!r}")

    def _create_array(self, f: Any, args: Any, state: Any, npdict: Any = None) -> Any:
        import dill._dill

        if not (callable(f) and (getattr(f, "__module__", None), getattr(f, "__name__", None))
                in decode.SAFE_GLOBALS):
            raise pickle.UnpicklingError("a snapshot's array with an unknown constructor")
        return dill._dill._create_array(f, args, state, npdict)

    def _import_module(self, name: Any, safe: bool = False) -> Any:
        if type(name) is not str:
            raise pickle.UnpicklingError("a snapshot's module name must be a string")
        try:
            return self._guard.import_module(name)
        except (ImportError, PermissionError):
            return _NotLoaded(name)

    def _getattr(self, obj: Any, name: Any, *default: Any) -> Any:
        if obj is self._helpers:
            if name == "_setattr":
                return self._setattr
            raise pickle.UnpicklingError(f"a snapshot may not use dill's {name!r}")
        if type(obj) is type and getattr(obj, "__module__", None) == "zoneinfo" \
                and name == "_unpickle":
            return getattr(obj, "_unpickle")  # noqa: B009
        return self._guard.getattr(obj, name, *default)

    def _setattr(self, obj: Any, name: Any, value: Any) -> None:
        if id(obj) not in self._fresh:
            raise pickle.UnpicklingError(
                f"a snapshot tried to set {name!r} on an object it did not create")
        if type(name) is not str or name not in _SETTABLE:
            raise pickle.UnpicklingError(f"a snapshot may not set {str(name)[:80]!r}")
        setattr(obj, name, value)

    # --- BUILD on what it made: functions and classes only for harmless attributes ---------

    def load_build(self) -> None:
        state = self.stack[-1]
        target = self.stack[-2] if len(self.stack) > 1 else None
        if type(target) is _Generated:
            self.stack.pop()  # a generated method's name and annotations: made again
            return
        if isinstance(target, (type, types.FunctionType)):
            slots = state[1] if type(state) is tuple and len(state) == 2 else None
            attrs = state[0] if type(state) is tuple and len(state) == 2 else state
            if isinstance(target, type) and attrs:
                raise pickle.UnpicklingError("a snapshot may not set a class's attributes")
            if (attrs is not None and type(attrs) is not dict) or \
                    (slots is not None and (type(slots) is not dict
                                            or not set(slots) <= _SETTABLE)):
                raise pickle.UnpicklingError(
                    "a snapshot may not set these attributes of a function or class")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build


_DATACLASS_DUNDERS = ("__dataclass_params__", "__dataclass_fields__", "__match_args__")


class _Generated:
    """Stands for a method a library generated from text (its bytecode is not loaded)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<generated {self.name} (made again on restore)>"


def _holds_generated(value: Any) -> bool:
    """A placeholder, or a library wrapper around one (dataclasses' recursive __repr__)."""
    return bool(_generated_ids(value))


_WRITES = frozenset(["STORE_ATTR", "DELETE_ATTR"])
_REFUSED_OPS = frozenset(["STORE_GLOBAL", "DELETE_GLOBAL", "IMPORT_STAR"])


def _unguarded_reach(code: Any, guard: Guard) -> str | None:
    """Why this bytecode could reach what a cell's guarded code cannot (None if it cannot).

    Unguarded bytecode differs from a cell's compiled code only where the guards would have
    been called: names (attributes, globals, imports, all in ``co_names``) that are private,
    internal or denied, and writes to attributes of objects that are not its own.
    """
    import dis

    from ..security.transformer import REFUSED_ATTRIBUTES, SENSITIVE_ATTRIBUTES

    denied = guard.policy.attributes.denied
    for each in _code_index([code]).values():
        for name in each.co_names:
            if name.startswith("_") or name in REFUSED_ATTRIBUTES or name in SENSITIVE_ATTRIBUTES \
                    or name in denied:
                return f"it reaches {name!r}"
        previous = None
        for op in dis.get_instructions(each):
            if op.opname in _REFUSED_OPS:
                return f"it uses {op.opname}"
            if op.opname in ("STORE_FAST", "DELETE_FAST") and op.arg == 0:
                return "it rebinds its first argument"
            if op.opname in _WRITES and not (previous is not None and previous.opname == "LOAD_FAST"
                                             and previous.arg == 0 and each.co_argcount > 0):
                return "it writes attributes of objects other than its first argument"
            previous = op
    return None


def _generated_ids(value: Any) -> set[int]:
    if type(value) is _Generated:
        return {id(value)}
    if type(value) is types.FunctionType:
        held = [getattr(c, "cell_contents", None) for c in value.__closure__ or ()]
        held.append(value.__dict__.get("__wrapped__"))
        return {id(v) for v in held if type(v) is _Generated}
    return set()


def _dataclass_again(typeobj: Any, args: tuple[Any, ...], attrs: dict[str, Any]) -> Any:
    """A cell's dataclass, its generated methods made again here by ``dataclasses`` from its
    fields (as the cell's @dataclass made them), never loaded from the snapshot."""
    import dataclasses

    name, bases, body = args
    params = attrs["__dataclass_params__"]
    fields = attrs.get("__dataclass_fields__", {})
    annotations = body.get("__annotations__", {})
    if "__slots__" in body or type(annotations) is not dict or not all(
            type(k) is str and k.isidentifier() for k in annotations):
        raise pickle.UnpicklingError(f"the snapshot's dataclass {name!r} cannot be made again "
                                     "here (slots, or malformed annotations)")
    body = {k: v for k, v in body.items() if not _holds_generated(v)}
    for field_name in annotations:
        if field_name in fields:
            body[field_name] = fields[field_name]  # its default, factory and options
    cls = typeobj(name, bases, body)  # CaveType checks the class dict
    return dataclasses.dataclass(cls, init=params.init, repr=params.repr, eq=params.eq,
                                 order=params.order, unsafe_hash=params.unsafe_hash,
                                 frozen=params.frozen)


def _check_dataclass(attrs: dict[str, Any]) -> None:
    """A restored dataclass's tables: fields named by identifiers (dataclasses compiles them
    into the code it generates for subclasses), of dataclasses' own types."""
    import dataclasses
    import keyword

    def identifier(name: Any) -> bool:
        return type(name) is str and name.isidentifier() and not keyword.iskeyword(name)

    fields = attrs.get("__dataclass_fields__", {})
    params = attrs.get("__dataclass_params__")
    match = attrs.get("__match_args__", ())
    if (type(fields) is not dict
            or any(not identifier(k) or type(f) is not dataclasses.Field or f.name != k
                   for k, f in fields.items())
            or (params is not None and type(params).__name__ != "_DataclassParams")
            or type(match) is not tuple or not all(identifier(m) for m in match)):
        raise pickle.UnpicklingError("a snapshot's dataclass with malformed fields")


def _eval_repr(text: Any) -> Any:
    if type(text) is str and text in _EVAL_REPRS:
        return _EVAL_REPRS[text]
    raise pickle.UnpicklingError(f"a snapshot may not evaluate {str(text)[:80]!r}")


def _code_index(codes: list[Any]) -> dict[tuple[str, int, str], Any]:
    """Every code object in these (nested ones included), by qualified name, line and name."""
    found: dict[tuple[str, int, str], Any] = {}
    stack = list(codes)
    while stack:
        code = stack.pop()
        found.setdefault((code.co_qualname, code.co_firstlineno, code.co_name), code)
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return found


def _module_code(module: Any) -> list[Any]:
    codes: list[Any] = []
    for value in list(vars(module).values()):
        members: list[Any] = [value]
        if isinstance(value, type) and value.__module__ == module.__name__:
            members = list(vars(value).values())
        for member in members:
            code = getattr(getattr(member, "__func__", member), "__code__", None)
            if isinstance(code, types.CodeType):
                codes.append(code)
    return codes

