"""Restoring a snapshot in the worker: `SnapshotLoader`, what each variable's pickle may name.

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

This module is the loader's rules (names, dill's helpers, what may be set);
where rebuilt code and classes come from is `rebuild`, and the snapshot's
bytes (packing, the outer layer, cell sources) are `snapshot_format`. All
three are the runtime's loader code to the audit hook (`spare.start`).
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from typing import Any

from ..security import decode
from ..security.classes import CELL_TYPES, CaveType
from ..security.decode import GuardedUnpickler
from ..security.guards import Guard
from .rebuild import (
    DATACLASS_DUNDERS,
    CodeSource,
    Generated,
    check_dataclass,
    dataclass_again,
    generated_ids,
    holds_generated,
    namedtuple_again,
)
from .snapshot_format import GUARD_TAG


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
_DATACLASS_STATE = frozenset([("dataclasses", "_dataclass_getstate"),
                              ("dataclasses", "_dataclass_setstate")])
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
        self._code = CodeSource(guard, sources, compiled)
        self._helpers = _DillHelpers()
        self._pending: set[int] = set()  # generated methods not yet made again
        self._reconstructors: set[int] = set()  # the restricted decoder's, as find_class gave them
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
        if key in _DATACLASS_STATE:
            # A frozen slotted dataclass's __getstate__/__setstate__ (they set its fields with
            # object.__setattr__): never loaded, made again with its class as its methods are.
            return self._generated(name)
        if key in _EXTRA_GLOBALS:
            __import__(module)
            return getattr(sys.modules[module], name)
        if key in decode.SAFE_GLOBALS or key in decode.ARROW_GLOBALS:
            found = super().find_class(module, name)
            self._reconstructors.add(id(found))
            return found
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

    # --- calls (REDUCE, NEWOBJ) -----------------------------------------------------------

    def _check_call(self, func: Any, args: Any) -> None:
        """The restricted decoder's reconstructors keep its argument checks. Anything else a
        snapshot calls is what a cell of this worker could call: one of this loader's checked
        helpers, a value `find_class` gave as a cell would see it (through the guards), or
        what this load made (a class compiled again, a rebuilt function)."""
        if id(func) in self._reconstructors:
            super()._check_call(func, args)
        elif type(args) is not tuple:
            raise pickle.UnpicklingError("a snapshot's call whose arguments are not a tuple")

    def _check_new(self, cls: Any, args: Any, kwargs: Any) -> None:
        """``cls.__new__(cls, *args)`` with arguments (a namedtuple's, a tuple subclass's) only
        for a class this load made or the restoring namespace holds (as calling it would);
        library classes as the restricted decoder allows."""
        if id(cls) in self._fresh or any(cls is held for held in self._namespace.values()):
            return
        super()._check_new(cls, args, kwargs)

    # --- dill's helpers, checked ---------------------------------------------------------

    def _fresh_made(self, value: Any) -> Any:
        self._fresh.add(id(value))
        return value

    def _generated(self, placeholder: Any) -> Any:
        """A library-generated method's placeholder: the load fails unless its class is made
        again (a dataclass), which drops it."""
        placeholder = placeholder if type(placeholder) is Generated else Generated(placeholder)
        self._pending.add(id(placeholder))
        return self._fresh_made(placeholder)

    def _create_code(self, *args: Any) -> Any:
        import dill._dill

        forged = dill._dill._create_code(*args)  # only read: its bytecode is never run
        return self._code.code_for(forged)

    def _create_function(self, fcode: Any, fglobals: Any, fname: Any = None, fdefaults: Any = None,
                         fclosure: Any = None, fdict: Any = None, fkwdefaults: Any = None) -> Any:
        if type(fcode) is Generated:
            return self._generated(fcode)  # stands for the method until it is generated again
        if type(fcode) is not types.CodeType:
            raise pickle.UnpicklingError("a snapshot's function without code")
        globals_ = self._code.globals_for(fcode, fglobals, self._namespace, self._builtins)
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
        return self._fresh_made(namedtuple_again(name, fieldnames, modulename, defaults))

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
            later = {k: body.pop(k) for k in DATACLASS_DUNDERS if k in body}
            check_dataclass(later)
            args = (args[0], args[1], body)
        if len(args) == 3 and type(args[2]) is dict and later.get("__dataclass_params__"):
            for value in args[2].values():
                self._pending.difference_update(generated_ids(value))
            return self._fresh_made(dataclass_again(typeobj, args, later))
        if len(args) == 3 and any(holds_generated(v) for v in args[2].values()):
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
        if type(target) is Generated:
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


def _eval_repr(text: Any) -> Any:
    if type(text) is str and text in _EVAL_REPRS:
        return _EVAL_REPRS[text]
    raise pickle.UnpicklingError(f"a snapshot may not evaluate {str(text)[:80]!r}")
