"""The globals and persistent ids a worker's pickle may name: the decoder's allowlist.

`find_class` (the guarded unpickler's, and the snapshot loader's) admits only
the exact (module, name) pairs listed here: plain data, datetime/decimal/
fractions, numpy and pandas reconstruction entry points, and pandas' Arrow-backed
strings. Injected classes travel as persistent ids (`TYPE_TAG`), host objects
as references (`REMOTE_TAG`), never as importable names. The list lives apart
from the decoder because the audit hook and the worker's snapshot loader judge
globals by it too; what each allowed global may be *called* with is
`decode_calls`.
"""

from __future__ import annotations

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
ARROW_GLOBALS = frozenset([
    ("pandas.arrays", "ArrowStringArray"), ("pandas.arrays", "ArrowExtensionArray"),
    ("pandas", "ArrowDtype"), ("pyarrow.lib", "py_buffer"), ("pyarrow.lib", "type_for_alias"),
    ("pyarrow.lib", "_restore_array"),
])

# Persistent ids a worker may use: ("type", injected name) and ("remote", reference).
TYPE_TAG = "type"
REMOTE_TAG = "remote"
