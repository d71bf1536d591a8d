"""Direct checks of the security helpers' refusal paths (no worker needed)."""

from __future__ import annotations

import io
import os
import pickle
import types

import pytest

from cavelite.errors import UntrustedTypeError
from cavelite.security import ImportRule, Policy, audit, decode
from cavelite.security.guards import (
    AccessDenied,
    CaveType,
    Guard,
    cell_class,
    guard_getstate_hook,
    is_cell_made,
)
from cavelite.security.library_doors import checked_formatter, safe_format, safe_format_map


@pytest.mark.parametrize("template", [
    "{0.__class__}", "{0[k].__class__}", "{0.real._x}", "{0:{1.__class__}}", "{0.f_globals}",
])
def test_format_fields_reaching_internals_are_refused(template: str) -> None:
    with pytest.raises(AccessDenied):
        safe_format(template, 1, 2)


def test_format_item_keys_and_plain_fields_are_allowed() -> None:
    assert safe_format("{0[__k__]}-{0[a]}", {"__k__": 1, "a": 2}) == "1-2"
    assert safe_format("{x.real:>{w}}", x=3, w=2) == " 3"
    assert safe_format_map("{a}", {"a": 1}) == "1"
    with pytest.raises(AccessDenied):
        safe_format_map("{a.__class__}", {"a": 1})


def test_unsafe_source() -> None:
    assert audit.unsafe_source("int") is None
    assert audit.unsafe_source("list[Point]") is None
    assert audit.unsafe_source("().__class__") == "__class__"
    assert audit.unsafe_source(b"x.format") == "format"
    assert audit.unsafe_source("_private") == "_private"


def test_is_cell_made_and_type_dicts() -> None:
    made = types.new_class("Made", exec_body=lambda ns: ns.update(__module__="__main__"))
    assert is_cell_made(made) and is_cell_made(made())
    assert not is_cell_made(int) and not is_cell_made(1)
    assert CaveType(1) is int and CaveType(int) is CaveType
    assert CaveType("Ok", (), {"__init__": lambda self: None}).__name__ == "Ok"
    with pytest.raises(AccessDenied):
        CaveType("Evil", (), {"__reduce__": lambda self: (os.system, ("true",))})
    with pytest.raises(TypeError):
        CaveType("a", "b")


def test_getstate_hook_refuses_dunder_keys() -> None:
    assert guard_getstate_hook(lambda self: ({"a": 1}, None))(object()) == ({"a": 1}, None)
    with pytest.raises(AccessDenied):
        guard_getstate_hook(lambda self: {"__array_interface__": {}})(object())


class _Reducer:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, ("true",))


def test_restricted_unpickler_refusals() -> None:
    assert decode.loads_value(pickle.dumps({"a": [1, 2.5]})) == {"a": [1, 2.5]}
    with pytest.raises(UntrustedTypeError, match="trusted=True"):
        decode.loads_value(pickle.dumps(_Reducer()))
    # getattr is only ZoneInfo's private constructor, never an arbitrary method.
    evil = pickle.dumps(getattr)  # builtins.getattr by reference
    unpickler = decode.GuardedUnpickler(io.BytesIO(evil))
    with pytest.raises(UntrustedTypeError, match="refusing getattr"):
        unpickler.load()(dict, "fromkeys")
    with pytest.raises(UntrustedTypeError, match="persistent"):
        decode.GuardedUnpickler(io.BytesIO(b"")).persistent_load(("type", "Unknown"))
    assert decode.loads_plain(pickle.dumps(("value", 1))) == ("value", 1)
    with pytest.raises(UntrustedTypeError):
        decode.loads_plain(pickle.dumps(("value", decode.GuardedUnpickler)))


# --- layer 2 helpers added for issue 8 (no worker needed) ---------------------------------------

def _guard() -> Guard:
    return Guard(Policy.default())


def test_checked_formatter_covers_every_route_to_str_format() -> None:
    import numpy as np

    class S(str):
        def format(self, *a: object) -> str:  # a subclass's own format is its business
            return "own"

    assert checked_formatter("format", str.format) is safe_format
    assert checked_formatter("format", np.str_.format) is safe_format
    assert checked_formatter("format_map", str.format_map) is safe_format_map
    bound = checked_formatter("format", np.str_("{0.__class__}").format)
    with pytest.raises(AccessDenied):
        bound(1)
    assert checked_formatter("format", np.str_("{0:>3}").format)(1) == "  1"
    assert checked_formatter("format", S("x").format)() == "own"


def test_private_modules_are_not_importable() -> None:
    rule = ImportRule()
    assert rule.allows("numpy.linalg") and rule.allows("pandas.core.frame")
    assert not rule.allows("numpy._core.multiarray")
    assert not rule.allows("pandas._libs")
    assert not rule.allows("pandas.core.computation.expr")


def test_metaclasses_are_handed_out_as_checked_views() -> None:
    import abc

    view = cell_class(abc.ABCMeta)
    assert cell_class(abc.ABCMeta) is view and cell_class(type) is CaveType
    assert cell_class(type(view)) is CaveType  # the view's own metaclass never leaks
    assert isinstance(abc.ABC, view) and view == abc.ABCMeta and repr(view) == repr(abc.ABCMeta)
    assert view("Ok", (), {"f": 1}).f == 1
    with pytest.raises(AccessDenied, match="__array_interface__"):
        view("Evil", (), {"__array_interface__": {}})
    with pytest.raises(AccessDenied, match="module"):
        CaveType("Evil", (), {"__module__": "json"})
    with pytest.raises(AttributeError):
        view._abc_registry  # noqa: B018


def test_library_doors_refuse_what_is_not_the_cells() -> None:
    import functools
    import json
    import random

    guard = _guard()
    doors = guard.doors
    wraps, update_wrapper = doors.replacement(functools.wraps), doors.replacement(functools.update_wrapper)
    with pytest.raises(AccessDenied, match="not defined by the cell"):
        update_wrapper(random.Random, json.dumps)
    assert random.Random.__module__ == "random"
    made = types.new_class("Made", exec_body=lambda ns: ns.update(__module__="__main__"))
    with pytest.raises(AccessDenied, match="standard attributes"):
        update_wrapper(made(), json.dumps, assigned=("__array_interface__",))
    decorated = wraps(json.dumps)(made)
    assert decorated.__module__ == "__main__" and decorated.__doc__ == json.dumps.__doc__
    with pytest.raises(AccessDenied):
        doors.replacement(functools.total_ordering)(random.Random)
    assert doors.replacement(json.dumps) is None


def test_dataclass_stand_in_checks_every_field_name() -> None:
    import dataclasses

    dataclass = _guard().doors.replacement(dataclasses.dataclass)
    ok = types.new_class("Ok", exec_body=lambda ns: ns.update(
        __module__="__main__", __annotations__={"x": int}, x=1))
    assert dataclass(ok)().x == 1
    evil = types.new_class("Evil", exec_body=lambda ns: ns.update(
        __module__="__main__", __annotations__={"x, print(1)": int}))
    with pytest.raises(AccessDenied, match="identifiers"):
        dataclass(frozen=True)(evil)


def test_get_type_hints_stand_in_uses_the_cells_builtins() -> None:
    import typing

    guard = _guard()
    hints = guard.doors.replacement(typing.get_type_hints)
    made = types.new_class("Made", exec_body=lambda ns: ns.update(
        __module__="__main__", __annotations__={"x": "getattr", "y": "int"}))
    found = hints(made)
    assert found["x"] == guard.getattr and found["y"] is int  # never builtins.getattr
    fn = types.FunctionType((lambda x: x).__code__, {"__builtins__": {}})
    fn.__annotations__ = {"x": "open"}
    with pytest.raises(NameError):
        hints(fn, globalns={})


def test_check_public_name() -> None:
    guard = _guard()
    guard.check_public_name("sum")
    for name in ("_mgr", "__class__", "eval", "query", "format", "to_pickle", "f_globals"):
        with pytest.raises(AccessDenied):
            guard.check_public_name(name)
