"""`CaveLite`: the loop that lets a model operate a live Python runtime.

One chat is a sequence of steps. Each step calls the model; if its reply holds
a ```python block, the block runs in the runtime and an observation (output,
value, error, changed variables) goes back as the next user message; a reply
without code is the answer. Everything a caller can watch comes out of
`stream()` as typed events, and `chat()`/`achat()` are thin consumers of it.

The history is kept valid after every kind of stop (answer, step limit, budget,
cancel, model error, even an exception or task cancellation): it always reads
as alternating model replies and observations, so the next chat continues it.
This module never imports a provider SDK (see `cavelite.models`) and never
touches a pipe, fd or signal (see `cavelite.runtime`). It holds the loop and
its limits; one chat's state is `cavelite.chat_run`, one streamed model call
`cavelite.model_call`, the notes that steer a weak model `cavelite.guidance`,
and the runtime calls made through the agent `cavelite.agent_runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cavelite import guidance, prompt, telemetry
from cavelite.agent_runtime import RuntimeThroughAgent
from cavelite.chat_run import ChatRun, cell_event, history_from, log_event
from cavelite.compact import compact
from cavelite.errors import CaveRuntimeError, CaveUsageError
from cavelite.events import (
    CellRecord,
    CodeExtracted,
    Event,
    FinalAnswer,
    ModelReplied,
    Reply,
    StepStats,
    Stopped,
    StopReason,
)
from cavelite.extract import extract_code
from cavelite.model_call import call_model
from cavelite.models.base import Image, Message, Model, ModelReply, run_sync
from cavelite.runtime.results import Injected

if TYPE_CHECKING:
    from cavelite.runtime.like import RuntimeLike
    from cavelite.security import Policy

DEFAULT_CELL_TIMEOUT = 30.0
DEFAULT_MAX_OUTPUT_CHARS = 4000
DEFAULT_MAX_WALL_S = 900.0
DEFAULT_CALL_TIMEOUT = 180.0


class CaveLite(RuntimeThroughAgent):
    """An agent: a model, instructions, and a runtime it operates.

    ``runtime`` shares an existing `Runtime` (the agent then never closes it,
    and ``policy`` must be set on that runtime instead); otherwise the agent
    creates one with ``policy``, ``cell_timeout`` (30 s) and
    ``max_output_chars`` (4000). On a shared runtime those two default to the
    runtime's own settings.

    Each chat is bounded: ``max_steps`` model calls, ``max_wall_s`` seconds
    of wall-clock time (15 minutes by default), ``max_tokens_total`` tokens
    (all four kinds count, no limit by default), and each model call by
    ``call_timeout`` seconds (3 minutes by default), retries included, so a
    slow local model cannot run on silently. ``None`` lifts a limit.

    ``history`` resumes a conversation: `Message`s, or their plain JSON form
    (``[{"role": "user", "content": ...}, ...]``, what `history_records`
    gives), for example saved by another process together with a runtime
    snapshot.

    ``show_figures=True`` sends the figures a cell drew (matplotlib, preloaded by
    the runtime: ``preload=FIGURES_PRELOAD`` for a runtime the agent makes) to the
    model as images with the observation, so it can look at its own chart; the
    model must take images (`AnthropicModel` does). Without it the model is told
    only that a figure was made and how big it is.

    How the loop guards a weak model (each measured by ``benchmarks/agents``):
    ``guard_repeats`` does not run a block identical to the previous one (it
    would apply twice, or fail the same way) and says why, and stops the chat
    (`StopReason.STUCK`) when the model sends it yet again; ``check_completion``
    (off by default: on the benchmark it cost the 0.5B model steps and
    checkpoints) sends an answer back, at most twice per chat, when it is
    visibly not one; ``compact_history`` shortens turns
    older than the last ``keep_turns`` so long conversations stay bounded.
    """

    def __init__(
        self,
        model: Model,
        *,
        instructions: str = "",
        max_steps: int = 20,
        runtime: RuntimeLike | None = None,
        policy: Policy | None = None,
        preload: Iterable[str] | None = None,
        cell_timeout: float | None = None,
        max_output_chars: int | None = None,
        max_tokens_total: int | None = None,
        max_wall_s: float | None = DEFAULT_MAX_WALL_S,
        call_timeout: float | None = DEFAULT_CALL_TIMEOUT,
        history: Iterable[Message | Mapping[str, Any]] = (),
        show_figures: bool = False,
        guard_repeats: bool = True,
        check_completion: bool = False,
        compact_history: bool = True,
        keep_turns: int = 3,
    ) -> None:
        if not isinstance(model, Model):
            raise CaveUsageError(f"model must be a cavelite.models.Model, not {type(model).__name__}")
        if show_figures and not model.accepts_images:
            raise CaveUsageError(f"show_figures=True needs a model that takes images, and {model!r} "
                                 "does not (AnthropicModel does)")
        if max_steps < 1:
            raise CaveUsageError("max_steps must be at least 1")
        if runtime is not None and (policy is not None or preload is not None):
            raise CaveUsageError("pass policy and preload to the shared Runtime, not to the agent")
        for name, limit in (("max_wall_s", max_wall_s), ("call_timeout", call_timeout)):
            if limit is not None and limit < 0:
                raise CaveUsageError(f"{name} must be 0 or more, or None for no limit")
        resumed = history_from(history)  # checked before a runtime is started
        if runtime is not None:  # a shared runtime's own limits, unless told otherwise
            cell_timeout = runtime.cell_timeout if cell_timeout is None else cell_timeout
            max_output_chars = runtime.max_output_chars if max_output_chars is None else max_output_chars
        else:
            cell_timeout = DEFAULT_CELL_TIMEOUT if cell_timeout is None else cell_timeout
        self.model = model
        self.instructions = instructions
        self.max_steps = max_steps
        self.cell_timeout: float | None = cell_timeout  # None: the shared runtime sets no limit
        self.max_output_chars = DEFAULT_MAX_OUTPUT_CHARS if max_output_chars is None else max_output_chars
        self.max_tokens_total = max_tokens_total
        self.max_wall_s = max_wall_s
        self.call_timeout = call_timeout
        self.show_figures = bool(show_figures)
        self.guard_repeats = guard_repeats
        self.check_completion = check_completion
        self.compact_history = compact_history
        self.keep_turns = keep_turns
        self._owns_runtime = runtime is None
        if runtime is None:
            from cavelite.runtime import Runtime  # here, so importing cavelite stays light

            options: dict[str, Any] = {} if preload is None else {"preload": tuple(preload)}
            runtime = Runtime(cell_timeout=self.cell_timeout, max_output_chars=self.max_output_chars,
                              policy=policy, **options)
        self.runtime: RuntimeLike = runtime
        self._history: list[Message] = resumed
        self._injected_notes: dict[str, Injected] = {}
        self._busy = threading.Lock()  # one chat at a time: the history is a single thread of talk
        self._cancelled = threading.Event()
        self._wakers: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        self._wakers_lock = threading.Lock()
        self._cell_lock = threading.Lock()  # guards _cell_running: cancel() interrupts only a cell
        self._cell_running = False
        self._closed = False
        self._example = True  # the worked exchange in the system prompt (off only to measure it)

    @property
    def history(self) -> tuple[Message, ...]:
        """The conversation so far, exactly as the model is shown it (after the system prompt)."""
        return tuple(self._history)

    def history_records(self) -> list[dict[str, Any]]:
        """The history in its plain JSON form, which ``CaveLite(history=...)`` takes back."""
        return [message.to_dict() for message in self._history]

    def system_prompt(self) -> str:
        """The system prompt the model gets now: instructions plus what is injected."""
        injected = []
        for item in self.runtime.injected():
            note = self._injected_notes.get(item.name)
            if note is not None and (note.kind, note.type_name) == (item.kind, item.type_name):
                item = note  # the richer description, still about the same value
            injected.append(item)
        return prompt.system_prompt(
            self.instructions,
            injected,
            max_output_chars=self.max_output_chars,
            modules=self.runtime.preload,
            example=self._example,
        )

    # -- chatting ----------------------------------------------------------------
    def chat(self, message: str) -> Reply:
        """Send ``message`` and work until the model answers or a limit stops it."""
        return run_sync(self._chat_on_private_loop(message))

    async def _chat_on_private_loop(self, message: str) -> Reply:
        try:
            return await self.achat(message)
        finally:
            # The model's HTTP pool belongs to this short-lived loop: release it here.
            await self.model.aclose()

    async def achat(self, message: str) -> Reply:
        """Async `chat`."""
        reply: Reply | None = None
        async for event in self.stream(message):
            if isinstance(event, Stopped):
                reply = event.reply
        assert reply is not None  # stream() always ends with Stopped
        return reply

    def cancel(self) -> None:
        """Stop the running chat, from any thread.

        A model call is abandoned at once. A running cell is interrupted when
        the runtime is atomic (`Runtime.interrupt`: its checkpoint takes over,
        so the namespace is as it was before the cell); on a non-atomic runtime,
        or one without ``interrupt``, it is let finish (bounded by
        ``cell_timeout``) so nothing is lost. The chat then ends with
        `StopReason.CANCELLED`. Without a running chat, nothing happens.
        """
        if not self._busy.locked():
            return
        self._cancelled.set()
        self._interrupt_cell()
        with self._wakers_lock:
            wakers = list(self._wakers.items())
        for loop, waker in wakers:
            try:
                loop.call_soon_threadsafe(waker.set)
            except RuntimeError:  # that loop has just closed: its chat is over
                pass

    def _interrupt_cell(self) -> None:
        """Interrupt this agent's running cell, if any, where that loses nothing (atomic)."""
        with self._cell_lock:  # held until interrupt() returns: no later request can be hit
            interrupt = getattr(self.runtime, "interrupt", None)
            if self._cell_running and getattr(self.runtime, "atomic", False) and callable(interrupt):
                interrupt()

    async def stream(self, message: str) -> AsyncGenerator[Event, None]:
        """Chat, yielding `Event`s as they happen; the last one is always `Stopped`."""
        self._check_open()
        if not self._busy.acquire(blocking=False):
            raise CaveUsageError("this agent is already in a chat; use another agent or wait")
        self._cancelled.clear()
        loop = asyncio.get_running_loop()
        waker = asyncio.Event()
        with self._wakers_lock:
            self._wakers[loop] = waker
        run = ChatRun(started=time.monotonic(), trace=telemetry.chat_trace(self.model))
        pending_note: list[str] = []  # the note owed to the model if the chat ends here
        try:
            try:
                variables = await self.runtime.avariables()
            except CaveRuntimeError as exc:  # closed or dead: say so instead of raising
                self._history.append(Message("user", message))
                run.stop(StopReason.RUNTIME_ERROR, f"{type(exc).__name__}: {exc}")
            else:
                if self.compact_history:
                    self._history[:] = compact(self._history, self.keep_turns - 1)
                hidden = {item.name for item in self.runtime.injected()}
                self._history.append(Message("user", prompt.turn_message(message, variables, hidden=hidden)))
                run.request = message
                run.held = {v.name for v in variables if not v.name.startswith("_")} | hidden
                async with contextlib.aclosing(self._steps(run, waker, pending_note)) as steps:
                    async for event in steps:
                        log_event(event)
                        yield event
            stopped = Stopped(run.reason or StopReason.COMPLETED, run.reply())
            run.trace.end(stopped.reply)
            log_event(stopped)
            yield stopped
        finally:
            run.trace.end(run.reply())  # once: a chat torn down by an exception ends its span too
            if pending_note:  # the model wrote code that never got an observation
                self._history.append(Message("user", pending_note[0]))
            with self._wakers_lock:
                self._wakers.pop(loop, None)
            self._busy.release()

    async def _steps(
        self, run: ChatRun, waker: asyncio.Event, pending_note: list[str]
    ) -> AsyncGenerator[Event, None]:
        system = self.system_prompt()  # once per chat: what is injected does not change mid-chat
        for step in range(1, self.max_steps + 1):
            if run.out_of_budget(self._cancelled.is_set(), self.max_tokens_total, self.max_wall_s):
                return
            started = time.monotonic()
            replies: list[ModelReply] = []
            call = call_model(self.model, system, self._history, step=step, run=run, waker=waker,
                              out=replies, call_timeout=self.call_timeout, max_wall_s=self.max_wall_s)
            span = run.trace.model_call(step)
            try:
                async with contextlib.aclosing(call) as events:
                    async for event in events:
                        yield event
            finally:
                run.trace.model_done(span, replies[0] if replies else None, run.error)
            if not replies:  # stopped during the call: cancel, budget or model error
                return
            reply = replies[0]
            model_s = time.monotonic() - started
            run.steps += 1
            run.usage += reply.usage
            run.last_text = reply.text
            extraction = extract_code(reply.text)
            # What follows the block did not run; small models imagine the observation there.
            kept = reply.text if extraction.end is None else reply.text[: extraction.end]
            self._history.append(Message("assistant", kept))
            yield ModelReplied(step, reply.text, reply.usage, model_s)
            if extraction.is_final_answer:
                run.stats.append(StepStats(step, reply.usage, model_s))
                note = ""
                if self.check_completion:
                    note = await guidance.not_an_answer(self.runtime, run, reply.text)
                if note:
                    run.nudges += 1
                    self._history.append(Message("user", note))
                    continue
                run.stop(StopReason.COMPLETED)
                yield FinalAnswer(step, reply.text)
                return
            if extraction.code is None:  # an unterminated block
                run.stats.append(StepStats(step, reply.usage, model_s))
                self._history.append(Message("user", guidance.UNTERMINATED_NOTE))
                continue
            if self._cancelled.is_set():
                self._history.append(Message("user", guidance.not_run_note("cancelled")))
                run.stats.append(StepStats(step, reply.usage, model_s))
                run.stop(StopReason.CANCELLED, "cancelled before the cell ran")
                return
            previous = run.cells[-1] if run.cells else None
            if self.guard_repeats and previous and previous.code.strip() == extraction.code.strip():
                run.stats.append(StepStats(step, reply.usage, model_s))
                if run.repeated:  # told once already, and the same block again: it is stuck
                    self._history.append(Message("user", guidance.stuck_note()))
                    run.stop(StopReason.STUCK, "the model sent the same block a third time")
                    return
                run.repeated = True
                self._history.append(Message("user", guidance.repeated_note(previous.result)))
                continue
            run.repeated = False
            pending_note[:] = [guidance.not_run_note("the chat was stopped")]
            yield CodeExtracted(step, extraction.code, extraction.ignored_blocks)
            pending_note[:] = [guidance.interrupted_note()]
            span = run.trace.cell(step, extraction.code)
            try:
                with self._cell_lock:
                    self._cell_running = True
                try:
                    timeout = run.cell_timeout(self.cell_timeout, self.max_wall_s)
                    result = await self.runtime.aexecute(extraction.code, timeout=timeout)
                except BaseException as exc:
                    if not isinstance(exc, Exception):  # the chat's task was cancelled mid-cell
                        self._interrupt_cell()
                    raise
                finally:
                    with self._cell_lock:
                        self._cell_running = False
            except CaveRuntimeError as exc:  # the runtime failed (or was closed), not the cell
                run.trace.cell_done(span, None, exc)
                run.stats.append(StepStats(step, reply.usage, model_s))
                run.stop(StopReason.RUNTIME_ERROR, f"{type(exc).__name__}: {exc}")
                return
            except BaseException as exc:  # the chat itself was torn down mid-cell
                run.trace.cell_done(span, None, exc)
                raise
            run.trace.cell_done(span, result)
            observation = prompt.observation(result, extraction, max_chars=self.max_output_chars)
            hint = "" if result.ok else await guidance.hint_for(self.runtime, result, self._injected_notes)
            if hint:
                observation += "\n" + hint
            images = tuple(Image(f.mime_type, f.data) for f in result.figures) if self.show_figures else ()
            self._history.append(Message("user", observation, images))
            pending_note.clear()
            run.cells.append(CellRecord(step, extraction.code, result))
            run.stats.append(StepStats(step, reply.usage, model_s, result.duration_s))
            yield cell_event(step, extraction, result, observation)
        run.stop(StopReason.MAX_STEPS, f"no answer after {self.max_steps} model calls")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._history)} messages"
        return f"CaveLite({self.model!r}, {state})"

