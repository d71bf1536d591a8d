"""Serving a cell's remote calls in the host, and knowing when one is being served.

A cell's proxy sends `Call`; the host decodes the arguments with the
restricted decoder (host objects come back by reference), runs the function
or attribute read with the host's privileges, and encodes the result (plain
data copied, anything else as a new remote reference). A tool may use the
runtime whose cell called it: `serving` tells `Runtime` it runs nested in one
of its own calls, so it must not wait for its own lock.
"""

from __future__ import annotations

import contextvars
import pickle
from typing import Any

from ..errors import UntrustedTypeError
from . import codec
from .messages import Call, CallResult
from .registry import RemoteRegistry

# Runtimes (by id) whose remote call is running in this context (it follows threads
# a tool hops to, since asyncio.to_thread and run_in_executor copy the context).
_SERVING: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "cavelite_serving", default=frozenset()
)


def serving(runtime_id: int) -> bool:
    return runtime_id in _SERVING.get()


def serve(call: Call, buffers: list[Any], registry: RemoteRegistry, types_: dict[str, type],
          loop: Any, *, nested_in: int) -> tuple[CallResult, list[Any]]:
    """Run one remote call; its failure is the cell's exception, never the host's."""
    try:
        decoded = codec.decode_from_worker(call.payload, buffers, types_=types_,
                                           refs=registry.objects)
        if not (type(decoded) is tuple and len(decoded) == 2 and type(decoded[0]) is tuple
                and type(decoded[1]) is dict and all(type(k) is str for k in decoded[1])):
            raise TypeError("malformed call arguments")
        token = _SERVING.set(_SERVING.get() | {nested_in})
        try:
            result = registry.resolve(call.op, call.ref, call.name, *decoded, loop=loop)
        finally:
            _SERVING.reset(token)
        payload, out = codec.encode_call_result(result, registry, types_)
        return CallResult(True, payload, "", ""), out
    except Exception as exc:
        return _error(exc), []


def _error(exc: Exception) -> CallResult:
    message = str(exc)
    if isinstance(exc, UntrustedTypeError):
        return CallResult(False, b"", "TypeError", "an argument cannot be sent to the host: only "
                          f"plain data, numpy, pandas and injected types travel ({exc})")
    if isinstance(exc, (TypeError, pickle.PicklingError)) and "pickle" in message:
        return CallResult(False, b"", "TypeError",
                          f"the remote result cannot be copied into the cave: {message}")
    return CallResult(False, b"", type(exc).__name__, message)
