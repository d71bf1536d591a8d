"""The cavelite exception tree.

    CaveliteError                     root: catch this to catch everything of ours
    ├── CaveRuntimeError               the runtime (zygote/worker) failed us
    │   ├── RuntimeClosedError         you closed the runtime (your code's doing)
    │   ├── WorkerDiedError            the worker died outside a cell (with .exitcode/.signal)
    │   └── ProtocolError              the worker sent bytes we refuse to decode
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


class RuntimeClosedError(CaveRuntimeError):
    """The runtime was closed by the caller; it cannot be used any more."""


class WorkerDiedError(CaveRuntimeError):
    """The worker process died while no cell was running, or could not recover.

    ``exitcode`` and ``signal`` say how, when known.
    """

    def __init__(self, message: str, *, exitcode: int | None = None, signal: int | None = None):
        super().__init__(message)
        self.exitcode = exitcode
        self.signal = signal


class ProtocolError(CaveRuntimeError):
    """The worker sent a message the host refuses to decode or does not understand."""


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
