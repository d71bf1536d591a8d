"""What a cell gives back: `CellResult`, `CellError`, `VariableInfo`.

These are plain frozen dataclasses built in the host from decoded worker
messages, so they hold only strings and numbers: nothing model-made ever
runs in the host when you print or compare them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..security.violation import Violation

ErrorKind = Literal["exception", "timeout", "crash", "memory", "policy", "output_limit", "interrupted"]


@dataclass(frozen=True)
class CellError:
    """Why a cell failed.

    ``kind`` is one of exception, timeout, crash, memory, policy, output_limit,
    interrupted (`Runtime.interrupt`).
    ``traceback`` lists only the cell's own frames, with the cell's own line
    numbers and source lines (plus the innermost library frame, if any).
    """

    kind: ErrorKind
    type: str
    message: str
    traceback: str = ""
    line: int | None = None
    violations: tuple[Violation, ...] = ()

    def for_model(self) -> str:
        """A compact text meant for a model to read and act on."""
        if self.kind == "policy":
            head = "PolicyViolation: the cell was refused before it ran (nothing changed)."
            return "\n".join([head, *(v.for_model() for v in self.violations)])
        if self.kind in ("timeout", "interrupted"):
            return f"Timeout: {self.message} The namespace is as it was before the cell."
        if self.kind in ("crash", "memory"):
            return f"{self.type}: {self.message} The namespace is as it was before the cell."
        text = self.traceback.rstrip() if self.traceback else ""
        last = f"{self.type}: {self.message}" if self.message else self.type
        if not text.endswith(last):
            text = f"{text}\n{last}" if text else last
        return text

    def __str__(self) -> str:
        return self.for_model()


@dataclass(frozen=True)
class VariableInfo:
    """A variable in the namespace, described without shipping its data."""

    name: str
    type_name: str
    summary: str
    description: str | None = None

    def for_model(self) -> str:
        """``name: type = summary  # description``, as the model's state block lists it."""
        text = f"{self.name}: {self.type_name} = {self.summary}"
        if self.description:
            text += f"  # {self.description}"
        return text


@dataclass(frozen=True)
class CellResult:
    """The outcome of one `Runtime.execute` call.

    ``ok`` is True when the cell ran to the end. When it is False, ``error``
    says why and (in atomic mode) the namespace is exactly as before the cell.
    ``changed`` lists variables the cell created or changed, ``deleted`` the
    names it removed: enough for an agent to keep its picture of the state true.
    """

    ok: bool
    stdout: str = ""
    stderr: str = ""
    value_repr: str | None = None
    error: CellError | None = None
    duration_s: float = 0.0
    changed: tuple[VariableInfo, ...] = ()
    deleted: tuple[str, ...] = ()
    stdout_truncated: bool = False
    output_index: int | None = None
    rolled_back: bool = False

    def for_model(self) -> str:
        """Output, value and error as one compact text for a model."""
        parts = []
        if self.stdout:
            parts.append(self.stdout.rstrip("\n"))
        if self.stderr:
            parts.append("[stderr]\n" + self.stderr.rstrip("\n"))
        if self.value_repr is not None:
            parts.append(f"[value] {self.value_repr}")
        if self.error is not None:
            parts.append(self.error.for_model())
        return "\n".join(parts) if parts else "(no output)"


@dataclass(frozen=True)
class Injected:
    """Something the host put into the runtime, as the model should learn of it."""

    name: str
    kind: Literal["value", "function", "object", "type"]
    type_name: str
    signature: str = ""
    doc: str = ""
    description: str | None = None
    is_async: bool = False
    methods: tuple[str, ...] = field(default_factory=tuple)
