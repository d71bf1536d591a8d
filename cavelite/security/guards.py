"""Layer 2: the run-time guards that RestrictedPython-compiled cells call.

The transformer (`transformer.py`) sends only the risky operations here:
underscore and "sensitive" attribute reads, attribute writes, imports, and
the dynamic built-ins (``getattr``, ``setattr``...). Ordinary public
attribute reads are native, which is safe because modules never reach a
cell as modules: the guarded ``__import__`` hands out `ModuleView`s that
refuse non-allowlisted submodules and denied attributes themselves.

Guards are on the hot path, so each checks the cheap things first.
"""

from __future__ import annotations

import _string  # str.format's own field parser
import builtins
import operator
import string
import types
from collections.abc import Callable
from typing import Any

from .policy import Policy
from .transformer import (
    DEFINABLE_DUNDERS,
    READABLE_DUNDERS,
    REFUSED_ATTRIBUTES,
    SENSITIVE_ATTRIBUTES,
    is_reserved,
)

CELL_MODULE = "__main__"
_MISSING = object()
_ModuleType = types.ModuleType
_FunctionType = types.FunctionType


class AccessDenied(AttributeError):
    """A cell asked for something the cave does not hand out."""


class ImportDenied(ImportError):
    """A cell imported a module that the policy does not allow."""


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


class ModuleView:
    """What a cell gets instead of a module: attribute reads are policed.

    Submodules are handed out as views only if the policy allows importing
    them; denied attributes and underscore names are refused. Safe values are
    cached on the view so the next read is a native dict lookup.
    """

    __slots__ = ("_cave_module", "_cave_guard", "__dict__")

    def __init__(self, module: types.ModuleType, guard: Guard):
        object.__setattr__(self, "_cave_module", module)
        object.__setattr__(self, "_cave_guard", guard)

    def __getattr__(self, name: str) -> Any:
        module = object.__getattribute__(self, "_cave_module")
        guard: Guard = object.__getattribute__(self, "_cave_guard")
        modname = module.__name__
        if type(name) is not str:
            raise AccessDenied("attribute names must be plain strings")
        if name.startswith("_") and name not in ("__name__", "__doc__", "__version__", "__all__"):
            raise AccessDenied(f"'{modname}.{name}' is private to the module")
        if guard.policy.module_attribute_denied(modname, name):
            raise AccessDenied(f"'{modname}.{name}' is not available in the cave"
                               f"{_module_hint(modname, name)}")
        try:
            value = getattr(module, name)
        except AttributeError:
            raise AttributeError(f"module '{modname}' has no attribute '{name}'") from None
        if type(value) is _ModuleType:
            return guard.view(value)
        replacement = _REPLACEMENTS.get((modname, name))
        if replacement is not None:
            value = replacement
        elif guard.denied_object(value):
            # The same function re-exported under another module's name is still refused.
            raise AccessDenied(f"'{modname}.{name}' is not available in the cave"
                               f"{_module_hint(modname, name)}")
        elif isinstance(value, type) and issubclass(value, string.Formatter):
            raise AccessDenied(f"'{modname}.{name}' is not available in the cave")
        elif type(value) in _MUTABLE_CONTAINERS:
            # Module-level tables are shared by the whole process (json's escape table,
            # numpy's type dicts): cells get read-only views, never the table itself.
            value = _MUTABLE_CONTAINERS[type(value)](value)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AccessDenied("modules cannot be modified from a cell")

    def __delattr__(self, name: str) -> None:
        raise AccessDenied("modules cannot be modified from a cell")

    def __dir__(self) -> list[str]:
        module = object.__getattribute__(self, "_cave_module")
        return [n for n in dir(module) if not n.startswith("_")]

    def __repr__(self) -> str:
        return f"<module '{object.__getattribute__(self, '_cave_module').__name__}'>"

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        # Snapshots re-import by name inside the worker that restores them.
        return (_restore_view, (object.__getattribute__(self, "_cave_module").__name__,))


def _restore_view(name: str) -> ModuleView:
    return current_guard().import_module(name)


_CURRENT_GUARD: Guard | None = None


def current_guard() -> Guard:
    """The worker's guard (used when a snapshot re-creates module views)."""
    global _CURRENT_GUARD
    if _CURRENT_GUARD is None:
        _CURRENT_GUARD = Guard(Policy.default())
    return _CURRENT_GUARD


def set_current_guard(guard: Guard) -> None:
    """Called once by the worker, with the guard bound to its session's policy."""
    global _CURRENT_GUARD
    _CURRENT_GUARD = guard


class Guard:
    """The guard set for one worker, bound to its policy."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self._views: dict[str, ModuleView] = {}
        self.remote_types: tuple[type, ...] = ()
        self._denied_names = policy.attributes.denied
        self._denied_ids: frozenset[int] | None = None

    def denied_object(self, value: Any) -> bool:
        """Whether ``value`` is one of the policy's denied functions, under any module name."""
        if self._denied_ids is None:
            self._denied_ids = frozenset(id(v) for v in _resolve_all(self.policy))
        return id(value) in self._denied_ids

    # --- modules ---------------------------------------------------------------------

    def view(self, module: types.ModuleType) -> ModuleView:
        name = module.__name__
        view = self._views.get(name)
        if view is None:
            if not self.policy.imports.allows(name):
                raise AccessDenied(f"module '{name}' is not available in the cave")
            view = self._views[name] = ModuleView(module, self)
        return view

    def import_module(self, name: str) -> ModuleView:
        import importlib

        if not self.policy.imports.allows(name):
            raise ImportDenied(f"import of '{name}' is not allowed")
        return self.view(importlib.import_module(name))

    def guarded_import(self, name: str, globals: Any = None, locals: Any = None,
                       fromlist: Any = (), level: int = 0) -> ModuleView:
        if level != 0 or type(name) is not str:
            raise ImportDenied("relative imports are not allowed")
        if type(fromlist) is list and not fromlist:
            # C code (datetime.strptime importing _strptime) imports through the builtins
            # of the running frame, a cell's: CPython's PyImport_Import passes an empty
            # *list* and then reads sys.modules itself, ignoring what we return. A cell's
            # import statement passes None or a tuple, and cells cannot call __import__
            # (a reserved name), so nothing reaches a cell from here.
            builtins.__import__(name, None, None, fromlist, 0)
            return None  # type: ignore[return-value]
        if not self.policy.imports.allows(name):
            raise ImportDenied(f"import of '{name}' is not allowed")
        for item in fromlist or ():
            full = f"{name}.{item}"
            if type(item) is not str or item.startswith("_"):
                raise ImportDenied(f"cannot import private name '{item}' from '{name}'")
            if full in self.policy.imports.denied:
                raise ImportDenied(f"import of '{full}' is not allowed")
        module = builtins.__import__(name, None, None, fromlist, 0)
        # `import a.b` binds `a`; `from a.b import c` reads c from `a.b`.
        return self.view(module)

    # --- attributes ------------------------------------------------------------------

    def getattr(self, obj: Any, name: Any, default: Any = _MISSING) -> Any:
        if type(name) is not str:
            raise AccessDenied("attribute names must be plain strings")
        if name[:1] == "_":
            if name not in READABLE_DUNDERS:
                if name[:2] == "__" and name[-2:] == "__":
                    raise AccessDenied(f"'{name}' is a protected attribute")
                if not is_cell_made(obj):
                    raise AccessDenied(
                        f"'{name}' is private to {type(obj).__name__}; use its public API"
                    )
        elif name in REFUSED_ATTRIBUTES:
            raise AccessDenied(f"'{name}' is an interpreter internal")
        if name in self._denied_names:
            # Names the policy refuses in source text are refused when built at run time too.
            raise AccessDenied(f"attribute '{name}' is not allowed by the policy")
        if type(obj) is ModuleView:
            return obj.__getattr__(name) if default is _MISSING else getattr(obj, name, default)
        try:
            value = getattr(obj, name)
        except AttributeError:
            if default is not _MISSING:
                return default
            raise
        if type(value) is _ModuleType:
            return self.view(value)
        if value is type:
            return CaveType  # obj.__class__ of a class: the checked type(), not the raw one
        if name in SENSITIVE_ATTRIBUTES:
            return _sensitive(obj, name, value)
        return value

    def hasattr(self, obj: Any, name: Any) -> bool:
        try:
            self.getattr(obj, name)
        except AttributeError:
            return False
        return True

    def write(self, obj: Any) -> Any:
        if isinstance(obj, _UNWRITABLE) and not is_cell_made(obj):
            raise AccessDenied(f"cannot modify {_describe(obj)} from a cell")
        if self.remote_types and isinstance(obj, self.remote_types):
            raise AccessDenied("remote objects are read-only from a cell; call their methods")
        return obj

    def write_private(self, obj: Any) -> Any:
        if not is_cell_made(obj):
            raise AccessDenied(f"cannot set private attributes on {_describe(obj)}")
        return self.write(obj)

    def setattr(self, obj: Any, name: Any, value: Any) -> None:
        self._check_write_name(obj, name)
        builtins.setattr(self.write(obj), name, value)

    def delattr(self, obj: Any, name: Any) -> None:
        self._check_write_name(obj, name)
        builtins.delattr(self.write(obj), name)

    def _check_write_name(self, obj: Any, name: Any) -> None:
        if type(name) is not str:
            raise AccessDenied("attribute names must be plain strings")
        if name[:1] == "_" and (name[:2] == "__" or not is_cell_made(obj)):
            raise AccessDenied(f"cannot set '{name}' from a cell")

    def namespace_globals(self) -> dict[str, Any]:
        """The guard entries every cell namespace carries."""
        return {
            "_getattr_": self.getattr,
            "_write_": self.write,
            "_write_private_": self.write_private,
            "_check_self_": check_self,
            "_cell_types_": CELL_TYPES,
            "_type_": type,
            "_getiter_": iter,
            "_apply_": _apply,
            "_cave_getattr_": guard_getattr_hook,
            "_cave_getstate_": guard_getstate_hook,
            "__name__": CELL_MODULE,
            "__builtins__": self.builtins(),
        }

    def builtins(self) -> dict[str, Any]:
        safe = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}
        safe.update(
            __import__=self.guarded_import,
            __build_class__=builtins.__build_class__,
            __name__="builtins",
            getattr=self.getattr,
            hasattr=self.hasattr,
            type=CaveType,
            setattr=self.setattr,
            delattr=self.delattr,
        )
        return safe


_UNWRITABLE = (type, _ModuleType, ModuleView, _FunctionType, types.BuiltinFunctionType,
               types.MethodType, types.CodeType, types.FrameType)


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return f"class {obj.__name__}"
    if isinstance(obj, (ModuleView, _ModuleType)):
        return "a module"
    return f"{type(obj).__name__} objects"


def _apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


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
    return template.format(*args, **kwargs)


def safe_format_map(template: str, mapping: Any, /) -> str:
    _check_format_fields(template)
    return template.format_map(mapping)


def _sensitive(obj: Any, name: str, value: Any) -> Any:
    if isinstance(obj, str):
        if name == "format":
            return lambda *a, **k: safe_format(obj, *a, **k)
        if name == "format_map":
            return lambda mapping: safe_format_map(obj, mapping)
    if obj is str:
        if name == "format":
            return safe_format
        if name == "format_map":
            return safe_format_map
    if isinstance(obj, string.Formatter) or (isinstance(obj, type) and issubclass(obj, string.Formatter)):
        raise AccessDenied("string.Formatter is not available in the cave")
    if name in ("attrgetter", "methodcaller") and value in (operator.attrgetter, operator.methodcaller):
        return _REPLACEMENTS[("operator", name)]
    if name in ("eval", "query") and (getattr(type(obj), "__module__", "") or "").startswith("pandas"):
        raise AccessDenied(
            f"{type(obj).__name__}.{name} evaluates text without the cave's guards; use boolean "
            "masks and operators instead, e.g. df[(df.amount > 10) & (df.region == 'North')]"
        )
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


_REPLACEMENTS: dict[tuple[str, str], Any] = {
    ("operator", "attrgetter"): safe_attrgetter,
    ("operator", "methodcaller"): safe_methodcaller,
}

_SAFE_BUILTIN_NAMES = [
    name
    for name in dir(builtins)
    if (isinstance(getattr(builtins, name), type) and issubclass(getattr(builtins, name), BaseException))
] + """abs aiter all anext any ascii bin bool bytearray bytes callable chr classmethod complex
dict dir divmod enumerate filter float format frozenset hash hex id int isinstance issubclass
iter len list map max min next object oct ord pow print property range repr reversed round set
slice sorted staticmethod str sum super tuple type zip Ellipsis NotImplemented None True False
""".split()


# --- objects with raw-memory and file doors, refused by identity ----------------------------

_MUTABLE_CONTAINERS: dict[type, Callable[[Any], Any]] = {
    dict: types.MappingProxyType, list: tuple, set: frozenset,
}


def _module_hint(module: str, name: str) -> str:
    from .policy import attribute_hint

    hint = attribute_hint(module, name)
    return f" ({hint})" if hint else ""


def _resolve_all(policy: Policy) -> list[Any]:
    """The objects behind the policy's denied module attributes and functions."""
    import importlib
    import sys

    found = []
    pairs = [(mod, name) for mod, names in policy.denied_module_attributes for name in names]
    pairs += [(f.rsplit(".", 1)[0], f.rsplit(".", 1)[1]) for f in policy.functions.denied if "." in f]
    for mod, name in pairs:
        module = sys.modules.get(mod)
        if module is None:
            try:
                module = importlib.import_module(mod)
            except Exception:
                continue  # not installed here: nothing to refuse
        value = getattr(module, name, None)
        # Only callables and classes: shared constants (None, True, 0) must stay usable.
        if value is not None and (callable(value) and not isinstance(value, _ModuleType)):
            found.append(value)
    return found


# --- class creation: no raw dunders through type(name, bases, dict) ----------------------------

# Dunders a dict-made class may carry (what a class statement could define).
_TYPE_DICT_DUNDERS = (DEFINABLE_DUNDERS | frozenset(
    ["__module__", "__qualname__", "__doc__", "__slots__", "__annotations__", "__dict__",
     "__weakref__", "__orig_bases__", "__firstlineno__", "__static_attributes__"]
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
            found = type(args[0])
            return CaveType if found is type or found is _CaveTypeMeta else found
        if len(args) != 3 or not isinstance(args[2], dict):
            raise TypeError("type() takes 1 or 3 arguments")
        for key in args[2]:
            if type(key) is not str:
                raise AccessDenied("class attribute names must be plain strings")
            if is_reserved(key) and key not in _TYPE_DICT_DUNDERS:
                raise AccessDenied(f"type(): a class may not define '{key}'; "
                                   "use a class statement with ordinary methods")
        return type(*args, **kwargs)


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
