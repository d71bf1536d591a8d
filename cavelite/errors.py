"""The cavelite exception tree.

    CaveliteError                     root: catch this to catch everything of ours
    ├── ClosedError                    you closed it (your code's doing)
    │   ├── RuntimeClosedError         ... the runtime (also a CaveRuntimeError)
    │   └── AgentClosedError           ... the agent (also a CaveUsageError)
    ├── CaveRuntimeError               the runtime (zygote/worker) failed us
    │   ├── WorkerDiedError            the worker died outside a cell (.variables_lost says more)
    │   │   └── RequestTimeoutError    ... because it did not answer a request in time
    │   └── ProtocolError              the worker sent bytes we refuse to decode or obey
    ├── TransferError                  a value could not cross the boundary
    │   ├── UnpicklableValueError      the value cannot be copied (socket, lock, ...)
    │   └── UntrustedTypeError         retrieve met a type outside the allowlist
    ├── CaveUsageError                 bad arguments to our API (bad name, unknown variable)
    │   └── VariableNotFoundError
    ├── PolicyError                    policy construction problems (not cell violations)
    └── ModelError                     a model provider failed (wraps the SDK error as __cause__)

Failures *inside* a cell are not exceptions in the host: they come back as
`CellResult.error` so the caller (often an agent loop) can show them to a model.
"""

from __future__ import annotations


class CaveliteError(Exception):
    """Root of every error cavelite raises."""


class CaveRuntimeError(CaveliteError):
    """The runtime itself failed (not the code in a cell)."""


class ClosedError(CaveliteError):
    """The object was closed by the caller; it cannot be used any more."""


class RuntimeClosedError(ClosedError, CaveRuntimeError):
    """The runtime was closed by the caller; it cannot be used any more."""


class WorkerDiedError(CaveRuntimeError):
    """The worker process died while serving a request (not a cell), or could not recover.

    ``variables_lost`` is False when the checkpoint took over with the namespace
    as it was before the request, True when a fresh worker had to be started.
    (A worker is not the host's child, so its exit status is not known here.)
    """

    def __init__(self, message: str, *, variables_lost: bool = False):
        super().__init__(message)
        self.variables_lost = variables_lost


class RequestTimeoutError(WorkerDiedError):
    """The worker did not answer a request (``variables``, ``retrieve``...) before its deadline.

    It was stopped and replaced as after a crash; ``variables_lost`` says how.
    A cell-made ``__repr__``, ``__del__`` or ``__getstate__`` that spins is the usual cause.
    """


class ProtocolError(CaveRuntimeError):
    """The worker sent a message the host refuses to decode, does not expect, or will not obey."""


class TransferError(CaveliteError):
    """A value could not be moved between the host and the worker."""


class UnpicklableValueError(TransferError):
    """The value cannot be serialized (for example a socket or a lock)."""


class UntrustedTypeError(TransferError):
    """``retrieve`` met a type that is not on the allowlist; pass ``trusted=True`` to accept it."""


class CaveUsageError(CaveliteError, ValueError):
    """The API was called with arguments that cannot work."""


class VariableNotFoundError(CaveUsageError, KeyError):
    """No variable of that name exists in the runtime's namespace."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class PolicyError(CaveliteError, ValueError):
    """A security policy was built with invalid settings."""


class AgentClosedError(ClosedError, CaveUsageError):
    """The agent was closed by the caller; it cannot be used any more."""


class ModelError(CaveliteError):
    """A model provider failed; the provider's own error is ``__cause__``.

    ``status`` is the HTTP status when there was one; ``retryable`` says whether
    retrying may help (429, 5xx, overloaded, connection failures). ``kind`` names
    the cause, so a caller can tell the user what to check:

    - ``connection``: the server could not be reached, or the connection broke
    - ``timeout``: the call took longer than its time limit
    - ``status``: the server answered with an HTTP error (see ``status``)
    - ``empty_reply``: the server answered, but with no text at all
    - ``bad_stream``: the reply stream ended early or made no sense
    - ``unknown_model``: the server does not serve the model asked for
    - ``setup``: something is missing on this side (an optional package)
    - ``provider``: anything else the provider reported
    """

    KINDS = ("connection", "timeout", "status", "empty_reply", "bad_stream", "unknown_model",
             "setup", "provider")

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 kind: str | None = None):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.kind = kind or ("status" if status is not None else "provider")
