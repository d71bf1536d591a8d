"""What a worker's pickle may call, and with what: the checks on every reconstructor.

A global the allowlist (`decode_allowlist`) admits may still be dangerous to
call. Reconstructors run in C with the worker's arguments: `bytearray(600_000_000)`,
`list(range(10**8))`, `Fraction(Decimal("1e9999999"))` (10**9999999),
`Decimal(2**4194304)` (a quadratic base conversion), a numpy array of a shape
the worker chose, a pandas constructor given a tz named "dateutil/<any path>".
So a global may be *called* (REDUCE) only if honest pickles call it, each with
the arguments honest pickles pass; classes are otherwise rebuilt from `cls.__new__(cls)`
with no arguments and a state (NEWOBJ + BUILD), which is what pickle does for them.

Here: per callable, the argument check (`_call_policies`); the bounds on what
arguments may hold (`_walk_arguments`: ints, ranges, time-zone text naming
files) and the closed set of time zones; the checks on what a reconstructor
returned (`_check_result`) and on a dtype rebuilt from a worker's state
(`_check_dtype`); and the stand-ins `find_class` returns for ``getattr`` and
pyarrow's ``_restore_array``. `decode_guarded` applies them.
"""

from __future__ import annotations

import collections
import datetime
import functools
import sys
from typing import Any

from ..errors import UntrustedTypeError
from .decode_allowlist import SAFE_GLOBALS

MAX_INT_BITS = 1 << 17  # an int argument of a reconstructor (a Fraction's terms included)
MAX_RANGE = 1 << 12  # a range argument (ranges are lazy; what is built from them is not)
MAX_TEXT_NUMBER = 5_000  # characters of a number given as text (int('...'), float('...'))
MAX_DECIMAL_CHARS = 100_000
MAX_DECIMAL_EXPONENT = 999_999  # decimal's default context: Emax / -Emin
MAX_ITEMSIZE = 1 << 26  # bytes of one element of a numpy dtype built here
_MATERIAL = (list, tuple, dict, set, frozenset)


def _validated_arrow_array(data: Any) -> Any:
    # pyarrow's _restore_array, validating fully what C++ code would otherwise trust
    from pyarrow.lib import _restore_array

    array = _restore_array(data)
    array.validate(full=True)  # offsets and lengths inside their buffers, or ArrowInvalid
    return array


# getattr appears in pickles only as ZoneInfo's private constructor; any other
# use (getattr(DataFrame, "to_csv")...) would hand out arbitrary methods.
_SAFE_GETATTR = frozenset([("ZoneInfo", "_unpickle")])


def _restricted_getattr(obj: Any, name: str) -> Any:
    if (getattr(obj, "__name__", None), name) in _SAFE_GETATTR and obj.__module__ == "zoneinfo":
        return _zoneinfo_unpickle  # ZoneInfo._unpickle(key, from_cache), its key checked first
    raise UntrustedTypeError(f"refusing getattr({obj!r}, {name!r}) in a worker's pickle")



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

