"""The host's decoders against pickles that cost more than they weigh, and the values they keep.

Each hostile pickle here is small and would make the decoder allocate far more
than its size, hash keys chosen to collide, call a reconstructor with a size
or a power of ten, rebuild a dtype with lying flags, or name a file as a time
zone. The checks are on the outcome (refused, quickly, without building it);
the same decoders must still round-trip the legitimate values next to them
(the restricted forms: int keys, sets, Decimal, Fraction, structured dtypes,
tz-aware datetimes).
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import pickle
import time
import zoneinfo

import numpy as np
import pandas as pd
import pytest

from cavelite import UntrustedTypeError
from cavelite.errors import ProtocolError
from cavelite.runtime import messages, wire
from cavelite.security import decode

M = (1 << 61) - 1  # k * M hashes to 0 for every k


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def piece(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=2)[2:-1]


def text(s: str) -> bytes:
    data = s.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


def stream(*parts: bytes) -> bytes:
    return b"\x80\x05" + b"".join(parts) + b"."


def colliding(n: int) -> bytes:
    return b"".join(piece(k * M) for k in range(1, n + 1))


def refused_quickly(fn, *args, exc=UntrustedTypeError, **kwargs) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    with pytest.raises(exc):
        fn(*args, **kwargs)
    assert time.monotonic() - started < 5  # generous: the attacks take minutes when they work


# --- memory: one opcode, 216 bytes ----------------------------------------------------------

def test_a_flood_of_empty_sets_is_refused_by_the_budget() -> None:
    body = stream(b"(" + b"\x8f" * 3_000_000 + b"l")
    refused_quickly(decode.loads_value, body, budget=64 << 20, exc=decode.DecodeLimitError)


def test_a_flood_of_references_is_refused_by_the_budget() -> None:
    # One list, then 1.5 million BINGETs of it: 2 bytes each, a reference each.
    body = stream(b"]\x94(" + b"h\x00" * 1_500_000 + b"l")
    refused_quickly(decode.loads_value, body, budget=16 << 20, exc=decode.DecodeLimitError)


def test_large_honest_values_fit_their_budget() -> None:
    value = {"text": "x" * 20_000_000, "rows": [{"id": i, "v": i / 3} for i in range(20_000)]}
    body = pickle.dumps(value, protocol=5)
    assert decode.loads_value(body, budget=64 << 20) == value


# --- hash collisions ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["dict", "set", "frozenset", "dict_opcode"])
def test_colliding_keys_are_refused_in_plain_data(shape: str) -> None:
    keys = colliding(20_000)
    body = {
        "dict": stream(b"}(" + b"".join(piece(k * M) + b"N" for k in range(1, 20_001)) + b"u"),
        "set": stream(b"\x8f(" + keys + b"\x90"),
        "frozenset": stream(b"(" + keys + b"\x91"),
        "dict_opcode": stream(b"(" + b"".join(piece(k * M) + b"N" for k in range(1, 20_001)) + b"d"),
    }[shape]
    refused_quickly(decode.loads_value, body, exc=decode.DecodeLimitError)


def test_colliding_keys_in_small_batches_are_refused() -> None:
    # What pickle itself writes: SETITEMS in batches; the collisions add up across them.
    batch = b"".join(b"(" + b"".join(piece(k * M) + b"N" for k in range(i, i + 500)) + b"u"
                     for i in range(1, 20_000, 500))
    refused_quickly(decode.loads_value, stream(b"}" + batch), exc=decode.DecodeLimitError)


@pytest.mark.parametrize("build", ["set", "frozenset", "dict_opcode", "setitems_on_a_counter"])
def test_colliding_keys_are_refused_in_the_guarded_path(build: str) -> None:
    keys = colliding(20_000)
    body = {
        # A global anywhere sends the whole pickle down the guarded path.
        "set": stream(glob("builtins", "set") + b"(" + keys + b"l\x85R"),
        "frozenset": stream(glob("builtins", "complex") + b")R0(" + keys + b"\x91"),
        "dict_opcode": stream(glob("builtins", "complex") + b")R0("
                              + b"".join(piece(k * M) + b"N" for k in range(1, 20_001)) + b"d"),
        "setitems_on_a_counter": stream(glob("collections", "Counter") + b")R("
                                        + b"".join(piece(k * M) + b"K\x01" for k in range(1, 20_001))
                                        + b"u"),
    }[build]
    refused_quickly(decode.loads_value, body, exc=decode.DecodeLimitError)


def test_dicts_and_sets_with_realistic_int_keys_round_trip() -> None:
    value = [{i: str(i) for i in range(200_000)}, set(range(-5, 100_000)), {-1: "a", -2: "b"},
             frozenset({0.5, 1.5, 2.0}), {(1, 2): "pair", (2, 1): "other"},
             collections.Counter({7: 2, 8: 1}), collections.OrderedDict([(3, "c"), (1, "a")])]
    for body in (pickle.dumps(value, protocol=5), pickle.dumps(value[:4], protocol=5)):
        back = decode.loads_value(body)
        assert back == value[:len(back)]


# --- reconstructors called with a size ------------------------------------------------------

@pytest.mark.parametrize("body", [
    stream(glob("builtins", "bytearray") + piece(600_000_000) + b"\x85R"),
    stream(glob("builtins", "bytes") + piece(600_000_000) + b"\x85R"),
    stream(glob("builtins", "list") + glob("builtins", "range") + piece(20_000_000) + b"\x85R\x85R"),
    stream(glob("builtins", "set") + glob("builtins", "range") + piece(20_000_000) + b"\x85R\x85R"),
    stream(glob("numpy._core.multiarray", "_reconstruct") + glob("numpy", "ndarray")
           + piece((100_000_000,)) + b"C\x01O" + b"\x87R"),
    stream(glob("numpy", "ndarray") + piece((100_000_000,)) + text("O") + b"\x86R"),
    stream(glob("pandas", "Series") + b")" + b"}" + text("index") + glob("builtins", "range")
           + piece(100_000_000) + b"\x85R" + b"s\x92"),
    stream(glob("pandas.core.indexes.base", "_new_Index") + glob("pandas", "Index") + b"}"
           + text("data") + glob("builtins", "range") + piece(100_000_000) + b"\x85Rs\x86R"),
    stream(glob("copyreg", "_reconstructor") + glob("builtins", "list") + glob("builtins", "list")
           + glob("builtins", "range") + piece(20_000_000) + b"\x85R\x87R"),
], ids=["bytearray_n", "bytes_n", "list_of_range", "set_of_range", "reconstruct_shape",
        "ndarray_call", "series_new_with_args", "new_index_of_range", "copyreg_list"])
def test_a_reconstructor_never_allocates_from_a_size(body: bytes) -> None:
    refused_quickly(decode.loads_value, body)


@pytest.mark.parametrize("body", [
    stream(glob("fractions", "Fraction") + glob("decimal", "Decimal") + text("1e9999999")
           + b"\x85R\x85R"),
    stream(glob("decimal", "Decimal") + piece((1 << (1 << 22)) - 1) + b"\x85R"),
    stream(glob("decimal", "Decimal") + text("1e9999999") + b"\x85R"),
    stream(glob("decimal", "Decimal") + text("9" * 200_000) + b"\x85R"),
    stream(glob("fractions", "Fraction") + text("1e9999999") + b"\x85R"),
    stream(glob("fractions", "Fraction") + piece((1 << (1 << 20)) - 1) + piece(3) + b"\x86R"),
    stream(glob("builtins", "int") + text("9" * 100_000) + b"\x85R"),
], ids=["fraction_of_decimal", "decimal_of_bigint", "decimal_huge_exponent", "decimal_long_text",
        "fraction_of_text", "fraction_of_bigint", "int_of_long_text"])
def test_numbers_are_bounded_before_any_arithmetic(body: bytes) -> None:
    refused_quickly(decode.loads_value, body)


def test_numbers_within_bounds_round_trip() -> None:
    value = [decimal.Decimal("-1.25e-30"), decimal.Decimal("3.14159265358979323846264338327950"),
             decimal.Decimal("NaN"), decimal.Decimal("-Infinity"), decimal.Decimal("1e999999"),
             fractions.Fraction(2 ** 1000, 3), fractions.Fraction(-7, 2), 10 ** 4000, 1 + 2j]
    assert repr(decode.loads_value(pickle.dumps(value, protocol=5))) == repr(value)


def test_library_classes_take_no_arguments_to_new() -> None:
    stamp = stream(glob("pandas", "Timestamp") + b"(" + text("2020-01-01") + b"t}" + text("tz")
                   + text("UTC") + b"s\x92")
    refused_quickly(decode.loads_value, stamp)


# --- numpy dtypes whose flags lie --------------------------------------------------------------

class _Forged:
    def __init__(self, fields: dict, flags: int) -> None:  # type: ignore[type-arg]
        self.fields, self.flags = fields, flags

    def __reduce__(self):  # type: ignore[no-untyped-def]
        names = tuple(self.fields)
        return (np.dtype, ("V16", False, True), (3, "|", None, names, self.fields, 16, 1, self.flags))


@pytest.mark.parametrize("fields, flags", [
    ({"a": (np.dtype("O"), 0)}, 0),  # objects flagged as bytes: a pointer the worker wrote
    ({"a": (np.dtype("i8"), 0)}, 63),  # bytes flagged as objects: freed as pointers
    ({"a": (np.dtype("O"), 0), "b": (np.dtype("O"), 4)}, 63),  # overlapping object fields
], ids=["hidden_objects", "fake_objects", "overlapping_objects"])
def test_a_dtype_is_rebuilt_only_with_the_flags_numpy_computes(fields: dict, flags: int) -> None:  # type: ignore[type-arg]
    refused_quickly(decode.loads_value, pickle.dumps(_Forged(fields, flags), protocol=5))


@pytest.mark.parametrize("value", [
    np.zeros(3, dtype=[("a", "i4"), ("b", "f8", (2,))]),
    np.array([(1, "x"), (2, None)], dtype=[("n", "i4"), ("o", "O")]),
    np.zeros(2, dtype=np.dtype([("a", "i4"), ("b", "i1")], align=True)),
    np.zeros(2, dtype=[("x", [("y", "<i2"), ("z", "S3")])]),
    np.zeros(2, dtype={"names": ["a"], "formats": ["<i4"], "titles": ["The A"]}),
    np.array([1, 2], dtype="m8[s]"), np.array(["2020-01-01"], dtype="M8[D]"),
    np.array(["ab", "c"]), np.array([b"ab"]), np.zeros((2, 2), dtype="c16"),
    np.array([1.5, 2], dtype=">f4"), np.zeros(3, dtype="V4"),
], ids=lambda v: str(v.dtype)[:40])
def test_arrays_of_every_plain_dtype_round_trip(value: np.ndarray) -> None:
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    back = decode.loads_value(body, buffers)
    assert back.dtype == value.dtype and back.dtype.flags == value.dtype.flags
    assert back.tobytes() == value.tobytes() if not value.dtype.hasobject else \
        back.tolist() == value.tolist()


# --- time zones: a closed set of names, never a path ---------------------------------------------

@pytest.mark.parametrize("body", [
    stream(glob("zoneinfo", "ZoneInfo") + text("../../../../etc/passwd") + b"\x85R"),
    stream(glob("builtins", "getattr") + glob("zoneinfo", "ZoneInfo") + text("_unpickle") + b"\x86R"
           + text("Not/AZone") + b"\x88\x86R"),
    stream(glob("pandas._libs.tslibs.timestamps", "_unpickle_timestamp") + b"(" + piece(0) + b"N"
           + text("dateutil//etc/passwd") + piece(10) + b"tR"),
    stream(glob("pandas.core.indexes.base", "_new_Index") + glob("pandas", "DatetimeIndex") + b"}"
           + text("tz") + text("dateutil//etc/passwd") + b"s\x86R"),
    stream(glob("pandas", "DatetimeTZDtype") + b")\x81" + b"}" + text("tz") + text("tzlocal()")
           + b"sb"),
    stream(glob("pandas", "IntervalDtype") + text("datetime64[ns, dateutil//etc/passwd]")
           + b"\x85R"),
], ids=["zoneinfo_path", "zoneinfo_unpickle_unknown", "timestamp_tz_text", "index_tz_text",
        "dtype_state_tzlocal", "tz_inside_dtype_text"])
def test_a_time_zone_never_names_a_file(body: bytes) -> None:
    refused_quickly(decode.loads_value, body)


def test_tz_aware_values_round_trip() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    value = [pd.DataFrame({"t": pd.date_range("2024-03-30", periods=3, tz="Europe/Paris"),
                           "u": pd.date_range("2024-01-01", periods=3, tz="UTC"),
                           "n": [1, 2, 3]}),
             pd.Timestamp("2024-06-01 12:00", tz="Europe/Paris"),
             datetime.datetime(2024, 1, 1, tzinfo=paris),
             datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=5))),
             pd.Series([1], name="dateutil"), {"note": "dateutil is a library"}]
    buffers: list[pickle.PickleBuffer] = []
    back = decode.loads_value(pickle.dumps(value, protocol=5, buffer_callback=buffers.append),
                              buffers)
    assert back[0].equals(value[0]) and back[4].equals(value[4])
    assert back[1:4] + back[5:] == value[1:4] + value[5:]
    assert str(back[0]["t"].dt.tz) == "Europe/Paris"


# --- message heads: plain fields only ------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"\x80\x05(" + b"\x8f" * 3_000_000 + b"l.",
    b"\x80\x05X\x04\x00\x00\x00done}(" + b"".join(piece(k * M) + b"N" for k in range(1, 100_001))
    + b"u)\x87.",
], ids=["set_flood", "colliding_dict"])
def test_a_hostile_message_head_is_refused_before_it_is_built(body: bytes) -> None:
    refused_quickly(wire.decode, body, accept=messages.WORKER_KINDS, exc=ProtocolError)


def test_a_large_honest_head_decodes() -> None:
    reply = messages.Value("DataFrame", b"p" * 10_000_000)
    body, _ = wire.encode(reply)
    assert len(body) > decode.SMALL_PICKLE
    assert wire.decode(body, accept=messages.WORKER_KINDS)[0] == reply
