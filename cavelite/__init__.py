"""cavelite: an LLM operating a live, contained Python runtime.

The model sees names, types, shapes and bounded summaries (the semantic
stream); the real objects live in a worker process (the runtime stream).

Names are imported on first use (PEP 562): ``import cavelite`` stays light,
and a worker process, which imports ``cavelite.runtime``, never loads the
agent, the events or any model code.
"""

import typing as _typing
from importlib import import_module as _import_module

from .errors import (
    AgentClosedError,
    CaveliteError,
    CaveRuntimeError,
    CaveUsageError,
    ClosedError,
    ModelError,
    PolicyError,
    ProtocolError,
    RequestTimeoutError,
    RuntimeClosedError,
    TransferError,
    UnpicklableValueError,
    UntrustedTypeError,
    VariableNotFoundError,
    WorkerDiedError,
)

if _typing.TYPE_CHECKING:
    from .agent import CaveLite
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
    )
    from .runtime import (
        DEFAULT,
        CellError,
        CellResult,
        Figure,
        Injected,
        Runtime,
        Snapshot,
        VariableInfo,
    )
    from .security import Policy, Violation
    from .usage import Usage

# Public name -> the module that defines it (imported when the name is first used).
_LAZY = {
    "CaveLite": ".agent",
    **dict.fromkeys(
        ["CellFinished", "CellRecord", "CodeExtracted", "Event", "FinalAnswer", "ModelReplied",
         "ModelRetrying", "PolicyViolated", "Reply", "StepStats", "Stopped", "StopReason", "TextDelta"],
        ".events",
    ),
    **dict.fromkeys(["DEFAULT", "CellError", "CellResult", "Figure", "Injected", "Runtime", "Snapshot",
                     "VariableInfo"], ".runtime"),
    "Policy": ".security",
    "Violation": ".security",
    "Usage": ".usage",
}

__all__ = [
    "DEFAULT",
    "AgentClosedError",
    "CaveLite",
    "CaveRuntimeError",
    "CaveUsageError",
    "CaveliteError",
    "CellError",
    "CellFinished",
    "CellRecord",
    "CellResult",
    "Figure",
    "ClosedError",
    "CodeExtracted",
    "Event",
    "FinalAnswer",
    "Injected",
    "ModelError",
    "ModelReplied",
    "ModelRetrying",
    "Policy",
    "PolicyError",
    "PolicyViolated",
    "ProtocolError",
    "Reply",
    "RequestTimeoutError",
    "Runtime",
    "RuntimeClosedError",
    "Snapshot",
    "StepStats",
    "StopReason",
    "Stopped",
    "TextDelta",
    "TransferError",
    "UnpicklableValueError",
    "UntrustedTypeError",
    "Usage",
    "VariableInfo",
    "VariableNotFoundError",
    "Violation",
    "WorkerDiedError",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cavelite' has no attribute {name!r}")
    value = getattr(_import_module(module, __name__), name)
    globals()[name] = value  # the next lookup is an ordinary attribute read
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
