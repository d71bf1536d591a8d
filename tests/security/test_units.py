"""Direct checks of the security helpers' refusal paths (no worker needed)."""

from __future__ import annotations

import io
import os
import pickle
import types

import pytest

from cavelite.errors import UntrustedTypeError
from cavelite.security import audit, decode
from cavelite.security.guards import (
    AccessDenied,
    CaveType,
    guard_getstate_hook,
    is_cell_made,
    safe_format,
    safe_format_map,
)


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
