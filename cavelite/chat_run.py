"""One chat's state, and the small pure pieces around it: history in, events out to the log.

`CaveLite` keeps the conversation across chats; what belongs to a single
chat (its steps, cells, usage, why it stopped) lives in a `ChatRun` that the
loop, the model call and the completion check all read, and that becomes
the chat's `Reply`. Kept apart from the loop so each piece can be read
(and tested) without the rest of `cavelite.agent`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cavelite import telemetry
from cavelite.errors import CaveUsageError, ModelError
from cavelite.events import (
    CellFinished,
    CellRecord,
    CodeExtracted,
    Event,
    ModelReplied,
    ModelRetrying,
    PolicyViolated,
    Reply,
    StepStats,
    Stopped,
    StopReason,
    TextDelta,
)
from cavelite.extract import Extraction
from cavelite.models.base import Message
from cavelite.runtime.results import CellResult
from cavelite.usage import Usage

log = logging.getLogger("cavelite.agent")  # the agent's logger: what users filter on


@dataclass
class ChatRun:
    """What one chat has gathered so far."""

    started: float
    usage: Usage = field(default_factory=Usage)
    steps: int = 0
    cells: list[CellRecord] = field(default_factory=list)
    stats: list[StepStats] = field(default_factory=list)
    last_text: str = ""
    request: str = ""
    held: set[str] = field(default_factory=set)  # the runtime's names when the chat began
    nudges: int = 0  # the completion check sends the model back at most twice per chat
    repeated: bool = False  # the last block was a repeat the loop refused to run
    reason: StopReason | None = None
    detail: str = ""
    error: ModelError | None = None
    trace: telemetry.NoTrace = telemetry.NO_TRACE  # OpenTelemetry spans, when installed

    def stop(self, reason: StopReason, detail: str = "", error: ModelError | None = None) -> None:
        self.reason, self.detail, self.error = reason, detail, error

    def wall_left(self, max_wall_s: float | None) -> float | None:
        """Seconds left of a ``max_wall_s`` budget (None: no budget)."""
        if max_wall_s is None:
            return None
        return max_wall_s - (time.monotonic() - self.started)

    def out_of_budget(self, cancelled: bool, max_tokens_total: int | None, max_wall_s: float | None) -> bool:
        """Check cancel and budgets before a model call; record why if stopping."""
        if cancelled:
            self.stop(StopReason.CANCELLED, "cancelled")
        elif max_tokens_total is not None and self.usage.total_tokens >= max_tokens_total:
            self.stop(
                StopReason.BUDGET,
                f"token budget of {max_tokens_total} used up ({self.usage.total_tokens})",
            )
        elif (left := self.wall_left(max_wall_s)) is not None and left <= 0:
            self.stop(StopReason.BUDGET, f"wall-time budget of {max_wall_s}s used up")
        return self.reason is not None

    def cell_timeout(self, cell_timeout: float | None, max_wall_s: float | None) -> float | None:
        """A cell's time limit: the agent's ``cell_timeout``, cut to what is left of the wall budget."""
        left = self.wall_left(max_wall_s)
        if left is None:
            return cell_timeout
        left = max(0.001, left)
        return left if cell_timeout is None else min(cell_timeout, left)

    def reply(self) -> Reply:
        return Reply(
            text=self.last_text,
            stop_reason=self.reason or StopReason.COMPLETED,
            steps=self.steps,
            usage=self.usage,
            cells=tuple(self.cells),
            step_stats=tuple(self.stats),
            wall_s=time.monotonic() - self.started,
            detail=self.detail,
            error=self.error,
        )


def history_from(history: Iterable[Message | Mapping[str, Any]]) -> list[Message]:
    """Messages from `Message`s or their plain JSON form; `CaveUsageError` names a bad item."""
    if isinstance(history, str | bytes | Mapping):
        raise CaveUsageError("history is a list of messages, not a single str or dict")
    messages = []
    for index, item in enumerate(history):
        try:
            messages.append(Message.from_dict(dict(item) if isinstance(item, Mapping) else item))
        except CaveUsageError as exc:
            raise CaveUsageError(f"history[{index}]: {exc}") from None
    return messages


def log_event(event: Event) -> None:
    """Steps, cells, retries and stops go to the ``cavelite`` logger at INFO; text deltas at DEBUG."""
    if isinstance(event, TextDelta):
        log.debug("step %d: %d characters of text", event.step, len(event.text))
    elif isinstance(event, ModelReplied):
        log.info("step %d: the model replied in %.2f s (%d tokens)", event.step, event.wall_s,
                 event.usage.total_tokens)
    elif isinstance(event, ModelRetrying):
        log.info("step %d: model call failed (%s); retry %d of %d in %.1f s", event.step, event.reason,
                 event.attempt, event.max_retries, event.delay_s)
    elif isinstance(event, CodeExtracted):
        log.debug("step %d: running a cell of %d lines", event.step, event.code.count("\n") + 1)
    elif isinstance(event, CellFinished):
        outcome = "ok" if event.result.ok else event.result.error.kind if event.result.error else "failed"
        log.info("step %d: cell %s in %.3f s", event.step, outcome, event.result.duration_s)
    elif isinstance(event, Stopped):
        reply = event.reply
        log.info("chat stopped: %s after %d step(s), %.2f s%s", event.reason.value, reply.steps,
                 reply.wall_s, f" ({reply.detail})" if reply.detail else "")


def cell_event(step: int, extraction: Extraction, result: CellResult, observation: str) -> CellFinished:
    """The event for a cell that ran: a policy refusal is a `PolicyViolated`, so callers can tell."""
    if result.error is not None and result.error.kind == "policy":
        return PolicyViolated(step, extraction.code or "", result, observation)
    return CellFinished(step, extraction.code or "", result, observation)
