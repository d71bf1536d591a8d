"""The host's restricted decoder for bytes that come from a worker.

Promise 4: the host never unpickles worker bytes with an unrestricted
unpickler, and decoding never changes an object the host already had. A
pickle can name any importable callable, call it with any arguments, and
then *modify* what it got back (``BUILD`` runs ``__setstate__`` or writes
attributes; ``APPEND``/``SETITEM`` fill containers). So:

- `find_class` admits only an explicit allowlist: plain data,
  datetime/decimal/fractions, numpy and pandas reconstruction entry points;
  injected classes travel as persistent ids, never as importable names.
- Objects the decoder did not create itself in this decode (allowlisted
  globals, injected classes, anything a constructor returned that others
  already hold, such as an enum member or numpy's cached ``float64`` dtype)
  are never the target of ``BUILD``, ``APPEND(S)``, ``SETITEM(S)`` or
  ``ADDITEMS``. "Created here" is checked on the spot: right after a
  constructor returns, nothing but the decoder may hold a reference to it.
- A reference to a host object (a remote proxy the cell passes back) is
  decoded as an inert placeholder and swapped for the real object only
  after decoding, inside plain containers: no opcode ever sees it.

- Decoding costs what the bytes weigh (see "budgets" below): a memory budget
  charged as objects are made, at most `MAX_SAME_HASH` keys of one hash per
  dict or set, and reconstructors called only as honest pickles call them
  (`_call_policies`), so that no small pickle allocates from a size, computes
  a huge power, rebuilds a dtype with lying flags or names a file.

Plain data (no globals at all: lists, dicts, numbers, strings) cannot reach
any pre-existing object. Up to `SMALL_PICKLE` bytes it goes to the C
unpickler (nothing that small costs much); larger, to `decode_plain`, a
linear, budgeted decoder of plain opcodes. Anything else goes through the
guarded pure-Python unpickler below.
"""

from __future__ import annotations

import collections
import datetime
import functools
import io
import pickle
import struct
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import UntrustedTypeError

# (module, name) pairs a worker's pickle may name. Collected by pickling a
# broad sample of numpy/pandas/stdlib values; deliberately exact (no module
# prefixes): numpy and pandas also hold file readers and `exec`-based helpers.
SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [
        ("builtins", name)
        for name in (
            "complex", "list", "dict", "set", "frozenset", "tuple", "range", "slice",
            "bytearray", "bytes", "str", "int", "float", "bool", "object", "NoneType",
        )
    ]
    + [
        ("collections", "OrderedDict"), ("collections", "defaultdict"),
        ("collections", "Counter"), ("collections", "deque"),
        ("datetime", "date"), ("datetime", "datetime"), ("datetime", "time"),
        ("datetime", "timedelta"), ("datetime", "timezone"),
        ("decimal", "Decimal"), ("fractions", "Fraction"), ("uuid", "UUID"),
        ("zoneinfo", "ZoneInfo"), ("copyreg", "_reconstructor"),
        ("numpy", "dtype"), ("numpy", "ndarray"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy.ma", "MaskedArray"), ("numpy.ma.core", "_mareconstruct"),
        ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas._libs.sparse", "IntIndex"), ("pandas._libs.sparse", "BlockIndex"),
        ("pandas._libs.tslibs.nattype", "_nat_unpickle"),
        ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"),
        ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
        ("pandas.core.indexes.interval", "_new_IntervalIndex"),
        ("pandas.core.indexes.timedeltas", "_new_TimedeltaIndex"),
        ("pandas.core.indexes.period", "_new_PeriodIndex"),
        ("pandas.core.internals.managers", "BlockManager"),
        ("pandas.core.internals.managers", "SingleBlockManager"),
    ]
    + [
        ("pandas", name)
        for name in (
            "DataFrame", "Series", "Index", "RangeIndex", "MultiIndex", "DatetimeIndex",
            "TimedeltaIndex", "PeriodIndex", "IntervalIndex", "CategoricalIndex", "Categorical",
            "CategoricalDtype", "DatetimeTZDtype", "PeriodDtype", "IntervalDtype", "SparseDtype",
            "StringDtype", "BooleanDtype", "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype",
            "UInt8Dtype", "UInt16Dtype", "UInt32Dtype", "UInt64Dtype", "Float32Dtype",
            "Float64Dtype", "Interval", "Period", "Timestamp", "Timedelta", "NA",
        )
    ]
    + [
        ("pandas.arrays", name)
        for name in (
            "BooleanArray", "DatetimeArray", "FloatingArray", "IntegerArray", "PeriodArray",
            "SparseArray", "StringArray", "TimedeltaArray", "IntervalArray",
        )
    ]
    + [
        ("pandas._libs.tslibs.offsets", name)
        for name in (
            "Day", "Hour", "Minute", "Second", "Milli", "Micro", "Nano", "Week", "MonthEnd",
            "MonthBegin", "QuarterEnd", "QuarterBegin", "YearEnd", "YearBegin", "BusinessDay",
            "BusinessMonthEnd", "BusinessMonthBegin", "DateOffset",
        )
    ]
)

# pandas' Arrow-backed strings (the default string dtype with pyarrow installed).
# Arrow arrays are rebuilt from raw buffers and offsets, which C++ code then trusts:
# `_restore_array` is replaced by a version that validates the array fully first.
_ARROW_GLOBALS = frozenset([
    ("pandas.arrays", "ArrowStringArray"), ("pandas.arrays", "ArrowExtensionArray"),
    ("pandas", "ArrowDtype"), ("pyarrow.lib", "py_buffer"), ("pyarrow.lib", "type_for_alias"),
    ("pyarrow.lib", "_restore_array"),
])


def _validated_arrow_array(data: Any) -> Any:
    from pyarrow.lib import _restore_array

    array = _restore_array(data)
    array.validate(full=True)  # offsets and lengths inside their buffers, or ArrowInvalid
    return array


# getattr appears in pickles only as ZoneInfo's private constructor; any other
# use (getattr(DataFrame, "to_csv")...) would hand out arbitrary methods.
_SAFE_GETATTR = frozenset([("ZoneInfo", "_unpickle")])

# Persistent ids a worker may use: ("type", injected name) and ("remote", reference).
TYPE_TAG = "type"
REMOTE_TAG = "remote"


def _restricted_getattr(obj: Any, name: str) -> Any:
    if (getattr(obj, "__name__", None), name) in _SAFE_GETATTR and obj.__module__ == "zoneinfo":
        return _zoneinfo_unpickle  # ZoneInfo._unpickle(key, from_cache), its key checked first
    raise UntrustedTypeError(f"refusing getattr({obj!r}, {name!r}) in a worker's pickle")


class _NeedsGlobals(Exception):
    """The plain-data fast path met a global or a persistent id: use the guarded path."""


NeedsGlobals = _NeedsGlobals  # what `decode_plain` raises on an opcode it does not build


class PlainUnpickler(pickle.Unpickler):
    """The C unpickler, refusing every global and persistent id: plain data only."""

    def find_class(self, module: str, name: str) -> Any:
        raise _NeedsGlobals(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise _NeedsGlobals(pid)


# --- budgets: what one decode may cost the host ------------------------------------------------
#
# A pickle is a program: one byte can make a 216-byte set, a few bytes can make a
# dict insert quadratic (integers that hash alike), a small argument can make a
# constructor allocate gigabytes. Every decode here therefore runs against a
# memory budget (an estimate of what it built, checked as it goes) and builds
# dicts and sets with keys whose hashes a worker can choose under a collision
# bound. Values whose size is already in the frame (strings, bytes, out-of-band
# buffers) are counted by what they cost, not refused.

DEFAULT_BUDGET = 1 << 31  # bytes of host memory one decoded value may take (the caller says)
# A pickle this small cannot cost much whatever it holds: at most ~1 MB (216 bytes per
# EMPTY_SET byte) and a few hundred colliding keys (about a millisecond). Plain data this
# small goes to the C unpickler; anything larger to `decode_plain`.
SMALL_PICKLE = 4096
# Keys of the same full hash one dict or set may hold. CPython probes all of them for
# every insert and lookup; honest data has one or two (-1 and -2 share a hash).
MAX_SAME_HASH = 32
# str and bytes hashes are keyed by the interpreter's secret (SipHash): a worker
# cannot make them collide, unless the host switched hash randomization off.
_SAFE_KEY_TYPES = frozenset({str, bytes}) if sys.flags.hash_randomization else frozenset()


class DecodeLimitError(UntrustedTypeError):
    """A worker's pickle would cost the host more than its budget (memory or hash work)."""


def _over_budget(spent: int, budget: int) -> DecodeLimitError:
    return DecodeLimitError(f"a worker's pickle would take more than {budget} bytes of host "
                            f"memory to decode (about {spent} so far)")


class _KeyGuard:
    """Counts full-hash collisions per dict/set built in one decode (see `MAX_SAME_HASH`)."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[int, tuple[Any, collections.Counter[int]]] = {}

    def admit(self, target: Any, keys: list[Any] | tuple[Any, ...]) -> None:
        """Check ``keys`` before they go into ``target`` (a dict or set being built)."""
        if not keys or _SAFE_KEY_TYPES.issuperset(map(type, keys)):
            return
        entry = self._counts.get(id(target))
        if entry is None or entry[0] is not target:
            # Hashes of hashes never collide: hash(h) == h for every value hash() returns.
            entry = (target, collections.Counter(map(hash, target)))
            self._counts[id(target)] = entry
        self._add(entry[1], keys, type(target).__name__)

    def fresh(self, keys: Any, what: str) -> None:
        """Check the items a new set, frozenset or dict is about to be built from."""
        if keys and not _SAFE_KEY_TYPES.issuperset(map(type, keys)):
            self._add(collections.Counter(), keys, what)

    @staticmethod
    def _add(counts: collections.Counter[int], keys: Any, what: str) -> None:
        hashes = list(map(hash, keys))
        counts.update(hashes)
        if max(map(counts.__getitem__, hashes)) > MAX_SAME_HASH:
            raise DecodeLimitError(f"a worker's pickle built a {what} with more than "
                                   f"{MAX_SAME_HASH} keys of one hash (a hash-collision attack)")


# Estimated host bytes per object (on top of its payload): generous upper bounds of
# CPython's sizes, container growth included, plus the reference that holds it.
_REF = 8
_TUPLE, _LIST, _DICT, _SET = 48, 64, 72, 232
_PER_ITEM_LIST, _PER_ITEM_DICT, _PER_ITEM_SET = 10, 104, 112
# What any other opcode may take per byte of pickle (a 2-byte int or BINGET, a 1-byte
# MEMOIZE, a short string of one astral character: 80 bytes for 6): charged up front.
_PER_BYTE = 24

_unpack_float = struct.Struct(">d").unpack_from
_unpack_i4 = struct.Struct("<i").unpack_from
_unpack_u4 = struct.Struct("<I").unpack_from
_unpack_u8 = struct.Struct("<Q").unpack_from
_unpack_u2 = struct.Struct("<H").unpack_from
_sizeof = sys.getsizeof
# BININT1, BINFLOAT, BININT2, BININT: the bytes an opcode takes, how its argument reads.
_NUMBER_STRIDE = {0x4B: 2, 0x47: 9, 0x4D: 3, 0x4A: 5}
_NUMBER = {0x4B: struct.Struct("<B").unpack_from, 0x47: _unpack_float, 0x4D: _unpack_u2,
           0x4A: _unpack_i4}
_NUMBER_CODE = {0x4B: "<", 0x47: ">", 0x4D: "<", 0x4A: "<"}, {0x4B: "xB", 0x47: "xd",
                                                              0x4D: "xH", 0x4A: "xi"}
_RUN = 1000  # what pickle writes between two APPENDS


@functools.lru_cache(maxsize=64)
def _number_run(op: int, count: int) -> struct.Struct:
    return struct.Struct(_NUMBER_CODE[0][op] + _NUMBER_CODE[1][op] * count)


def _truncated() -> pickle.UnpicklingError:
    return pickle.UnpicklingError("a truncated or malformed pickle")


def decode_plain(data: bytes, budget: int, *, containers: bool = True) -> Any:
    """Decode plain data (no globals) from a pickle, within ``budget`` bytes; a tight loop.

    Builds only None, bools, ints, floats, str, bytes, bytearray and tuples, and
    with ``containers`` lists, dicts, sets and frozensets (their keys under the
    collision bound). Any other opcode raises `_NeedsGlobals` (values then take
    the guarded path; message heads are refused). Linear in ``len(data)``.

    Memory: every opcode but those that make a container takes at most
    `_PER_BYTE` bytes of host memory per byte of pickle (a short string, an int,
    a reference, a memo entry), so that much is charged per byte read; long
    strings and bytes are charged what they take, containers what they take per
    item. The total is checked where containers are made and, when the pickle
    could exceed the budget by its bytes alone, after every opcode.
    """
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    stack: list[Any] = []
    marks: list[list[Any]] = []
    memo: list[Any] = []
    push = stack.append
    remember = memo.append
    keys = _KeyGuard()
    spent = 0  # containers, and long strings beyond _PER_BYTE (checked with the bytes read)
    check_all = _PER_BYTE * n > budget
    pos = 0
    try:
        while True:
            op = data[pos]
            pos += 1
            if op == 0x94:  # MEMOIZE
                remember(stack[-1])
            elif op == 0x8C:  # SHORT_BINUNICODE
                end = pos + 1 + data[pos]
                if end > n:
                    raise _truncated()
                push(str(data[pos + 1:end], "utf-8", "surrogatepass"))
                pos = end
            elif op == 0x68:  # BINGET
                push(memo[data[pos]])
                pos += 1
            elif op == 0x4B or op == 0x47 or op == 0x4D or op == 0x4A:
                # BININT1, BINFLOAT, BININT2, BININT: a list of numbers is a run of one of
                # them, back to back (stride: the opcode and its argument); read it in C.
                stride = _NUMBER_STRIDE[op]
                if data[pos + stride - 1] == op:
                    run = data[pos - 1:pos - 1 + stride * _RUN:stride]
                    count = len(run) - len(run.lstrip(run[:1]))
                    stack.extend(_number_run(op, count).unpack_from(data, pos - 1))
                    pos += stride * count - 1
                else:
                    push(_NUMBER[op](data, pos)[0])
                    pos += stride - 1
            elif op == 0x28:  # MARK
                marks.append(stack)
                stack = []
                push = stack.append
                spent += _LIST
                if spent + _PER_BYTE * pos > budget:
                    raise _over_budget(spent + _PER_BYTE * pos, budget)
            elif op == 0x75 or op == 0x64:  # SETITEMS, DICT
                if not containers:
                    raise _NeedsGlobals(op)
                items = stack
                stack = marks.pop()
                push = stack.append
                if op == 0x64:
                    push({})
                    spent += _DICT
                target = stack[-1]
                count = len(items)
                if type(target) is not dict or count % 2:
                    raise _NeedsGlobals(op)
                spent += _PER_ITEM_DICT * (count // 2)
                if spent + _PER_BYTE * pos > budget:
                    raise _over_budget(spent + _PER_BYTE * pos, budget)
                i = 0
                if count <= 16 and str in _SAFE_KEY_TYPES:  # a record: a few str keys
                    while i < count and type(items[i]) is str:
                        target[items[i]] = items[i + 1]
                        i += 2
                if i < count:
                    new = items[i::2]
                    if not _SAFE_KEY_TYPES.issuperset(map(type, new)):
                        keys.admit(target, new)
                    target.update(zip(new, items[i + 1::2], strict=True))
            elif op == 0x7D:  # EMPTY_DICT
                if not containers:
                    raise _NeedsGlobals(op)
                push({})
                spent += _DICT
                if spent + _PER_BYTE * pos > budget:
                    raise _over_budget(spent + _PER_BYTE * pos, budget)
            elif op == 0x65:  # APPENDS
                if not containers:
                    raise _NeedsGlobals(op)
                items = stack
                stack = marks.pop()
                push = stack.append
                target = stack[-1]
                if type(target) is not list:
                    raise _NeedsGlobals(op)
                target.extend(items)
            elif op == 0x5D:  # EMPTY_LIST
                if not containers:
                    raise _NeedsGlobals(op)
                push([])
                spent += _LIST
                if spent + _PER_BYTE * pos > budget:
                    raise _over_budget(spent + _PER_BYTE * pos, budget)
            elif op == 0x4E:  # NONE
                push(None)
            elif op == 0x88 or op == 0x89:  # NEWTRUE, NEWFALSE
                push(op == 0x88)
            elif op == 0x85:  # TUPLE1
                stack[-1] = (stack[-1],)
                spent += _TUPLE
                if spent + _PER_BYTE * pos > budget:
                    raise _over_budget(spent + _PER_BYTE * pos, budget)
            elif op == 0x86:  # TUPLE2
                stack[-2:] = [(stack[-2], stack[-1])]
                spent += _TUPLE
                if spent + _PER_BYTE * pos > budget:
                    raise _over_budget(spent + _PER_BYTE * pos, budget)
            elif op == 0x87:  # TUPLE3
                stack[-3:] = [(stack[-3], stack[-2], stack[-1])]
                spent += _TUPLE
                if spent + _PER_BYTE * pos > budget:
                    raise _over_budget(spent + _PER_BYTE * pos, budget)
            elif op == 0x74:  # TUPLE
                items = stack
                stack = marks.pop()
                push = stack.append
                push(tuple(items))
                spent += _TUPLE
                if spent + _PER_BYTE * pos > budget:
                    raise _over_budget(spent + _PER_BYTE * pos, budget)
            elif op == 0x29:  # EMPTY_TUPLE
                push(())
            elif op == 0x58 or op == 0x8D or op == 0x42 or op == 0x8E or op == 0x96:
                # BINUNICODE(8), BINBYTES(8), BYTEARRAY8: charged what they take
                if op == 0x58 or op == 0x42:
                    size, pos = _unpack_u4(data, pos)[0], pos + 4
                else:
                    size, pos = _unpack_u8(data, pos)[0], pos + 8
                if pos + size > n:
                    raise _truncated()
                if op == 0x58 or op == 0x8D:
                    value: Any = str(data[pos:pos + size], "utf-8", "surrogatepass")
                else:
                    value = data[pos:pos + size]
                    if op == 0x96:
                        value = bytearray(value)
                push(value)
                pos += size
                spent += _sizeof(value) - _PER_BYTE * size
                if spent + _PER_BYTE * pos > budget:
                    raise _over_budget(spent + _PER_BYTE * pos, budget)
            elif op == 0x43:  # SHORT_BINBYTES
                end = pos + 1 + data[pos]
                if end > n:
                    raise _truncated()
                push(data[pos + 1:end])
                pos = end
            elif op == 0x8A or op == 0x8B:  # LONG1, LONG4
                if op == 0x8A:
                    size, pos = data[pos], pos + 1
                else:
                    size, pos = _unpack_u4(data, pos)[0], pos + 4
                if pos + size > n:
                    raise _truncated()
                push(int.from_bytes(data[pos:pos + size], "little", signed=True))
                pos += size
            elif op == 0x95:  # FRAME (the whole pickle is in memory already)
                pos += 8
            elif op == 0x2E:  # STOP
                if len(stack) != 1 or marks:
                    raise _truncated()
                return stack[0]
            elif op == 0x80:  # PROTO
                pos += 1
            elif op == 0x6A:  # LONG_BINGET
                push(memo[_unpack_u4(data, pos)[0]])
                pos += 4
            elif op == 0x30:  # POP
                if stack:
                    stack.pop()
                else:
                    stack = marks.pop()
                    push = stack.append
            elif op == 0x31:  # POP_MARK
                stack = marks.pop()
                push = stack.append
            elif op == 0x61:  # APPEND
                if not containers:
                    raise _NeedsGlobals(op)
                value = stack.pop()
                if type(stack[-1]) is not list:
                    raise _NeedsGlobals(op)
                stack[-1].append(value)
            elif op == 0x73:  # SETITEM
                if not containers:
                    raise _NeedsGlobals(op)
                value = stack.pop()
                key = stack.pop()
                target = stack[-1]
                if type(target) is not dict:
                    raise _NeedsGlobals(op)
                spent += _PER_ITEM_DICT
                if spent + _PER_BYTE * pos > budget:
                    raise _over_budget(spent + _PER_BYTE * pos, budget)
                keys.admit(target, (key,))
                target[key] = value
            elif op == 0x6C:  # LIST
                if not containers:
                    raise _NeedsGlobals(op)
                items = stack
                stack = marks.pop()
                push = stack.append
                push(items)
            elif op == 0x8F:  # EMPTY_SET
                if not containers:
                    raise _NeedsGlobals(op)
                push(set())
                spent += _SET
                if spent + _PER_BYTE * pos > budget:
                    raise _over_budget(spent + _PER_BYTE * pos, budget)
            elif op == 0x90 or op == 0x91:  # ADDITEMS, FROZENSET
                if not containers:
                    raise _NeedsGlobals(op)
                items = stack
                stack = marks.pop()
                push = stack.append
                spent += _PER_ITEM_SET * len(items) + (_SET if op == 0x91 else 0)
                if spent + _PER_BYTE * pos > budget:
                    raise _over_budget(spent + _PER_BYTE * pos, budget)
                if op == 0x91:
                    keys.fresh(items, "frozenset")
                    push(frozenset(items))
                    continue
                target = stack[-1]
                if type(target) is not set:
                    raise _NeedsGlobals(op)
                keys.admit(target, items)
                target.update(items)
            else:
                raise _NeedsGlobals(op)
            if check_all and spent + _PER_BYTE * pos > budget:
                raise _over_budget(spent + _PER_BYTE * pos, budget)
    except (IndexError, struct.error):
        raise _truncated() from None


class RemotePlaceholder:
    """Stands for a host object while a worker's pickle is decoded (see the module docstring)."""

    __slots__ = ("ref",)

    def __init__(self, ref: int):
        self.ref = ref

    def __setstate__(self, state: Any) -> None:
        raise UntrustedTypeError("a worker's pickle tried to modify a host object")

    def __reduce__(self) -> Any:
        raise TypeError("placeholders do not travel")


# --- what a worker's pickle may call, and with what ---------------------------------------------
#
# Reconstructors run in C with the worker's arguments: `bytearray(600_000_000)`,
# `list(range(10**8))`, `Fraction(Decimal("1e9999999"))` (10**9999999),
# `Decimal(2**4194304)` (a quadratic base conversion), a numpy array of a shape
# the worker chose, a pandas constructor given a tz named "dateutil/<any path>".
# So a global may be *called* (REDUCE) only if honest pickles call it, each with
# the arguments honest pickles pass; classes are otherwise rebuilt from `cls.__new__(cls)`
# with no arguments and a state (NEWOBJ + BUILD), which is what pickle does for them.

MAX_INT_BITS = 1 << 17  # an int argument of a reconstructor (a Fraction's terms included)
MAX_RANGE = 1 << 12  # a range argument (ranges are lazy; what is built from them is not)
MAX_TEXT_NUMBER = 5_000  # characters of a number given as text (int('...'), float('...'))
MAX_DECIMAL_CHARS = 100_000
MAX_DECIMAL_EXPONENT = 999_999  # decimal's default context: Emax / -Emin
MAX_ITEMSIZE = 1 << 26  # bytes of one element of a numpy dtype built here
_MATERIAL = (list, tuple, dict, set, frozenset)


def _refuse_call(func: Any, why: str) -> UntrustedTypeError:
    name = getattr(func, "__qualname__", None) or type(func).__name__
    return UntrustedTypeError(f"refusing {name}(...) in a worker's pickle: {why}")


@functools.cache
def _zone_names() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def _check_zone(key: Any) -> None:
    """Time zones are named from a closed set: the key never reaches a file path."""
    if type(key) is not str or key not in _zone_names():
        raise UntrustedTypeError(f"refusing the time zone {str(key)[:80]!r} in a worker's "
                                 "pickle: not one of zoneinfo.available_timezones()")


def _zoneinfo_unpickle(key: Any, from_cache: Any) -> Any:
    import zoneinfo

    _check_zone(key)
    return zoneinfo.ZoneInfo._unpickle(key, bool(from_cache))  # type: ignore[attr-defined]


def _walk_arguments(value: Any, seen: set[int], depth: int = 0) -> None:
    """Bounds on what a reconstructor's arguments (or a library object's state) may hold.

    Large ranges (lazy here, materialised by whatever takes them), huge ints, and
    time-zone text that pandas would resolve through the file system
    (``"dateutil/<path>"`` anywhere in a string, ``"tzlocal()"``); a ``tz`` entry
    must name a zone of the closed set.
    Plain containers are walked (each once); other objects were checked when built.
    """
    t = type(value)
    if t is str:
        # pandas resolves "dateutil/<path>" (also inside a dtype's text,
        # "datetime64[ns, dateutil/<path>]") and "tzlocal()" through the file system.
        if "dateutil/" in value or "tzlocal()" in value:
            raise UntrustedTypeError(f"refusing the time zone {value[:80]!r} in a worker's "
                                     "pickle: it names a file")
        return
    if t is int:
        if value.bit_length() > MAX_INT_BITS:
            raise UntrustedTypeError(f"refusing an integer of {value.bit_length()} bits as a "
                                     f"reconstructor's argument (limit {MAX_INT_BITS})")
        return
    if t is range:
        if len(value) > MAX_RANGE:
            raise UntrustedTypeError(f"refusing a range of {len(value)} as a reconstructor's "
                                     f"argument (limit {MAX_RANGE})")
        return
    if t not in _MATERIAL or id(value) in seen:
        return
    if depth > 32:
        raise UntrustedTypeError("a worker's pickle nests a reconstructor's arguments too deep")
    seen.add(id(value))
    if t is dict:
        for key, item in value.items():
            if type(key) is str and key in ("tz", "_tz", "tzinfo") and type(item) is str:
                _check_zone(item)
            _walk_arguments(key, seen, depth + 1)
            _walk_arguments(item, seen, depth + 1)
    else:
        for item in value:
            _walk_arguments(item, seen, depth + 1)


def _no_args(func: Any, args: tuple[Any, ...]) -> None:
    if args:
        raise _refuse_call(func, "pickles pass it no arguments")


def _one_material(func: Any, args: tuple[Any, ...]) -> None:
    """list(x), tuple(x), set(x)...: only from a container already decoded (already paid for)."""
    if args and (len(args) > 1 or type(args[0]) not in _MATERIAL):
        raise _refuse_call(func, "it builds only from a list, tuple, set or dict decoded here")


def _bytes_like(func: Any, args: tuple[Any, ...]) -> None:
    # bytearray(b"..."), or protocol 0-2's bytearray("latin-1 text", "latin-1"); never bytearray(n)
    if not args or (len(args) == 1 and type(args[0]) in (bytes, bytearray)):
        return
    if len(args) in (2, 3) and type(args[0]) in (str, bytes) and all(type(a) is str for a in args[1:]):
        return
    raise _refuse_call(func, "it builds from bytes or text only (never from a size)")


def _number(func: Any, args: tuple[Any, ...]) -> None:
    for arg in args:
        if type(arg) is str and len(arg) > MAX_TEXT_NUMBER:
            raise _refuse_call(func, f"a number of {len(arg)} characters")
        if type(arg) not in (int, float, str, bool):
            raise _refuse_call(func, f"a number from {type(arg).__name__}")


def _text(func: Any, args: tuple[Any, ...]) -> None:
    if args and (type(args[0]) not in (str, bytes, bytearray)
                 or any(type(a) is not str for a in args[1:])):
        raise _refuse_call(func, "text from text or bytes only")


def _decimal(func: Any, args: tuple[Any, ...]) -> None:
    # Decimal pickles as Decimal("text"); Decimal(int) converts in quadratic time.
    if len(args) != 1 or type(args[0]) is not str or len(args[0]) > MAX_DECIMAL_CHARS:
        raise _refuse_call(func, f"a Decimal is rebuilt from text of at most {MAX_DECIMAL_CHARS} "
                           "characters")


def _check_decimal(value: Any) -> None:
    if value.is_finite() and value and not (
            -MAX_DECIMAL_EXPONENT <= value.adjusted() <= MAX_DECIMAL_EXPONENT):
        raise UntrustedTypeError(f"refusing a Decimal of exponent {value.adjusted()} (limit "
                                 f"{MAX_DECIMAL_EXPONENT}: int() or Fraction() of it would "
                                 "compute a power of ten that large)")


def _fraction(func: Any, args: tuple[Any, ...]) -> None:
    # Fraction pickles as Fraction(numerator, denominator): ints, never text or Decimal.
    if not 1 <= len(args) <= 2 or any(type(a) is not int for a in args):
        raise _refuse_call(func, "a Fraction is rebuilt from two ints")


def _deque(func: Any, args: tuple[Any, ...]) -> None:
    if args and (type(args[0]) not in (list, tuple) or len(args) > 2
                 or (len(args) == 2 and args[1] is not None and type(args[1]) is not int)):
        raise _refuse_call(func, "a deque is rebuilt from a list and a maximal length")


def _mapping(func: Any, args: tuple[Any, ...]) -> None:
    if args and (len(args) > 1 or type(args[0]) is not dict):
        raise _refuse_call(func, "it is rebuilt from a dict decoded here")


_FACTORIES = (list, dict, set, frozenset, tuple, int, float, str, bytes, bool, complex,
              collections.Counter, collections.OrderedDict, collections.deque)


def _defaultdict(func: Any, args: tuple[Any, ...]) -> None:
    if len(args) > 2 or (args and args[0] is not None
                         and not any(args[0] is f for f in _FACTORIES)) \
            or (len(args) == 2 and type(args[1]) is not dict):
        raise _refuse_call(func, "a defaultdict's factory must be a plain type")


def _reconstructor(func: Any, args: tuple[Any, ...]) -> None:
    # copyreg._reconstructor(cls, base, state) calls base.__new__(cls, state) and
    # base.__init__(obj, state) unless base is object: list(state), dict(state)...
    if len(args) != 3 or args[1] is not object:
        raise _refuse_call(func, "only as object.__new__(cls)")


def _array_reconstruct(func: Any, args: tuple[Any, ...]) -> None:
    # numpy pickles arrays as _reconstruct(cls, (0,), b"b") + BUILD (the shape comes with the
    # data, which numpy checks); another shape or dtype allocates what the worker asks for.
    import numpy as np

    if not (len(args) == 3 and isinstance(args[0], type) and issubclass(args[0], np.ndarray)
            and type(args[1]) is tuple and args[1] == (0,) and type(args[2]) is bytes
            and args[2] == b"b"):
        raise _refuse_call(func, "an array is rebuilt empty, then from its data")


def _masked_reconstruct(func: Any, args: tuple[Any, ...]) -> None:
    import numpy as np

    if not (len(args) == 4 and all(isinstance(a, type) and issubclass(a, np.ndarray)
                                   for a in args[:2])
            and type(args[2]) is tuple and args[2] == (0,) and type(args[3]) is str
            and args[3] == "b"):
        raise _refuse_call(func, "a masked array is rebuilt empty, then from its data")


def _timestamp(func: Any, args: tuple[Any, ...]) -> None:
    if len(args) >= 3 and args[2] is not None and not isinstance(args[2], datetime.tzinfo):
        raise _refuse_call(func, "a Timestamp's time zone is a tzinfo object")


def _new_index(func: Any, args: tuple[Any, ...]) -> None:
    import numpy as np
    import pandas as pd

    if len(args) != 2 or not (isinstance(args[0], type) and issubclass(args[0], pd.Index)) \
            or type(args[1]) is not dict or any(type(k) is not str for k in args[1]):
        raise _refuse_call(func, "an index is rebuilt from its class and a dict of fields")
    data = args[1].get("data")
    if data is not None and not isinstance(data, (np.ndarray, pd.api.extensions.ExtensionArray)):
        raise _refuse_call(func, "an index is rebuilt from an array")
    if isinstance(args[1].get("dtype"), str):
        raise _refuse_call(func, "an index's dtype is a dtype object")


@functools.cache
def _call_policies() -> dict[Any, Any]:
    """Callable -> argument check, for every global a worker's pickle may call (REDUCE)."""
    import decimal
    import fractions
    import uuid
    import zoneinfo

    policies: dict[Any, Any] = {
        list: _one_material, tuple: _one_material, set: _one_material, frozenset: _one_material,
        dict: _mapping, collections.Counter: _mapping, collections.OrderedDict: _mapping,
        collections.defaultdict: _defaultdict, collections.deque: _deque,
        bytearray: _bytes_like, bytes: _bytes_like, str: _text,
        int: _number, float: _number, complex: _number, bool: _number,
        object: _no_args, type(None): _no_args, range: None, slice: None,
        datetime.date: None, datetime.datetime: None, datetime.time: None,
        datetime.timedelta: None, datetime.timezone: None,
        decimal.Decimal: _decimal, fractions.Fraction: _fraction, uuid.UUID: None,
        zoneinfo.ZoneInfo: lambda func, args: _check_zone(args[0] if len(args) == 1 else None),
        _zoneinfo_unpickle: None, _restricted_getattr: None, _validated_arrow_array: None,
    }
    import copyreg

    policies[copyreg._reconstructor] = _reconstructor  # type: ignore[attr-defined]
    import numpy as np

    policies[np.dtype] = None
    # numpy.core.* (numpy 1.x's names) re-export these same functions under numpy 2.
    for module in ("numpy._core.multiarray", "numpy._core.numeric", "numpy.ma.core"):
        try:
            __import__(module, level=0)
        except ImportError:
            continue
        mod = sys.modules[module]
        for name, check in (("_reconstruct", _array_reconstruct), ("scalar", None),
                            ("_frombuffer", None), ("_mareconstruct", _masked_reconstruct)):
            if hasattr(mod, name):
                policies[getattr(mod, name)] = check
    import pandas as pd
    from pandas._libs import arrays, internals, sparse
    from pandas._libs.tslibs import nattype, offsets, timedeltas, timestamps
    from pandas.core.indexes import base, datetimes, interval, period
    from pandas.core.indexes import timedeltas as index_timedeltas
    from pandas.core.internals import managers

    for func in (pd.Interval, pd.Period, pd.PeriodDtype, pd.StringDtype, pd.IntervalDtype,
                 arrays.__pyx_unpickle_NDArrayBacked, internals._unpickle_block,
                 sparse.IntIndex, sparse.BlockIndex, nattype._nat_unpickle,
                 timedeltas._timedelta_unpickle, managers.BlockManager,
                 managers.SingleBlockManager):
        policies[func] = None
    policies[timestamps._unpickle_timestamp] = _timestamp
    for func in (base._new_Index, datetimes._new_DatetimeIndex, interval._new_IntervalIndex,
                 index_timedeltas._new_TimedeltaIndex, period._new_PeriodIndex):
        policies[func] = _new_index
    for module, name in SAFE_GLOBALS:
        if module == "pandas._libs.tslibs.offsets":
            policies[getattr(offsets, name)] = None
    try:
        import pyarrow.lib as pa_lib
    except ImportError:
        pass
    else:
        policies[pa_lib.py_buffer] = None
        policies[pa_lib.type_for_alias] = None
    return policies


def _check_dtype(dtype: Any) -> None:
    """A dtype rebuilt from a worker's state must be one numpy would make from its layout.

    The state names fields *and* flags; numpy trusts the flags (``hasobject``, list
    pickling). A field of objects in a dtype flagged as plain bytes makes an array
    whose "objects" are pointers the worker wrote. So the layout is rebuilt through
    numpy's own constructor, which computes the flags (and refuses overlapping
    object fields), and both must agree.
    """
    import numpy as np

    if dtype.itemsize > MAX_ITEMSIZE:
        raise UntrustedTypeError(f"refusing a dtype of {dtype.itemsize} bytes per element "
                                 f"(limit {MAX_ITEMSIZE})")
    try:
        if dtype.names is not None:
            fields = dtype.fields
            spec: dict[str, Any] = {
                "names": list(dtype.names),
                "formats": [fields[n][0] for n in dtype.names],
                "offsets": [fields[n][1] for n in dtype.names],
                "itemsize": dtype.itemsize,
            }
            if any(len(fields[n]) > 2 for n in dtype.names):
                spec["titles"] = [fields[n][2] if len(fields[n]) > 2 else None
                                  for n in dtype.names]
            canonical = np.dtype(spec, align=dtype.isalignedstruct)  # type: ignore[call-overload]
        elif dtype.subdtype is not None:
            canonical = np.dtype(dtype.subdtype)
        else:
            canonical = np.dtype(dtype.str)
    except (TypeError, ValueError) as exc:
        raise UntrustedTypeError(f"refusing a dtype numpy would not build: {exc}") from None
    if (canonical.flags, canonical.hasobject, canonical.itemsize) != (
            dtype.flags, dtype.hasobject, dtype.itemsize):
        raise UntrustedTypeError("refusing a dtype whose flags do not match its fields (object "
                                 "fields flagged as plain data)")


def _check_result(value: Any) -> None:
    """Checks on what a reconstructor returned (before anything else sees it)."""
    decimal = sys.modules.get("decimal")
    numpy = sys.modules.get("numpy")
    if decimal is not None and type(value) is decimal.Decimal:
        _check_decimal(value)
    elif numpy is not None and isinstance(value, numpy.dtype) and value.itemsize > MAX_ITEMSIZE:
        raise UntrustedTypeError(f"refusing a dtype of {value.itemsize} bytes per element "
                                 f"(limit {MAX_ITEMSIZE})")


def _refuse(what: str) -> UntrustedTypeError:
    return UntrustedTypeError(f"a worker's pickle tried to {what}")


# The pure-Python unpickler: its opcodes are methods, so the rules below can wrap them.
_PythonUnpickler: Any = pickle._Unpickler


class GuardedUnpickler(_PythonUnpickler):  # type: ignore[misc]
    """The pure-Python unpickler with the allowlist and the "created here" rule."""

    dispatch = dict(_PythonUnpickler.dispatch)

    def __init__(self, file: io.BytesIO, *, buffers: Iterable[Any] = (),
                 types: Mapping[str, type] | None = None, refs: Mapping[int, Any] | None = None,
                 budget: int = DEFAULT_BUDGET):
        super().__init__(file, buffers=buffers)
        self._types = types or {}
        self._injected = frozenset(map(id, self._types.values()))
        self._refs = refs or {}
        self._fresh: set[int] = set()
        self._keys = _KeyGuard()
        self._budget = budget
        self._spent = 0
        self.placeholders = 0

    def load(self) -> Any:
        """`pickle._Unpickler.load`, with every opcode's cost counted against the budget."""
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)  # type: ignore[attr-defined]
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack: list[list[Any]] = []
        self.stack: list[Any] = []
        self.append = self.stack.append
        self.proto = 0
        read = self.read
        dispatch = self.dispatch
        cost = _OPCODE_COST
        budget = self._budget
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError
                dispatch[key[0]](self)
                self._spent += cost[key[0]]
                if self._spent > budget:
                    raise _over_budget(self._spent, budget)
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            return stop.value

    def _spend(self, size: int) -> None:
        self._spent += size
        if self._spent > self._budget:
            raise _over_budget(self._spent, self._budget)

    # --- where objects come from ---------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("builtins", "getattr"):
            return _restricted_getattr
        if (module, name) == ("pyarrow.lib", "_restore_array"):
            return _validated_arrow_array
        if (module, name) in SAFE_GLOBALS or (module, name) in _ARROW_GLOBALS:
            __import__(module, level=0)
            return getattr(sys.modules[module], name)
        raise UntrustedTypeError(
            f"refusing to load {module}.{name}: not a plain-data, numpy or pandas type"
            " nor an injected type (pass trusted=True to accept it)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is tuple and len(pid) == 2:
            tag, key = pid
            if tag == TYPE_TAG and type(key) is str and key in self._types:
                return self._types[key]
            if tag == REMOTE_TAG and type(key) is int and key in self._refs:
                self.placeholders += 1
                return RemotePlaceholder(key)
        raise UntrustedTypeError("unknown persistent reference in a worker's pickle")

    def _made(self, value: Any) -> Any:
        """Remember ``value`` as created here if nothing else holds it (called on the spot)."""
        # Held by this frame's argument and getrefcount's own: anything more is a shared object.
        if sys.getrefcount(value) <= 2:
            self._fresh.add(id(value))
        return value

    def _target(self, what: str) -> Any:
        target = self.stack[-1]
        if id(target) not in self._fresh:
            raise _refuse(f"{what} an object it did not create ({type(target).__name__})")
        return target

    # --- constructors --------------------------------------------------------------------

    def _check_call(self, func: Any, args: Any) -> None:
        """Only what honest pickles call, with what they pass (see `_call_policies`)."""
        if type(args) is not tuple:
            raise _refuse_call(func, "its arguments are not a tuple")
        if id(func) in self._injected:
            return  # an injected class: the user's own type, rebuilt as pickle would
        try:
            policy = _call_policies()[func]
        except (KeyError, TypeError):
            raise _refuse_call(func, "pickles rebuild it from its state, never by calling it "
                               "with arguments") from None
        if (getattr(func, "__module__", None) or "").startswith("pandas"):
            _walk_arguments(args, set())  # pandas reads fields (tz, dtype text) deep in its args
        else:
            for arg in args:  # the others take containers only as already decoded (policies)
                if type(arg) in (int, range, str):
                    _walk_arguments(arg, set())
        if policy is not None:
            policy(func, args)
        if func is set or func is frozenset:
            self._keys.fresh(args[0] if args else (), func.__name__)
        elif func in (dict, collections.Counter, collections.OrderedDict) and args:
            self._keys.fresh(list(args[0]), func.__name__)

    def _check_new(self, cls: Any, args: Any, kwargs: Any) -> None:
        # Classes are rebuilt as cls.__new__(cls) plus a state; __new__ of numpy's and pandas'
        # classes does the whole construction (ndarray(shape), Timestamp(text, tz=...)).
        if id(cls) not in self._injected and (args or kwargs):
            raise _refuse_call(cls, "pickles of library types pass no arguments to __new__")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        self._check_call(func, args)
        made = self.stack[-1] = self._made(func(*args))
        _check_result(made)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self._check_new(cls, args, None)
        self.stack.append(self._made(cls.__new__(cls, *args)))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self._check_new(cls, args, kwargs)
        self.stack.append(self._made(cls.__new__(cls, *args, **kwargs)))

    def _instantiate(self, klass: Any, args: list[Any]) -> None:
        constructor: Any = klass
        if args or not isinstance(klass, type):
            self._check_call(klass, tuple(args))
            self.stack.append(self._made(constructor(*args)))
        else:
            self.stack.append(self._made(constructor.__new__(klass)))
        _check_result(self.stack[-1])

    def load_empty_list(self) -> None:
        self.stack.append(self._made([]))

    def load_empty_dictionary(self) -> None:
        self.stack.append(self._made({}))

    def load_empty_set(self) -> None:
        self.stack.append(self._made(set()))

    def load_list(self) -> None:
        # pop_mark first: it replaces self.stack (the list it returns was the mark's stack)
        made = self._made(self.pop_mark())
        self.stack.append(made)
        self._spend(_PER_ITEM_LIST * len(made))

    def load_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise pickle.UnpicklingError("DICT with an odd number of items")
        self._keys.fresh(items[::2], "dict")
        self._spend(_PER_ITEM_DICT * len(items) // 2)
        self.stack.append(self._made(dict(zip(items[::2], items[1::2], strict=True))))

    def load_frozenset(self) -> None:
        items = self.pop_mark()
        self._keys.fresh(items, "frozenset")
        self._spend(_PER_ITEM_SET * len(items))
        self.stack.append(frozenset(items))

    # --- what modifies an object: only objects created here ------------------------------

    def load_build(self) -> None:
        state = self.stack[-1]
        self.stack.pop()
        target = self._target("set the state of")
        numpy = sys.modules.get("numpy")
        if (type(target).__module__ or "").startswith("pandas"):
            _walk_arguments(state, set())
        self.stack.append(state)
        super().load_build()
        if numpy is not None and isinstance(target, numpy.dtype):
            _check_dtype(target)

    def load_append(self) -> None:
        value = self.stack.pop()
        self._target("append to")
        self.stack.append(value)
        super().load_append()

    def load_appends(self) -> None:
        mark = self.metastack[-1] if self.metastack else None
        if not mark or id(mark[-1]) not in self._fresh:
            raise _refuse("append to an object it did not create")
        self._spend(_PER_ITEM_LIST * len(self.stack))
        super().load_appends()

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        target = self._target("set an item of")
        if isinstance(target, dict):
            self._keys.admit(target, (key,))
        self.stack += [key, value]
        super().load_setitem()

    def load_setitems(self) -> None:
        mark = self.metastack[-1] if self.metastack else None
        if not mark or id(mark[-1]) not in self._fresh:
            raise _refuse("set items of an object it did not create")
        if isinstance(mark[-1], dict):
            self._keys.admit(mark[-1], self.stack[::2])
        self._spend(_PER_ITEM_DICT * len(self.stack) // 2)
        super().load_setitems()

    def load_additems(self) -> None:
        mark = self.metastack[-1] if self.metastack else None
        if not mark or id(mark[-1]) not in self._fresh:
            raise _refuse("add items to an object it did not create")
        if isinstance(mark[-1], (set, frozenset)):
            self._keys.admit(mark[-1], self.stack)
        self._spend(_PER_ITEM_SET * len(self.stack))
        super().load_additems()

    for _opcode, _name in ((pickle.REDUCE, "load_reduce"), (pickle.NEWOBJ, "load_newobj"),
                           (pickle.NEWOBJ_EX, "load_newobj_ex"),
                           (pickle.EMPTY_LIST, "load_empty_list"),
                           (pickle.EMPTY_DICT, "load_empty_dictionary"),
                           (pickle.EMPTY_SET, "load_empty_set"), (pickle.LIST, "load_list"),
                           (pickle.DICT, "load_dict"), (pickle.FROZENSET, "load_frozenset"),
                           (pickle.BUILD, "load_build"),
                           (pickle.APPEND, "load_append"), (pickle.APPENDS, "load_appends"),
                           (pickle.SETITEM, "load_setitem"), (pickle.SETITEMS, "load_setitems"),
                           (pickle.ADDITEMS, "load_additems")):
        dispatch[_opcode[0]] = locals()[_name]
    del _opcode, _name


def _sized(load: Any) -> Any:
    """An opcode whose object's size is its argument's: counted by what it built."""
    def load_sized(self: GuardedUnpickler) -> None:
        load(self)
        self._spend(_sizeof(self.stack[-1]))
    return load_sized


def _load_short_binunicode(self: GuardedUnpickler) -> None:
    # The commonest sized opcode (an object column's strings): charged per byte read, as in
    # decode_plain (at most 4 bytes a character plus the header fit _PER_BYTE per byte).
    size = self.read(1)[0]
    self.append(str(self.read(size), "utf-8", "surrogatepass"))
    self._spent += _PER_BYTE * (size + 2)


GuardedUnpickler.dispatch[pickle.SHORT_BINUNICODE[0]] = _load_short_binunicode

for _opcode in (pickle.BINUNICODE, pickle.BINUNICODE8, pickle.UNICODE,
                pickle.STRING, pickle.BINSTRING, pickle.SHORT_BINSTRING, pickle.BINBYTES,
                pickle.SHORT_BINBYTES, pickle.BINBYTES8, pickle.BYTEARRAY8, pickle.LONG,
                pickle.LONG1, pickle.LONG4, pickle.INT):
    GuardedUnpickler.dispatch[_opcode[0]] = _sized(GuardedUnpickler.dispatch[_opcode[0]])
del _opcode

# Every opcode's fixed cost: the object it may push, its reference, a memo entry.
_OPCODE_COST = [64] * 256
for _opcode, _cost in ((pickle.EMPTY_SET, _SET), (pickle.EMPTY_DICT, _DICT + 64),
                       (pickle.DICT, _DICT + 64), (pickle.FROZENSET, _SET)):
    _OPCODE_COST[_opcode[0]] = _cost
del _opcode, _cost


def _swap_placeholders(value: Any, refs: Mapping[int, Any], memo: dict[int, Any]) -> Any:
    """Replace placeholders by the host objects, inside plain containers only."""
    t = type(value)
    if t is RemotePlaceholder:
        return refs[value.ref]
    if t not in (list, tuple, dict, set, frozenset):
        return value
    key = id(value)
    if key in memo:
        return memo[key]
    if t is list:
        memo[key] = value
        value[:] = [_swap_placeholders(v, refs, memo) for v in value]
        return value
    if t is dict:
        memo[key] = value
        items = [(_swap_placeholders(k, refs, memo), _swap_placeholders(v, refs, memo))
                 for k, v in value.items()]
        value.clear()
        value.update(items)
        return value
    swapped = t(_swap_placeholders(v, refs, memo) for v in value)
    memo[key] = swapped
    return swapped


def _count_placeholders(value: Any, seen: set[int]) -> int:
    if type(value) is RemotePlaceholder:
        return 1
    if type(value) not in (list, tuple, dict, set, frozenset) or id(value) in seen:
        return 0
    seen.add(id(value))
    items = [*value.keys(), *value.values()] if type(value) is dict else value
    return sum(_count_placeholders(v, seen) for v in items)


def loads_value(
    body: bytes,
    buffers: Iterable[Any] = (),
    *,
    types: Mapping[str, type] | None = None,
    refs: Mapping[int, Any] | None = None,
    trusted: bool = False,
    budget: int = DEFAULT_BUDGET,
) -> Any:
    """Decode a value a worker sent (retrieve, remote-call arguments).

    Raises `UntrustedTypeError` for anything outside the allowlist, any attempt
    to modify an object the decoder did not create, and any decode that would
    take more than ``budget`` bytes of host memory (`DecodeLimitError`).
    """
    buffers = list(buffers)
    if trusted:
        # The caller accepted the risk: model-made classes are rebuilt by dill.
        import dill

        return dill.loads(body, buffers=buffers)
    try:
        if len(body) <= SMALL_PICKLE:
            return PlainUnpickler(io.BytesIO(body), buffers=buffers).load()
        return decode_plain(body, budget)
    except _NeedsGlobals:
        pass
    unpickler = GuardedUnpickler(io.BytesIO(body), buffers=buffers, types=types, refs=refs,
                                 budget=budget)
    value = unpickler.load()
    if unpickler.placeholders:
        value = _swap_placeholders(value, refs or {}, {})
        if _count_placeholders(value, set()):
            raise UntrustedTypeError("host objects (remote proxies) can travel back to the host "
                                     "only inside lists, tuples, dicts and sets")
    return value


def loads_plain(body: bytes, budget: int = DEFAULT_BUDGET) -> Any:
    """Decode plain data only (no globals, no persistent ids), within ``budget`` bytes."""
    try:
        return decode_plain(body, budget)
    except _NeedsGlobals as exc:
        raise UntrustedTypeError(f"refusing a global in plain data: {exc.args!r}") from None
