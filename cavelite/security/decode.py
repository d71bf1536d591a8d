"""The host's restricted decoder for bytes that come from a worker.

Promise 4: the host never unpickles worker bytes with an unrestricted
unpickler. A pickle can name any importable callable and call it with any
arguments, so `find_class` here admits only an explicit allowlist: plain
data, datetime/decimal/fractions, numpy and pandas reconstruction entry
points, and the classes the user injected (which travel as persistent ids,
never as importable names). Everything else raises `UntrustedTypeError`
unless the caller said ``trusted=True``.
"""

from __future__ import annotations

import io
import pickle
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

# getattr appears in pickles only as ZoneInfo's private constructor; any other
# use (getattr(DataFrame, "to_csv")...) would hand out arbitrary methods.
_SAFE_GETATTR = frozenset([("ZoneInfo", "_unpickle")])


def _restricted_getattr(obj: Any, name: str) -> Any:
    if (getattr(obj, "__name__", None), name) in _SAFE_GETATTR and obj.__module__ == "zoneinfo":
        return getattr(obj, name)
    raise UntrustedTypeError(f"refusing getattr({obj!r}, {name!r}) in a worker's pickle")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allowlisted globals and injected types."""

    def __init__(
        self,
        file: io.BytesIO,
        *,
        buffers: Iterable[Any] = (),
        allowed: frozenset[tuple[str, str]] = SAFE_GLOBALS,
        types: Mapping[str, type] | None = None,
        refs: Mapping[int, Any] | None = None,
    ):
        super().__init__(file, buffers=buffers)
        self._allowed = allowed
        self._types = types or {}
        self._refs = refs or {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("builtins", "getattr"):
            return _restricted_getattr
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise UntrustedTypeError(
            f"refusing to load {module}.{name}: not a plain-data, numpy or pandas type"
            " nor an injected type (pass trusted=True to accept it)"
        )

    def persistent_load(self, pid: Any) -> Any:
        # Injected types travel by the name they were injected under.
        if isinstance(pid, tuple) and len(pid) == 2:
            if pid[0] == "type" and pid[1] in self._types:
                return self._types[pid[1]]
            if pid[0] == "remote" and type(pid[1]) is int and pid[1] in self._refs:
                return self._refs[pid[1]]
        raise UntrustedTypeError(f"unknown persistent reference {pid!r} in a worker's pickle")


def loads_value(
    body: bytes,
    buffers: Iterable[Any] = (),
    *,
    types: Mapping[str, type] | None = None,
    refs: Mapping[int, Any] | None = None,
    trusted: bool = False,
) -> Any:
    """Decode a value a worker sent (retrieve, remote-call arguments)."""
    if trusted:
        # The caller accepted the risk: model-made classes are rebuilt by dill.
        import dill

        return dill.loads(body, buffers=list(buffers))
    return RestrictedUnpickler(io.BytesIO(body), buffers=buffers, types=types, refs=refs).load()


def split_head(body: bytes) -> tuple[Any, bytes]:
    """A value message is a control head followed by the value's own pickle."""
    bio = io.BytesIO(body)
    head = RestrictedUnpickler(bio, allowed=frozenset()).load()
    return head, body[bio.tell():]
