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

import builtins
import dataclasses
import string
import types
from collections.abc import Callable
from typing import Any

from .classes import (
    CELL_MODULE as CELL_MODULE,
)
from .classes import (
    CELL_TYPES,
    CaveType,
    cell_class,
    check_self,
    guard_getattr_hook,
    guard_getstate_hook,
    is_cell_made,
)
from .figure_doors import harden_matplotlib
from .library_doors import (
    AccessDenied,
    LibraryDoors,
    checked_formatter,
    harden_enum,
    harden_pandas,
    harden_typing,
)
from .modules import ModuleView
from .modules import current_guard as current_guard
from .modules import set_current_guard as set_current_guard
from .policy import Policy
from .transformer import (
    READABLE_DUNDERS,
    REFUSED_ATTRIBUTES,
    SENSITIVE_ATTRIBUTES,
)

_MISSING = object()
_ModuleType = types.ModuleType
_FunctionType = types.FunctionType


class ImportDenied(ImportError):
    """A cell imported a module that the policy does not allow."""


class Guard:
    """The guard set for one worker, bound to its policy."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self._views: dict[str, ModuleView] = {}
        self.remote_types: tuple[type, ...] = ()
        self._denied_names = policy.attributes.denied
        self._denied_ids: frozenset[int] | None = None
        self._evaluator_ids: frozenset[int] | None = None
        self._builtins: dict[str, Any] | None = None
        self.doors = LibraryDoors(self.owns, self.cell_builtins)

    def denied_object(self, value: Any) -> bool:
        """Whether ``value`` is one of the policy's denied functions, under any module name."""
        if self._denied_ids is None:
            self._denied_ids = frozenset(id(v) for v in _resolve_all(self.policy))
        return id(value) in self._denied_ids

    def from_denied_module(self, value: Any) -> bool:
        """Whether ``value`` is a function or class defined in a module the policy denies."""
        if not isinstance(value, (type, _FunctionType, types.BuiltinFunctionType)):
            return False
        module = getattr(value, "__module__", None)
        return isinstance(module, str) and "." in module and _denied_prefix(module, self.policy)

    def owns(self, obj: Any) -> bool:
        """Whether ``obj`` is the cell's own: a class it defined, an instance, or a function.

        A cell's function is recognised by its globals, which are a namespace carrying
        this guard; ``__module__`` (which library code may set) is not trusted for it.
        """
        if type(obj) is _FunctionType:
            return bool(obj.__globals__.get("_getattr_") == self.getattr)
        return is_cell_made(obj)

    def cell_builtins(self) -> dict[str, Any]:
        """The built-ins of the cell namespaces (for text a library evaluates for a cell)."""
        if self._builtins is None:
            self._builtins = self.builtins()
        return self._builtins

    def check_public_name(self, name: str) -> None:
        """Names a library looks up for a cell (``df.agg(name)``) follow the cell's own rules."""
        if name[:1] == "_" or name in REFUSED_ATTRIBUTES or name in SENSITIVE_ATTRIBUTES \
                or name in self._denied_names:
            raise AccessDenied(f"'{name}' is not a public method the cave lets a library "
                               "call for you; call it directly")

    def _numpy_denied(self, name: str) -> bool:
        import numpy

        return self.policy.module_attribute_denied("numpy", name) or \
            self.denied_object(getattr(numpy, name, None))

    def harden(self) -> None:
        """Put the cave's checks into library dispatch points (process-wide, so only where
        cells run: a namespace is being made, or a cell imports pandas)."""
        harden_enum()
        harden_typing()
        harden_pandas(self.check_public_name, self._numpy_denied)
        harden_matplotlib()

    # --- modules ---------------------------------------------------------------------

    def view(self, module: types.ModuleType) -> ModuleView:
        name = module.__name__
        view = self._views.get(name)
        if view is None:
            if not self.policy.imports.allows(name):
                raise AccessDenied(f"module '{name}' is not available in the cave")
            if name.startswith("pandas"):
                self.harden()  # imported after this guard was made (no preload)
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
        view = self.view(module)
        # The statement then reads `b` (or `c`) from the view, and when that read fails,
        # CPython falls back to sys.modules["a.b"]: the raw module. Every name it will
        # read must therefore be readable through the views, or the import is refused.
        steps = [item for item in fromlist if item != "*"] if fromlist else name.split(".")[1:]
        target: Any = view
        for part in steps:
            try:
                found = getattr(target, part)
            except AttributeError as exc:
                raise ImportDenied(f"import of '{name}' is not allowed: {exc}") from None
            target = found if not fromlist else target
        return view

    # --- attributes ------------------------------------------------------------------

    def getattr(self, obj: Any, name: Any, default: Any = _MISSING) -> Any:
        if type(name) is not str:
            raise AccessDenied("attribute names must be plain strings")
        if name[:1] == "_":
            if name not in READABLE_DUNDERS:
                if name[:2] == "__" and name[-2:] == "__":
                    raise AccessDenied(f"'{name}' is a protected attribute")
                if not is_cell_made(obj) and not self.owns(obj) and not (
                        name in _NAMEDTUPLE_API and _is_namedtuple(obj)):
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
        if isinstance(value, type) and issubclass(value, type):
            return cell_class(value)  # obj.__class__ of a class: type() and metaclasses checked
        if name in _SPECIAL_NAMES:
            return self._special(obj, name, value)
        return value

    def hasattr(self, obj: Any, name: Any) -> bool:
        try:
            self.getattr(obj, name)
        except AttributeError:
            return False
        return True

    def _special(self, obj: Any, name: str, value: Any) -> Any:
        if name in SENSITIVE_ATTRIBUTES:
            return self._sensitive(obj, name, value)
        if name == "_field_defaults":
            if type(value) is dict and not self.owns(obj):
                return types.MappingProxyType(value)  # a library namedtuple's table, shared
            return value
        return self._checked_dunder(obj, name, value)

    def _sensitive(self, obj: Any, name: str, value: Any) -> Any:
        if name in ("format", "format_map"):
            return checked_formatter(name, value)
        if isinstance(obj, string.Formatter) or (isinstance(obj, type) and issubclass(obj, string.Formatter)):
            raise AccessDenied("string.Formatter is not available in the cave")
        replacement = self.doors.replacement(value)  # operator.attrgetter / methodcaller
        if replacement is not None:
            return replacement
        if name in ("eval", "query") and id(getattr(value, "__func__", value)) in self._evaluators():
            raise AccessDenied(
                f"{name}() evaluates text without the cave's guards; use boolean masks and "
                "operators instead, e.g. df[(df.amount > 10) & (df.region == 'North')]"
            )
        return value

    def _evaluators(self) -> frozenset[int]:
        """pandas' text evaluators (``DataFrame.eval``/``query``, ``pd.eval``), by identity.

        By identity, so that a subclass, an unbound ``pd.DataFrame.query`` or a bound
        method reached by any name is refused, and a cell's own ``query`` is not.
        """
        if self._evaluator_ids is None:
            import sys

            pandas = sys.modules.get("pandas")
            if pandas is None:
                return frozenset()  # nothing to refuse yet; decided once pandas is here
            frame = vars(pandas.DataFrame)
            self._evaluator_ids = frozenset(id(f) for f in (frame["eval"], frame["query"], pandas.eval))
        return self._evaluator_ids

    def _checked_dunder(self, obj: Any, name: str, value: Any) -> Any:
        """``__new__``, ``__init__``, ``__init_subclass__`` and annotation tables, checked.

        ``object.__new__(Cls)`` builds an object that skips ``Cls.__init__``'s checks and
        ``Cls.__init__(obj, ...)`` re-initialises one that exists (a shared module view,
        a remote proxy): both only for the cell's own classes and objects. A library's
        annotation tables are shared, so they are handed out read-only.
        """
        if name == "__annotations__" or name == "__dataclass_fields__":
            if type(value) is dict and not self.owns(obj):
                return types.MappingProxyType(value)
            return value
        bound_to = getattr(value, "__self__", None) if type(value) in _BOUND_TYPES else _MISSING
        if name == "__init_subclass__":
            if not (isinstance(bound_to, type) and is_cell_made(bound_to)):
                raise AccessDenied("__init_subclass__ may only be called for a class the cell defines")
            return value
        if name == "__init__" and bound_to is not _MISSING:
            if not self.owns(bound_to):
                raise AccessDenied(f"cannot re-initialise {_describe(bound_to)} from a cell")
            return value
        return _checked_constructor(value, name, self.owns)

    def write(self, obj: Any) -> Any:
        if isinstance(obj, _UNWRITABLE) and not self.owns(obj):
            raise AccessDenied(f"cannot modify {_describe(obj)} from a cell")
        if self.remote_types and isinstance(obj, self.remote_types):
            raise AccessDenied("remote objects are read-only from a cell; call their methods")
        return obj

    def write_private(self, obj: Any) -> Any:
        if not self.owns(obj):
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
        if name[:1] == "_" and (name[:2] == "__" or not self.owns(obj)):
            raise AccessDenied(f"cannot set '{name}' from a cell")

    def namespace_globals(self) -> dict[str, Any]:
        """The guard entries every cell namespace carries."""
        self.harden()
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
        """A fresh restricted built-ins dict (each namespace gets its own)."""
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


# dataclasses.Field: a library dataclass's fields decide the names dataclasses.asdict()
# reads and the code @dataclass generates for its subclasses.
_UNWRITABLE = (type, _ModuleType, ModuleView, _FunctionType, types.BuiltinFunctionType,
               types.MethodType, types.CodeType, types.FrameType, dataclasses.Field)


# The namedtuple API is documented public, underscores and all (rows of df.itertuples()).
_NAMEDTUPLE_API = frozenset(["_asdict", "_replace", "_fields", "_make", "_field_defaults"])
_CHECKED_DUNDERS = frozenset(["__new__", "__init__", "__init_subclass__", "__annotations__",
                              "__dataclass_fields__"])
# Names whose value the guard checks or replaces after reading it (one set lookup).
_SPECIAL_NAMES = SENSITIVE_ATTRIBUTES | _CHECKED_DUNDERS | {"_field_defaults"}
_BOUND_TYPES = (types.MethodType, types.BuiltinMethodType, types.MethodWrapperType)


def _is_namedtuple(obj: Any) -> bool:
    cls = obj if isinstance(obj, type) else type(obj)
    return issubclass(cls, tuple) and type(getattr(cls, "_fields", None)) is tuple


def _checked_constructor(func: Callable[..., Any], name: str,
                         owns: Callable[[Any], bool]) -> Callable[..., Any]:
    """``Cls.__new__`` / ``Cls.__init__`` read from a class: callable on the cell's own only."""
    if name == "__new__":
        def checked(target: Any, /, *args: Any, **kwargs: Any) -> Any:
            if not (isinstance(target, type) and is_cell_made(target)):
                what = getattr(target, "__name__", type(target).__name__)
                raise AccessDenied(f"__new__ builds objects without their constructor; call "
                                   f"{what}(...) instead (only classes the cell defines may "
                                   "use __new__ directly)")
            return func(target, *args, **kwargs)
    else:
        def checked(target: Any, /, *args: Any, **kwargs: Any) -> Any:
            if not owns(target):
                raise AccessDenied(f"cannot re-initialise {_describe(target)} from a cell")
            return func(target, *args, **kwargs)
    checked.__name__ = getattr(func, "__name__", name)
    checked.__qualname__ = getattr(func, "__qualname__", name)
    checked.__doc__ = getattr(func, "__doc__", None)
    return checked


def _denied_prefix(module: str, policy: Policy) -> bool:
    parts = module.split(".")
    return any(".".join(parts[: i + 1]) in policy.imports.denied for i in range(len(parts)))


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return f"class {obj.__name__}"
    if isinstance(obj, (ModuleView, _ModuleType)):
        return "a module"
    return f"{type(obj).__name__} objects"


def _apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


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


