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

Plain data (no globals at all: lists, dicts, numbers, strings) cannot reach
any pre-existing object, so it is decoded by the C unpickler at full speed;
anything else goes through the guarded pure-Python unpickler below.
"""

from __future__ import annotations

import io
import pickle
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
        return getattr(obj, name)
    raise UntrustedTypeError(f"refusing getattr({obj!r}, {name!r}) in a worker's pickle")


class _NeedsGlobals(Exception):
    """The plain-data fast path met a global or a persistent id: use the guarded path."""


class PlainUnpickler(pickle.Unpickler):
    """The C unpickler, refusing every global and persistent id: plain data only."""

    def find_class(self, module: str, name: str) -> Any:
        raise _NeedsGlobals(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise _NeedsGlobals(pid)


class RemotePlaceholder:
    """Stands for a host object while a worker's pickle is decoded (see the module docstring)."""

    __slots__ = ("ref",)

    def __init__(self, ref: int):
        self.ref = ref

    def __setstate__(self, state: Any) -> None:
        raise UntrustedTypeError("a worker's pickle tried to modify a host object")

    def __reduce__(self) -> Any:
        raise TypeError("placeholders do not travel")


def _refuse(what: str) -> UntrustedTypeError:
    return UntrustedTypeError(f"a worker's pickle tried to {what}")


# The pure-Python unpickler: its opcodes are methods, so the rules below can wrap them.
_PythonUnpickler: Any = pickle._Unpickler


class GuardedUnpickler(_PythonUnpickler):  # type: ignore[misc]
    """The pure-Python unpickler with the allowlist and the "created here" rule."""

    dispatch = dict(_PythonUnpickler.dispatch)

    def __init__(self, file: io.BytesIO, *, buffers: Iterable[Any] = (),
                 types: Mapping[str, type] | None = None, refs: Mapping[int, Any] | None = None):
        super().__init__(file, buffers=buffers)
        self._types = types or {}
        self._refs = refs or {}
        self._fresh: set[int] = set()
        self.placeholders = 0

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

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        self.stack[-1] = self._made(func(*args))

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.stack.append(self._made(cls.__new__(cls, *args)))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.stack.append(self._made(cls.__new__(cls, *args, **kwargs)))

    def _instantiate(self, klass: Any, args: list[Any]) -> None:
        constructor: Any = klass
        value = constructor(*args) if args or not isinstance(klass, type) else constructor.__new__(klass)
        self.stack.append(self._made(value))

    def load_empty_list(self) -> None:
        self.stack.append(self._made([]))

    def load_empty_dictionary(self) -> None:
        self.stack.append(self._made({}))

    def load_empty_set(self) -> None:
        self.stack.append(self._made(set()))

    def load_list(self) -> None:
        self.stack.append(self._made(self.pop_mark()))

    def load_dict(self) -> None:
        items = self.pop_mark()
        self.stack.append(self._made({items[i]: items[i + 1] for i in range(0, len(items), 2)}))

    # --- what modifies an object: only objects created here ------------------------------

    def load_build(self) -> None:
        state = self.stack[-1]
        self.stack.pop()
        self._target("set the state of")
        self.stack.append(state)
        super().load_build()

    def load_append(self) -> None:
        value = self.stack.pop()
        self._target("append to")
        self.stack.append(value)
        super().load_append()

    def load_appends(self) -> None:
        mark = self.metastack[-1] if self.metastack else None
        if not mark or id(mark[-1]) not in self._fresh:
            raise _refuse("append to an object it did not create")
        super().load_appends()

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._target("set an item of")
        self.stack += [key, value]
        super().load_setitem()

    def load_setitems(self) -> None:
        mark = self.metastack[-1] if self.metastack else None
        if not mark or id(mark[-1]) not in self._fresh:
            raise _refuse("set items of an object it did not create")
        super().load_setitems()

    def load_additems(self) -> None:
        mark = self.metastack[-1] if self.metastack else None
        if not mark or id(mark[-1]) not in self._fresh:
            raise _refuse("add items to an object it did not create")
        super().load_additems()

    for _opcode, _name in ((pickle.REDUCE, "load_reduce"), (pickle.NEWOBJ, "load_newobj"),
                           (pickle.NEWOBJ_EX, "load_newobj_ex"),
                           (pickle.EMPTY_LIST, "load_empty_list"),
                           (pickle.EMPTY_DICT, "load_empty_dictionary"),
                           (pickle.EMPTY_SET, "load_empty_set"), (pickle.LIST, "load_list"),
                           (pickle.DICT, "load_dict"), (pickle.BUILD, "load_build"),
                           (pickle.APPEND, "load_append"), (pickle.APPENDS, "load_appends"),
                           (pickle.SETITEM, "load_setitem"), (pickle.SETITEMS, "load_setitems"),
                           (pickle.ADDITEMS, "load_additems")):
        dispatch[_opcode[0]] = locals()[_name]
    del _opcode, _name


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
) -> Any:
    """Decode a value a worker sent (retrieve, remote-call arguments).

    Raises `UntrustedTypeError` for anything outside the allowlist or any
    attempt to modify an object the decoder did not create.
    """
    buffers = list(buffers)
    if trusted:
        # The caller accepted the risk: model-made classes are rebuilt by dill.
        import dill

        return dill.loads(body, buffers=buffers)
    try:
        return PlainUnpickler(io.BytesIO(body), buffers=buffers).load()
    except _NeedsGlobals:
        pass
    unpickler = GuardedUnpickler(io.BytesIO(body), buffers=buffers, types=types, refs=refs)
    value = unpickler.load()
    if unpickler.placeholders:
        value = _swap_placeholders(value, refs or {}, {})
        if _count_placeholders(value, set()):
            raise UntrustedTypeError("host objects (remote proxies) can travel back to the host "
                                     "only inside lists, tuples, dicts and sets")
    return value


def loads_plain(body: bytes) -> Any:
    """Decode plain data only (no globals, no persistent ids): message heads."""
    try:
        return PlainUnpickler(io.BytesIO(body)).load()
    except _NeedsGlobals as exc:
        raise UntrustedTypeError(f"refusing a global in plain data: {exc.args!r}") from None
