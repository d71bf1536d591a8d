"""The host's restricted decoder against pickles a compromised worker would craft.

Beyond "only allowlisted globals": decoding must never change an object the
host already had. Each crafted pickle aims ``BUILD`` / ``SETITEM(S)`` /
``APPEND(S)`` at something pre-existing (an allowlisted class, numpy's cached
dtype, pandas' NA, an injected class or enum member, a host object passed by
reference), and each test checks that the object is unchanged, not only that
an error was raised.
"""

from __future__ import annotations

import enum
import pickle
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from cavelite import UntrustedTypeError
from cavelite.security import decode


def piece(obj: object) -> bytes:
    """A value's opcodes without PROTO/STOP, to splice into a crafted stream."""
    return pickle.dumps(obj, protocol=2)[2:-1]


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def stream(*parts: bytes) -> bytes:
    return b"\x80\x05" + b"".join(parts) + b"."


def slotstate(**attrs: object) -> bytes:
    """(None, {attrs}): BUILD's form that calls setattr() on its target."""
    return b"N" + b"}" + b"".join(piece(k) + piece(v) + b"s" for k, v in attrs.items()) + b"\x86"


class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclass
class Point:
    x: int
    y: int


class Account:
    def __init__(self) -> None:
        self.balance = 100


@pytest.mark.parametrize("module, name", [("fractions", "Fraction"), ("collections", "Counter"),
                                          ("pandas", "DataFrame")])
def test_build_on_an_allowlisted_class_is_refused(module: str, name: str) -> None:
    # With pickle.loads, the first two get a `hijacked` class attribute (setattr on the class).
    import importlib

    cls = getattr(importlib.import_module(module), name)
    evil = stream(glob(module, name), slotstate(hijacked="yes"), b"b")
    with pytest.raises(UntrustedTypeError, match="did not create"):
        decode.loads_value(evil)
    assert not hasattr(cls, "hijacked")


def test_build_on_numpys_cached_dtype_is_refused() -> None:
    float64 = np.dtype("f8")
    state = piece((3, "<", None, None, None, 4, 4, 0))  # what dtype.__setstate__ would take
    evil = stream(glob("numpy", "dtype"), piece(("f8", False, False)), b"R", state, b"b")
    with pytest.raises(UntrustedTypeError, match="did not create"):
        decode.loads_value(evil)
    assert np.dtype("f8") is float64 and float64.itemsize == 8 and float64.alignment == 8


def test_build_on_pandas_na_is_refused() -> None:
    evil = stream(glob("pandas", "NA"), slotstate(hijacked=1), b"b")
    with pytest.raises(UntrustedTypeError):
        decode.loads_value(evil)
    assert not hasattr(pd.NA, "hijacked")


def test_build_and_setitems_on_an_injected_class_are_refused() -> None:
    types = {"Point": Point}
    build = stream(b"\x8c\x04type\x8c\x05Point\x86Q", slotstate(x="hijacked"), b"b")
    setitems = stream(b"\x8c\x04type\x8c\x05Point\x86Q", b"(", piece("k"), piece(1), b"u")
    for evil in (build, setitems):
        with pytest.raises(UntrustedTypeError, match="did not create"):
            decode.loads_value(evil, types=types)
    assert not hasattr(Point, "k") and "x" not in vars(Point)


def test_build_on_an_injected_enum_member_is_refused() -> None:
    evil = stream(b"\x8c\x04type\x8c\x05Color\x86Q", piece((1,)), b"R", b"}",
                  piece("_value_"), piece(99), b"s", b"b")
    with pytest.raises(UntrustedTypeError, match="did not create"):
        decode.loads_value(evil, types={"Color": Color})
    assert Color.RED.value == 1 and Color(1) is Color.RED


def test_a_memoized_global_is_still_not_a_target() -> None:
    evil = stream(glob("pandas", "Series"), b"\x94", b"0", b"h\x00", slotstate(sum=0), b"b")
    with pytest.raises(UntrustedTypeError):
        decode.loads_value(evil)
    assert callable(pd.Series.sum)


def test_a_host_reference_is_an_inert_placeholder_while_decoding() -> None:
    account = Account()
    refs = {7: account}
    ref = piece(("remote", 7)) + b"Q"
    attacks = {
        "build": stream(ref, b"}", piece("balance"), piece(10**9), b"s", b"b"),
        "append": stream(ref, piece(1), b"a"),
        "setitem": stream(ref, piece("k"), piece(1), b"s"),
        "call": stream(ref, piece(("x",)), b"R"),
    }
    for name, evil in attacks.items():
        with pytest.raises((UntrustedTypeError, TypeError, AttributeError)):
            decode.loads_value(evil, refs=refs)
        assert account.balance == 100 and vars(account) == {"balance": 100}, name


def test_host_references_come_back_inside_plain_containers_only() -> None:
    account = Account()
    refs = {7: account}
    ref = piece(("remote", 7)) + b"Q"
    value = decode.loads_value(stream(b"(", ref, piece("a"), ref, b"\x87", b"]", ref, b"a",
                                      b"\x86"), refs=refs)
    assert value == ((account, "a", account), [account])
    assert value[0][0] is account and value[1][0] is account
    in_array = stream(glob("numpy", "array"), b"(]", ref, b"atR")
    with pytest.raises(UntrustedTypeError):
        decode.loads_value(in_array, refs=refs)


SAMPLES = [
    {"a": [1, 2.5, None], "b": ("x", b"y"), "c": {1, 2}},
    np.arange(12, dtype="int32").reshape(3, 4),
    np.array([1.5, np.nan]),
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "t": pd.to_datetime(["2024-01-01", "2024-02-01"])}),
    pd.Series(pd.Categorical(["lo", "hi", "lo"]), name="level"),
    pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC"),
    pd.DataFrame({"n": pd.array([1, None], dtype="Int64")}).set_index(pd.Index(["p", "q"])),
]


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: type(v).__name__)
def test_legit_values_round_trip(value: object) -> None:
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    back = decode.loads_value(body, buffers)
    if hasattr(value, "equals"):
        assert value.equals(back)  # type: ignore[union-attr]
    elif isinstance(value, np.ndarray):
        np.testing.assert_array_equal(back, value)
    else:
        assert back == value


def test_injected_types_and_enums_round_trip() -> None:
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return ("type", obj.__name__) if obj in (Point, Color) else None  # type: ignore[attr-defined]

    import io

    bio = io.BytesIO()
    Pickler(bio, protocol=5).dump([Point(1, 2), Color.BLUE])
    back = decode.loads_value(bio.getvalue(), types={"Point": Point, "Color": Color})
    assert back == [Point(1, 2), Color.BLUE] and back[1] is Color.BLUE


def test_arrow_backed_strings_round_trip_and_a_forged_arrow_array_is_refused() -> None:
    pa = pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"s": pd.array(["x", "yy", None], dtype="str"), "n": [1, 2, 3]})
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(frame, protocol=5, buffer_callback=buffers.append)
    assert decode.loads_value(body, buffers).equals(frame)
    # The same array with its offsets pointing past its data: C++ would read out of bounds.
    good = pickle.dumps(pa.array(["ab", "c"]), protocol=5)
    offsets = np.array([0, 2, 3], dtype="int32").tobytes()
    assert good.count(offsets) == 1
    evil = good.replace(offsets, np.array([0, 2, 1 << 30], dtype="int32").tobytes())
    with pytest.raises(pa.ArrowInvalid):
        decode.loads_value(evil)
