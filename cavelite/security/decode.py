"""The host's restricted decoder for bytes that come from a worker.

Promise 4: the host never unpickles worker bytes with an unrestricted
unpickler, and decoding never changes an object the host already had. A
pickle can name any importable callable, call it with any arguments, and
then *modify* what it got back (``BUILD`` runs ``__setstate__`` or writes
attributes; ``APPEND``/``SETITEM`` fill containers). So:

- `find_class` admits only an explicit allowlist (`decode_allowlist`): plain
  data, datetime/decimal/fractions, numpy and pandas reconstruction entry
  points; injected classes travel as persistent ids, never as importable names.
- Objects the decoder did not create itself in this decode (allowlisted
  globals, injected classes, anything a constructor returned that others
  already hold, such as an enum member or numpy's cached ``float64`` dtype)
  are never the target of ``BUILD``, ``APPEND(S)``, ``SETITEM(S)`` or
  ``ADDITEMS``. "Created here" is checked on the spot: right after a
  constructor returns, nothing but the decoder may hold a reference to it
  (`decode_guarded`).
- A reference to a host object (a remote proxy the cell passes back) is
  decoded as an inert placeholder and swapped for the real object only
  after decoding, inside plain containers: no opcode ever sees it (here).
- Decoding costs what the bytes weigh (`decode_budget`): a memory budget
  charged as objects are made, at most `MAX_SAME_HASH` keys of one hash per
  dict or set, and reconstructors called only as honest pickles call them
  (`decode_calls`), so that no small pickle allocates from a size, computes
  a huge power, rebuilds a dtype with lying flags or names a file.

Plain data (no globals at all: lists, dicts, numbers, strings) cannot reach
any pre-existing object. Up to `SMALL_PICKLE` bytes it goes to the C
unpickler (nothing that small costs much); larger, to `decode_plain`, a
linear, budgeted decoder of plain opcodes (both in `decode_plain`). Anything
else goes through the guarded pure-Python unpickler (`decode_guarded`).

This module is the decoder's front: the entry points (`loads_value`,
`loads_plain`) and the names the rest of cavelite imports from it, whichever
of the modules above defines them. Imports run one way: ``decode`` ->
``decode_guarded`` -> ``decode_calls`` -> ``decode_allowlist``, with
``decode_plain`` and ``decode_guarded`` both on ``decode_budget``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import UntrustedTypeError
from .decode_allowlist import ARROW_GLOBALS, REMOTE_TAG, SAFE_GLOBALS, TYPE_TAG
from .decode_budget import DEFAULT_BUDGET, SMALL_PICKLE, DecodeLimitError
from .decode_guarded import GuardedUnpickler, RemotePlaceholder
from .decode_plain import NeedsGlobals, PlainUnpickler, decode_plain

# The names the runtime and the tests use, whichever module of the decoder defines them.
__all__ = [
    "ARROW_GLOBALS", "DEFAULT_BUDGET", "REMOTE_TAG", "SAFE_GLOBALS", "SMALL_PICKLE", "TYPE_TAG",
    "DecodeLimitError", "GuardedUnpickler", "NeedsGlobals", "PlainUnpickler", "RemotePlaceholder",
    "decode_plain", "loads_plain", "loads_value",
]


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
    except NeedsGlobals:
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
    except NeedsGlobals as exc:
        raise UntrustedTypeError(f"refusing a global in plain data: {exc.args!r}") from None
