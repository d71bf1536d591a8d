"""What a cell gives back: `CellResult`, `CellError`, `VariableInfo`, `Figure`.

These are plain frozen dataclasses built in the host from decoded worker
messages, so they hold only strings and numbers: nothing model-made ever
runs in the host when you print or compare them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import CaveUsageError
from ..security.violation import Violation
from . import png

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
class Figure:
    """A figure a cell drew, as PNG bytes (``plt.show()``, left open, or the cell's value).

    Built in the host from a worker's message: the bytes are checked to be a
    PNG whose IHDR header says ``width`` x ``height``, never decoded as an image
    (`CaveUsageError` if they are not; the decoder makes that a `ProtocolError`).
    """

    mime_type: Literal["image/png"]
    width: int
    height: int
    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if self.mime_type != "image/png":
            raise CaveUsageError(f"a figure is image/png, not {self.mime_type!r:.40}")
        try:
            size = png.dimensions(self.data)
        except ValueError as exc:
            raise CaveUsageError(str(exc)) from None
        if size != (self.width, self.height):
            raise CaveUsageError("a figure whose PNG header disagrees with its width and height")

    def for_model(self) -> str:
        """What a model is told of it: that it exists and how big it is, not the pixels."""
        return f"{self.width}x{self.height} PNG, {_kb(len(self.data))}"

    def _repr_png_(self) -> bytes:  # shown as an image in Jupyter
        return self.data


def _kb(size: int) -> str:
    return f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} bytes"


@dataclass(frozen=True)
class CellResult:
    """The outcome of one `Runtime.execute` call.

    ``ok`` is True when the cell ran to the end. When it is False, ``error``
    says why and (in atomic mode) the namespace is exactly as before the cell.
    ``changed`` lists variables the cell created or changed, ``deleted`` the
    names it removed: enough for an agent to keep its picture of the state true.
    ``figures`` are the charts the cell drew, as checked PNG bytes.
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
    figures: tuple[Figure, ...] = ()

    def for_model(self) -> str:
        """Output, value, figures and error as one compact text for a model."""
        parts = []
        if self.stdout:
            parts.append(self.stdout.rstrip("\n"))
        if self.stderr:
            parts.append("[stderr]\n" + self.stderr.rstrip("\n"))
        if self.value_repr is not None:
            parts.append(f"[value] {self.value_repr}")
        for number, figure in enumerate(self.figures, 1):
            parts.append(f"[figure {number}] {figure.for_model()}, shown to the user")
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
