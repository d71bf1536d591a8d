"""Snapshots inside the worker: each variable pickled by dill, restored into the live namespace.

A snapshot is made by one worker and restored by another, so on restore its
bytes are as untrusted as any cell. Two rules follow. The outer layer is
plain data, decoded without loading any global. And a function that a cell
defined is rebuilt with the *restoring* worker's namespace as its globals:
dill would otherwise give it a fresh globals dict with the real builtins (a
real ``open`` and ``__import__``) and the guards as they were pickled, not
the cave's own.
"""

from __future__ import annotations

import functools
import io
import pickle
import types
from dataclasses import dataclass
from typing import Any

from ..security.decode import loads_plain

CELL_FILENAME_PREFIX = "<cell-"


@dataclass(frozen=True)
class SnapshotState:
    variables: dict[str, bytes]
    descriptions: dict[str, str]
    types: list[str]


def pack_snapshot(variables: dict[str, bytes], descriptions: dict[str, str], types_: list[str]) -> bytes:
    return pickle.dumps({"vars": variables, "descriptions": dict(descriptions),
                         "types": list(types_)}, protocol=5)


def parse_snapshot(blob: bytes) -> SnapshotState:
    state = loads_plain(blob)
    if (type(state) is not dict or type(state.get("vars")) is not dict
            or type(state.get("descriptions")) is not dict or type(state.get("types")) is not list):
        raise ValueError("not a snapshot of this cavelite version")
    variables = {k: v for k, v in state["vars"].items() if type(k) is str and type(v) is bytes}
    descriptions = {k: v for k, v in state["descriptions"].items()
                    if type(k) is str and type(v) is str}
    return SnapshotState(variables, descriptions, [t for t in state["types"] if type(t) is str])


def dumps_variable(value: Any) -> bytes:
    import dill

    return bytes(dill.dumps(value, recurse=True))


def loads_variable(raw: bytes, namespace: dict[str, Any]) -> Any:
    import dill

    class _Loader(dill.Unpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == ("dill._dill", "_create_function"):
                return functools.partial(_create_function, namespace)
            return super().find_class(module, name)

    return _Loader(io.BytesIO(raw)).load()


def _create_function(namespace: dict[str, Any], fcode: Any, fglobals: Any, fname: Any = None,
                     fdefaults: Any = None, fclosure: Any = None, fdict: Any = None,
                     fkwdefaults: Any = None) -> Any:
    import dill._dill

    if not (type(fcode) is types.CodeType and fcode.co_filename.startswith(CELL_FILENAME_PREFIX)):
        # Code the host injected by value: rebuilt as dill would (it runs contained by
        # the audit hook and the kernel, as it did when it was injected).
        return dill._dill._create_function(fcode, fglobals, fname, fdefaults, fclosure, fdict,
                                           fkwdefaults)
    func = types.FunctionType(fcode, namespace, fname, fdefaults, fclosure)
    if fdict:
        func.__dict__.update(fdict)
    if fkwdefaults is not None:
        func.__kwdefaults__ = fkwdefaults
    return func
