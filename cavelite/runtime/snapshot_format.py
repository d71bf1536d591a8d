"""The worker's side of a snapshot's bytes: each variable pickled by dill, packed with its cells.

A snapshot is made here and restored by another worker (`restore.SnapshotLoader`
loads its variables). What travels is an outer layer of plain data, which the
restoring worker decodes without loading any global (so a taken worker's bytes
reach nothing before the loader's rules apply): the variables' pickles, their
descriptions, the injected types' names and the *source* of every cell this
worker compiled, because a cell's function is compiled again from it on
restore, never taken from the pickled bytecode. Guard functions travel by
name, never pickled with the guard they are bound to.
"""

from __future__ import annotations

import io
import linecache
import pickle
import re
from dataclasses import dataclass
from typing import Any

from ..security.decode import loads_plain

# The blob's version (the host's header has its own, `Snapshot._MAGIC`): 3 carries the cells'
# sources. An older blob has none, so its functions could not be compiled again: refused.
FORMAT = 3

CELL_FILENAME_PREFIX = "<cell-"
CELL_FILENAME = re.compile(r"<cell-(\d+)>")


@dataclass(frozen=True)
class SnapshotState:
    variables: dict[str, bytes]
    descriptions: dict[str, str]
    types: list[str]
    sources: dict[str, str]  # cell filename -> its source (the code of its functions)


def pack_snapshot(variables: dict[str, bytes], descriptions: dict[str, str], types_: list[str],
                  sources: dict[str, str] | None = None) -> bytes:
    return pickle.dumps({"format": FORMAT, "vars": variables, "descriptions": dict(descriptions),
                         "types": list(types_), "sources": dict(sources or {})}, protocol=5)


def cell_sources() -> dict[str, str]:
    """The source of every cell this worker compiled (kept for tracebacks), by filename."""
    return {name: "".join(entry[2]) for name, entry in list(linecache.cache.items())
            if type(name) is str and CELL_FILENAME.fullmatch(name) and len(entry) > 2}


def parse_snapshot(blob: bytes) -> SnapshotState:
    state = loads_plain(blob, budget=4 * len(blob) + (64 << 20))  # mostly bytes: ~1x
    if (type(state) is not dict or type(state.get("vars")) is not dict
            or type(state.get("descriptions")) is not dict or type(state.get("types")) is not list):
        raise ValueError("not a snapshot of this cavelite version")
    if state.get("format") != FORMAT:
        made = state.get("format")
        if made is None or (type(made) is int and made < FORMAT):
            from .snapshot import older_snapshot_message

            raise ValueError(older_snapshot_message())
        raise ValueError("not a snapshot of this cavelite version")
    variables = {k: v for k, v in state["vars"].items() if type(k) is str and type(v) is bytes}
    descriptions = {k: v for k, v in state["descriptions"].items()
                    if type(k) is str and type(v) is str}
    raw_sources = state.get("sources")
    sources = {k: v for k, v in raw_sources.items()
               if type(k) is str and CELL_FILENAME.fullmatch(k) and type(v) is str} \
        if type(raw_sources) is dict else {}
    return SnapshotState(variables, descriptions, [t for t in state["types"] if type(t) is str],
                         sources)


def last_cell_number(sources: dict[str, str]) -> int:
    """The highest cell number in these filenames (the restoring worker counts on from it)."""
    numbers = [int(m.group(1)) for name in sources if (m := CELL_FILENAME.fullmatch(name))]
    return max(numbers, default=0)


GUARD_TAG = "guard"


def guard_entries(namespace: dict[str, Any]) -> dict[int, str]:
    """The namespace's guard functions by identity: they travel by name (a restoring worker
    uses its own), never pickled with the guard they are bound to."""
    from ..security.transformer import is_reserved

    return {id(value): name for name, value in namespace.items()
            if is_reserved(name) and name not in ("__name__", "__builtins__")
            and not isinstance(value, (str, int))}


def dumps_variable(value: Any, entries: dict[int, str] | None = None) -> bytes:
    import dill

    class _Pickler(dill.Pickler):  # type: ignore[misc]
        def persistent_id(self, obj: Any) -> Any:
            name = (entries or {}).get(id(obj))
            return (GUARD_TAG, name) if name is not None else None

    out = io.BytesIO()
    _Pickler(out, recurse=True).dump(value)
    return out.getvalue()
