"""The runtime stream: a persistent, contained namespace in a forked worker."""

from .results import CellError, CellResult, Injected, VariableInfo, Violation
from .runtime import Runtime, Snapshot

__all__ = ["CellError", "CellResult", "Injected", "Runtime", "Snapshot", "VariableInfo", "Violation"]
