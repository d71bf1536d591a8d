"""The runtime stream: a persistent, contained namespace in a forked worker."""

from .results import CellError, CellResult, Injected, VariableInfo, Violation
from .runtime import DEFAULT, Runtime
from .snapshot import Snapshot

__all__ = ["DEFAULT", "CellError", "CellResult", "Injected", "Runtime", "Snapshot", "VariableInfo",
           "Violation"]
