"""What a chat produces: typed events, per-step stats, `Reply`, `Usage`, `StopReason`.

`CaveLite.stream()` yields the events below in order; `chat()` consumes the
same stream and returns the `Reply` carried by the last event, `Stopped`.
Everything here is a frozen dataclass of plain values, so events can be logged,
compared and sent to a UI without touching the runtime.

    Event
    ├── TextDelta        a piece of model text, as it streams
    ├── ModelRetrying    a model call failed and is retried: why, and after how long
    ├── ModelReplied     one model call finished (its text, usage, wall time)
    ├── CodeExtracted    the block that is about to run
    ├── CellFinished     a cell ran (or failed); ``observation`` is what the model will read
    │   └── PolicyViolated   ... refused by the policy before it ran
    ├── FinalAnswer      the model answered without code
    └── Stopped          always last: why the chat ended, and the `Reply`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from cavelite.errors import ModelError
from cavelite.runtime.results import CellResult
from cavelite.security.violation import Violation
from cavelite.usage import Usage


class StopReason(StrEnum):
    """Why a chat ended. Every stop leaves the history valid for the next chat."""

    COMPLETED = "completed"
    """The model answered without code."""
    MAX_STEPS = "max_steps"
    """The model was called ``max_steps`` times without giving an answer."""
    BUDGET = "budget"
    """The token budget or the wall-time budget ran out (``Reply.detail`` says which)."""
    CANCELLED = "cancelled"
    """`CaveLite.cancel()` was called."""
    MODEL_ERROR = "model_error"
    """The model provider failed, after retries; the runtime is untouched."""
    RUNTIME_ERROR = "runtime_error"
    """The runtime itself failed (not a cell): for example the worker could not be restarted."""
    STUCK = "stuck"
    """The model sent again a block it had been told not to repeat (``guard_repeats``):
    it is stuck, and the chat stops rather than spend its remaining steps."""


@dataclass(frozen=True)
class StepStats:
    """One step of a chat: a model call and, if the reply had code, the cell it ran."""

    step: int
    usage: Usage
    model_s: float
    cell_s: float = 0.0


@dataclass(frozen=True)
class CellRecord:
    """A cell the model wrote during a chat, and what came of it."""

    step: int
    code: str
    result: CellResult


@dataclass(frozen=True)
class Reply:
    """The outcome of one `CaveLite.chat()`.

    ``text`` is the final answer when ``stop_reason`` is ``completed``; after
    another stop it is the last text the model wrote in this chat (possibly
    empty). ``steps`` is the number of model replies; ``usage`` their sum.
    ``step_stats`` also lists a call that failed or was abandoned, with its time.
    ``error`` is the `ModelError` behind a ``model_error`` stop (its ``kind``,
    ``status`` and ``retryable`` say what went wrong), else None.
    """

    text: str
    stop_reason: StopReason
    steps: int
    usage: Usage
    cells: tuple[CellRecord, ...] = ()
    step_stats: tuple[StepStats, ...] = ()
    wall_s: float = 0.0
    detail: str = ""
    error: ModelError | None = field(default=None, compare=False, repr=False)

    @property
    def completed(self) -> bool:
        """True when the model gave its answer (``stop_reason`` is ``completed``)."""
        return self.stop_reason is StopReason.COMPLETED


@dataclass(frozen=True)
class Event:
    """Base of everything `CaveLite.stream()` yields."""


@dataclass(frozen=True)
class TextDelta(Event):
    step: int
    text: str


@dataclass(frozen=True)
class ModelRetrying(Event):
    """A model call failed with a retryable error; it is retried after ``delay_s`` seconds.

    ``attempt`` counts retries from 1 up to ``max_retries``; ``elapsed_s`` is
    the time the failed attempt took; ``status`` the HTTP status, if any.
    """

    step: int
    attempt: int
    max_retries: int
    delay_s: float
    reason: str
    status: int | None = None
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class ModelReplied(Event):
    step: int
    text: str
    usage: Usage
    wall_s: float


@dataclass(frozen=True)
class CodeExtracted(Event):
    step: int
    code: str
    ignored_blocks: int = 0


@dataclass(frozen=True)
class CellFinished(Event):
    step: int
    code: str
    result: CellResult
    observation: str


@dataclass(frozen=True)
class PolicyViolated(CellFinished):
    """A `CellFinished` whose cell the policy refused before it ran."""

    @property
    def violations(self) -> tuple[Violation, ...]:
        """The rules the cell broke, each with its line, snippet and hint."""
        return self.result.error.violations if self.result.error else ()


@dataclass(frozen=True)
class FinalAnswer(Event):
    step: int
    text: str


@dataclass(frozen=True)
class Stopped(Event):
    reason: StopReason
    reply: Reply = field(repr=False)
