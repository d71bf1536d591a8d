"""The guarded unpickler: worker pickles that name globals or persistent ids.

A pickle can name any importable callable, call it with any arguments, and
then *modify* what it got back (``BUILD`` runs ``__setstate__`` or writes
attributes; ``APPEND``/``SETITEM`` fill containers). `GuardedUnpickler` is
the pure-Python unpickler with every opcode that matters wrapped:

- `find_class` admits only the allowlist (`decode_allowlist`); injected
  classes come as persistent ids, host objects as inert `RemotePlaceholder`s.
- Objects the decoder did not create itself in this decode (allowlisted
  globals, injected classes, anything a constructor returned that others
  already hold, such as an enum member or numpy's cached ``float64`` dtype)
  are never the target of ``BUILD``, ``APPEND(S)``, ``SETITEM(S)`` or
  ``ADDITEMS``. "Created here" is checked on the spot: right after a
  constructor returns, nothing but the decoder may hold a reference to it.
- Reconstructors are called only as `decode_calls` allows, and every opcode
  is charged against the memory budget (`decode_budget`).
"""

from __future__ import annotations

import collections
import io
import pickle
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import UntrustedTypeError
from .decode_allowlist import ARROW_GLOBALS, REMOTE_TAG, SAFE_GLOBALS, TYPE_TAG
from .decode_budget import (
    _DICT,
    _PER_BYTE,
    _PER_ITEM_DICT,
    _PER_ITEM_LIST,
    _PER_ITEM_SET,
    _SET,
    DEFAULT_BUDGET,
    _KeyGuard,
    _over_budget,
    _sizeof,
)
from .decode_calls import (
    _call_policies,
    _check_dtype,
    _check_result,
    _refuse_call,
    _restricted_getattr,
    _validated_arrow_array,
    _walk_arguments,
)


class RemotePlaceholder:
    """Stands for a host object while a worker's pickle is decoded (`decode.loads_value`
    swaps the host object in afterwards, inside plain containers only)."""

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
        if (module, name) in SAFE_GLOBALS or (module, name) in ARROW_GLOBALS:
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

