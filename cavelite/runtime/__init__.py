"""The runtime stream: a persistent, contained namespace in a forked worker."""

from ..security.violation import Violation
from .config import DEFAULT
from .results import CellError, CellResult, Figure, Injected, VariableInfo
from .runtime import Runtime
from .snapshot import Snapshot

__all__ = ["DEFAULT", "CellError", "CellResult", "Figure", "Injected", "Runtime", "Snapshot", "VariableInfo",
           "Violation"]
