"""The plain-data decoders: pickles with no globals and no persistent ids.

Plain data (lists, dicts, numbers, strings) cannot reach any pre-existing
object. Up to `SMALL_PICKLE` bytes it goes to the C unpickler with every
global refused (`PlainUnpickler`; nothing that small costs much); larger, and
every message head, to `decode_plain`, a linear, budgeted decoder of plain
opcodes. Either raises `NeedsGlobals` on anything else, which then takes the
guarded path (`decode_guarded`) or, in a message head, is refused.
"""

from __future__ import annotations

import functools
import pickle
import struct
from typing import Any

from .decode_budget import (
    _DICT,
    _LIST,
    _PER_BYTE,
    _PER_ITEM_DICT,
    _PER_ITEM_SET,
    _SAFE_KEY_TYPES,
    _SET,
    _TUPLE,
    _KeyGuard,
    _over_budget,
    _sizeof,
)


class _NeedsGlobals(Exception):
    """The plain-data fast path met a global or a persistent id: use the guarded path."""


NeedsGlobals = _NeedsGlobals  # what `decode_plain` raises on an opcode it does not build


class PlainUnpickler(pickle.Unpickler):
    """The C unpickler, refusing every global and persistent id: plain data only."""

    def find_class(self, module: str, name: str) -> Any:
        raise _NeedsGlobals(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise _NeedsGlobals(pid)


_unpack_float = struct.Struct(">d").unpack_from
_unpack_i4 = struct.Struct("<i").unpack_from
_unpack_u4 = struct.Struct("<I").unpack_from
_unpack_u8 = struct.Struct("<Q").unpack_from
_unpack_u2 = struct.Struct("<H").unpack_from
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

