"""Layer 2: `ModuleView`, what a cell gets instead of a module.

Modules never reach a cell as modules: the guarded ``__import__`` and every
attribute read that yields a module hand out a view that polices its own
attributes (private names, policy-denied attributes and submodules, library
doors replaced by checked stand-ins, shared mutable tables as read-only
copies). Safe values are cached on the view, so the next read is a native
dict lookup.
"""

from __future__ import annotations

import string
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .classes import cell_class
from .library_doors import AccessDenied

if TYPE_CHECKING:
    from .guards import Guard

_ModuleType = types.ModuleType

_MUTABLE_CONTAINERS: dict[type, Callable[[Any], Any]] = {
    dict: types.MappingProxyType, list: tuple, set: frozenset,
}


def _module_hint(module: str, name: str) -> str:
    from .policy import attribute_hint

    hint = attribute_hint(module, name)
    return f" ({hint})" if hint else ""


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
        replacement = guard.doors.replacement(value)
        if replacement is not None:
            value = replacement
        elif guard.denied_object(value) or guard.from_denied_module(value):
            # The same function re-exported under another module's name is still refused.
            raise AccessDenied(f"'{modname}.{name}' is not available in the cave"
                               f"{_module_hint(modname, name)}")
        elif isinstance(value, type) and issubclass(value, string.Formatter):
            raise AccessDenied(f"'{modname}.{name}' is not available in the cave")
        elif isinstance(value, type) and issubclass(value, type):
            value = cell_class(value)  # abc.ABCMeta, enum.EnumType: checked class creation
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
        from .guards import Guard
        from .policy import Policy

        _CURRENT_GUARD = Guard(Policy.default())
    return _CURRENT_GUARD


def set_current_guard(guard: Guard) -> None:
    """Called once by the worker, with the guard bound to its session's policy."""
    global _CURRENT_GUARD
    _CURRENT_GUARD = guard
