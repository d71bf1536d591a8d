"""Budgets: what one decode of a worker's pickle may cost the host.

A pickle is a program: one byte can make a 216-byte set, a few bytes can make a
dict insert quadratic (integers that hash alike), a small argument can make a
constructor allocate gigabytes. Every decode therefore runs against a memory
budget (an estimate of what it built, checked as it goes) and builds dicts and
sets with keys whose hashes a worker can choose under a collision bound
(`MAX_SAME_HASH`). Values whose size is already in the frame (strings, bytes,
out-of-band buffers) are counted by what they cost, not refused.

This module holds what both decoders charge against (`decode_plain`'s opcode
loop and `decode_guarded`'s unpickler): the budget and its error, the
collision bound, and the per-object size estimates.
"""

from __future__ import annotations

import collections
import sys
from typing import Any

from ..errors import UntrustedTypeError

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

_sizeof = sys.getsizeof  # what a long str, bytes or int actually takes
