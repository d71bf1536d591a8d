"""What a snapshot's functions and classes are made of on restore: code found here, not loaded.

`restore.SnapshotLoader` decides what a snapshot may name; this module decides
where the *code* of what it rebuilds comes from, because the snapshot's bytecode
is never run (the worker that wrote it may have been taken):

- a cell's function: its cell's source, carried in the snapshot, compiled
  again under the restoring worker's policy (`CodeSource`); the pickled code
  object only says which function of that source it is;
- library code: the library's own code object, found by file, name and line,
  with the library module's globals;
- code the host injected by value: no source to compile, so its bytecode is
  loaded only if it could do nothing a cell's guarded code could not
  (`unguarded_reach`), and runs with the cave's builtins;
- methods a library generated from text (file ``<string>``): a `Generated`
  placeholder, and the class is made again by the library (`dataclass_again`,
  `namedtuple_again`) from its fields.
"""

from __future__ import annotations

import os
import pickle
import sys
import types
from typing import Any

from ..security.audit import library_roots
from ..security.guards import Guard
from .snapshot_format import CELL_FILENAME

# --- code: where a function's code object comes from -----------------------------------------


class Generated:
    """Stands for a method a library generated from text (its bytecode is not loaded)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<generated {self.name} (made again on restore)>"


class CodeSource:
    """The code of a snapshot's functions, for one restore (``compiled``: the cells compiled
    again, shared by its variables); remembers which code needs which globals."""

    def __init__(self, guard: Guard, sources: dict[str, str], compiled: dict[str, dict[Any, Any]]):
        self._guard = guard
        self._sources = sources
        self._compiled = compiled
        self._library_globals: dict[int, dict[str, Any]] = {}
        self._host_code_ids: set[int] = set()

    def code_for(self, forged: Any) -> Any:
        """The code to use for ``forged`` (read only: its bytecode is never run)."""
        filename = forged.co_filename
        if CELL_FILENAME.fullmatch(filename):
            return self._cell_code(forged)
        if filename == "<string>":
            return Generated(forged.co_name)  # generated from text: made again (dataclasses)
        return self._library_code(forged)

    def globals_for(self, code: Any, fglobals: Any, namespace: dict[str, Any],
                    builtins: dict[str, Any]) -> dict[str, Any]:
        """The restoring namespace (the cave's builtins and guards), a library's own module, or
        for the host's code its own globals (the names it uses) with the cave's builtins."""
        globals_ = self._library_globals.get(id(code), namespace)
        if id(code) in self._host_code_ids:
            if type(fglobals) is not dict or any(type(k) is not str for k in fglobals):
                raise pickle.UnpicklingError("a snapshot's function with malformed globals")
            globals_ = {**fglobals, "__builtins__": builtins}
        return globals_

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
            index = self._compiled[filename] = code_index([result.code])
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
            code = code_index(module_code(module)).get(
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
        why = unguarded_reach(forged, self._guard)
        if why is not None:
            raise pickle.UnpicklingError(
                f"the snapshot's {forged.co_qualname!r} (from {forged.co_filename!r}) is refused: "
                f"{why}; inject it again after restoring")
        self._host_code_ids.add(id(forged))
        return forged


_WRITES = frozenset(["STORE_ATTR", "DELETE_ATTR"])
_REFUSED_OPS = frozenset(["STORE_GLOBAL", "DELETE_GLOBAL", "IMPORT_STAR"])


def unguarded_reach(code: Any, guard: Guard) -> str | None:
    """Why this bytecode could reach what a cell's guarded code cannot (None if it cannot).

    Unguarded bytecode differs from a cell's compiled code only where the guards would have
    been called: names (attributes, globals, imports, all in ``co_names``) that are private,
    internal or denied, and writes to attributes of objects that are not its own.
    """
    import dis

    from ..security.transformer import REFUSED_ATTRIBUTES, SENSITIVE_ATTRIBUTES

    denied = guard.policy.attributes.denied
    for each in code_index([code]).values():
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


def code_index(codes: list[Any]) -> dict[tuple[str, int, str], Any]:
    """Every code object in these (nested ones included), by qualified name, line and name."""
    found: dict[tuple[str, int, str], Any] = {}
    stack = list(codes)
    while stack:
        code = stack.pop()
        found.setdefault((code.co_qualname, code.co_firstlineno, code.co_name), code)
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return found


def module_code(module: Any) -> list[Any]:
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


# --- classes whose methods a library generated: made again by the library --------------------

DATACLASS_DUNDERS = ("__dataclass_params__", "__dataclass_fields__", "__match_args__")


def holds_generated(value: Any) -> bool:
    """A placeholder, or a library wrapper around one (dataclasses' recursive __repr__)."""
    return bool(generated_ids(value))


def generated_ids(value: Any) -> set[int]:
    if type(value) is Generated:
        return {id(value)}
    if type(value) is types.FunctionType:
        held = [getattr(c, "cell_contents", None) for c in value.__closure__ or ()]
        held.append(value.__dict__.get("__wrapped__"))
        return {id(v) for v in held if type(v) is Generated}
    return set()


def dataclass_again(typeobj: Any, args: tuple[Any, ...], attrs: dict[str, Any]) -> Any:
    """A cell's dataclass, its generated methods made again here by ``dataclasses`` from its
    fields (as the cell's @dataclass made them), never loaded from the snapshot."""
    import dataclasses

    name, bases, body = args
    params = attrs["__dataclass_params__"]
    fields = attrs.get("__dataclass_fields__", {})
    annotations = body.get("__annotations__", {})
    slots = body.get("__slots__")
    slots = (slots,) if type(slots) is str else slots
    if type(annotations) is not dict or not all(
            type(k) is str and k.isidentifier() for k in annotations) or (
            slots is not None and (type(slots) not in (tuple, list)
                                   or not all(type(s) is str for s in slots))):
        raise pickle.UnpicklingError(f"the snapshot's dataclass {name!r} cannot be made again "
                                     "here (malformed annotations or slots)")
    # A slotted dataclass (slots=True) is made again the way @dataclass made it: from the
    # class without slots (its fields' defaults are class attributes until then), slotted by
    # dataclasses, which also gives a frozen one its __getstate__/__setstate__ again.
    body = {k: v for k, v in body.items() if not holds_generated(v) and k != "__slots__"}
    for field_name in annotations:
        if field_name in fields:
            body[field_name] = fields[field_name]  # its default, factory and options
    cls = typeobj(name, bases, body)  # CaveType checks the class dict
    made = dataclasses.dataclass(cls, init=params.init, repr=params.repr, eq=params.eq,
                                 order=params.order, unsafe_hash=params.unsafe_hash,
                                 frozen=params.frozen, slots=slots is not None,
                                 weakref_slot=slots is not None and "__weakref__" in slots)
    if slots is not None and tuple(made.__slots__) != tuple(slots):
        raise pickle.UnpicklingError(f"the snapshot's dataclass {name!r} has slots other than "
                                     "its fields: it cannot be made again here")
    return made


def check_dataclass(attrs: dict[str, Any]) -> None:
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


def namedtuple_again(name: Any, fieldnames: Any, modulename: Any, defaults: Any = None) -> Any:
    """A cell's namedtuple class, generated again here (its code never comes from the
    snapshot); namedtuple itself checks that the names are identifiers."""
    import collections

    if type(name) is not str or type(fieldnames) not in (tuple, list) \
            or not all(type(f) is str for f in fieldnames) or modulename != "__main__" \
            or (defaults is not None and type(defaults) not in (tuple, list)):
        raise pickle.UnpicklingError("a snapshot's namedtuple with a malformed description")
    return collections.namedtuple(name, fieldnames, defaults=defaults, module="__main__")
