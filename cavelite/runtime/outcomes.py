"""Replies and failures, turned into what `Runtime` returns (`CellResult`) or raises.

A cell's failure is a result, never an exception; a request's failure is an
exception from the `CaveliteError` tree, saying whether the variables survived.
"""

from __future__ import annotations

from ..errors import (
    CaveRuntimeError,
    ProtocolError,
    RequestTimeoutError,
    TransferError,
    UnpicklableValueError,
    UntrustedTypeError,
    VariableNotFoundError,
    WorkerDiedError,
)
from .messages import CellReply, ErrorCode, Failure
from .results import CellError, CellResult
from .session import Failed

_LOST = " The worker was restarted: variables were lost."


def cell_result(reply: CellReply, limit: float | None, wall: float, lost: bool) -> CellResult:
    error = reply.error
    if error is not None and error.kind == "timeout" and error.type == "Timeout":
        # atomic=False: SIGINT stopped the cell at its deadline and its effects stay.
        error = CellError("timeout", "Timeout", f"the cell ran longer than {limit:g} s and was "
                          "interrupted; its partial effects were kept (atomic=False).",
                          error.traceback)
    elif error is not None and lost:
        error = CellError(error.kind, error.type, error.message + _LOST, error.traceback,
                          error.line, error.violations)
    return CellResult(
        ok=reply.ok, stdout=reply.stdout, stderr=reply.stderr, value_repr=reply.value_repr,
        error=error, duration_s=reply.duration_s if reply.ok else wall, changed=reply.changed,
        deleted=reply.deleted, stdout_truncated=reply.stdout_truncated,
        output_index=reply.output_index, rolled_back=reply.rolled_back and not lost,
        figures=reply.figures,
    )


def failed_cell(failed: Failed, limit: float | None, wall: float, *,
                interrupted: bool = False) -> CellResult:
    lost = _LOST if failed.recovery.lost else ""
    crash = failed.recovery.crash
    if interrupted and failed.why == "crash":
        error = CellError("interrupted", "Interrupted", f"the cell was interrupted "
                          f"(Runtime.interrupt).{lost}")
    elif failed.why == "timeout":
        error = CellError("timeout", "Timeout", f"the cell ran longer than {limit:g} s and was "
                          f"stopped.{lost}")
    elif failed.why == "protocol":
        error = CellError("crash", "ProtocolError", f"the worker broke the protocol "
                          f"({failed.detail}) and was stopped.{lost}")
    elif failed.why == "superseded":
        error = CellError("crash", "WorkerCrash", "a request that a remote tool made during the "
                          f"cell failed, so the cell was rolled back.{lost}")
    else:
        detail = crash.strip().splitlines()[0] if crash.strip() else "the worker process died"
        traceback = "\n".join(line for line in crash.splitlines()
                              if line.strip().startswith('File "<cell-'))
        error = CellError("crash", "WorkerCrash", f"{detail}.{lost}", traceback=traceback)
    return CellResult(ok=False, error=error, duration_s=wall, rolled_back=not failed.recovery.lost)


def request_error(failed: Failed, what: str, timeout: float) -> CaveRuntimeError:
    lost = failed.recovery.lost
    after = (" A fresh worker was started: variables were lost." if lost else
             " Its checkpoint took over: the namespace is as it was before the request.")
    if failed.why == "timeout":
        return RequestTimeoutError(
            f"the worker did not answer `{what}` within {timeout:g} s and was stopped (a value's "
            f"__repr__, __del__ or __getstate__ may never return).{after}", variables_lost=lost)
    if failed.why == "protocol":
        return ProtocolError(f"the worker broke the protocol during `{what}` ({failed.detail}) "
                             f"and was stopped.{after}")
    return WorkerDiedError(f"the worker died during `{what}`.{after}", variables_lost=lost)


def failure_error(reply: Failure, missing: str | None) -> Exception:
    if reply.code is ErrorCode.NOT_FOUND:
        return VariableNotFoundError(f"no variable named {missing!r} in the runtime")
    if reply.code is ErrorCode.CELL_MADE_TYPE:
        return UntrustedTypeError(reply.message)
    if reply.code is ErrorCode.UNPICKLABLE:
        return UnpicklableValueError(reply.message)
    if reply.code in (ErrorCode.TOO_LARGE, ErrorCode.NEEDS_BY_VALUE):
        return TransferError(reply.message)
    return CaveRuntimeError(reply.message)
