"""cavelite: an LLM operating a live, contained Python runtime.

The model sees names, types, shapes and bounded summaries (the semantic
stream); the real objects live in a worker process (the runtime stream).
"""

from .agent import CaveLite
from .errors import (
    CaveliteError,
    CaveRuntimeError,
    CaveUsageError,
    ModelError,
    PolicyError,
    ProtocolError,
    RuntimeClosedError,
    TransferError,
    UnpicklableValueError,
    UntrustedTypeError,
    VariableNotFoundError,
    WorkerDiedError,
)
from .events import (
    CellFinished,
    CellRecord,
    CodeExtracted,
    Event,
    FinalAnswer,
    ModelReplied,
    ModelRetrying,
    PolicyViolated,
    Reply,
    StepStats,
    Stopped,
    StopReason,
    TextDelta,
    Usage,
)
from .runtime import CellError, CellResult, Injected, Runtime, Snapshot, VariableInfo, Violation
from .security import Policy

__all__ = [
    "CaveLite",
    "CaveRuntimeError",
    "CellFinished",
    "CellRecord",
    "CodeExtracted",
    "Event",
    "FinalAnswer",
    "ModelReplied",
    "ModelRetrying",
    "PolicyViolated",
    "Reply",
    "StepStats",
    "StopReason",
    "Stopped",
    "TextDelta",
    "Usage",
    "CaveUsageError",
    "CaveliteError",
    "CellError",
    "CellResult",
    "Injected",
    "ModelError",
    "Policy",
    "PolicyError",
    "ProtocolError",
    "Runtime",
    "RuntimeClosedError",
    "Snapshot",
    "TransferError",
    "UnpicklableValueError",
    "UntrustedTypeError",
    "VariableInfo",
    "VariableNotFoundError",
    "Violation",
    "WorkerDiedError",
]
__version__ = "0.1.0"
