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
touches a pipe, fd or signal (see `cavelite.runtime`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from cavelite import prompt, telemetry
from cavelite.compact import compact
from cavelite.errors import AgentClosedError, CaveRuntimeError, CaveUsageError, ModelError
from cavelite.events import (
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
from cavelite.extract import Extraction, extract_code
from cavelite.models.base import Image, Message, Model, ModelReply, RetryNotice, run_sync
from cavelite.runtime.results import CellResult, Injected, VariableInfo
from cavelite.usage import Usage

if TYPE_CHECKING:
    from cavelite.runtime.like import RuntimeLike
    from cavelite.security import Policy

_END = object()
log = logging.getLogger("cavelite.agent")

DEFAULT_CELL_TIMEOUT = 30.0
DEFAULT_MAX_OUTPUT_CHARS = 4000
DEFAULT_MAX_WALL_S = 900.0
DEFAULT_CALL_TIMEOUT = 180.0


@dataclass
class _Chat:
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
    reason: StopReason | None = None
    detail: str = ""
    error: ModelError | None = None
    trace: telemetry.NoTrace = telemetry.NO_TRACE  # OpenTelemetry spans, when installed

    def stop(self, reason: StopReason, detail: str = "", error: ModelError | None = None) -> None:
        self.reason, self.detail, self.error = reason, detail, error

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


class CaveLite:
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
    would apply twice, or fail the same way) and says why; ``check_completion``
    sends the model back, once per chat, when it answers while a variable the
    user named in backticks does not exist; ``compact_history`` shortens turns
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
        check_completion: bool = True,
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
        resumed = _history_from(history)  # checked before a runtime is started
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

    # -- the runtime, through the agent ----------------------------------------
    def inject(
        self, name: str, value: Any, *, description: str | None = None, remote: bool | None = None
    ) -> None:
        """Put ``value`` into the runtime as ``name`` (same rules as `Runtime.inject`)."""
        self._check_open()
        self.runtime.inject(name, value, description=description, remote=remote)
        self._remember(name, value)

    def inject_type(self, cls: type, *, name: str | None = None, description: str | None = None) -> None:
        """Make a class available to the model's code (dataclass, enum, pydantic model...)."""
        if not isinstance(cls, type):
            raise CaveUsageError(f"inject_type expects a class, got {type(cls).__name__}")
        self._check_open()
        self.runtime.inject_type(cls, name=name, description=description)
        self._remember(name or cls.__name__, cls)

    def _remember(self, name: str, value: Any) -> None:
        """Keep a richer description (signatures, fields) of what was just injected."""
        for item in self.runtime.injected():
            if item.name == name:
                self._injected_notes[name] = prompt.enrich(item, value)
                return
        self._injected_notes.pop(name, None)  # plain data: listed with the variables

    def retrieve(self, name: str, *, trusted: bool = False) -> Any:
        """A variable's value, decoded safely (see `Runtime.retrieve`)."""
        self._check_open()
        return self.runtime.retrieve(name, trusted=trusted)

    def variables(self) -> list[VariableInfo]:
        """The runtime's variables, each with its type and bounded summary (no data is copied)."""
        self._check_open()
        return self.runtime.variables()

    async def ainject(
        self, name: str, value: Any, *, description: str | None = None, remote: bool | None = None
    ) -> None:
        """`inject` without blocking the event loop."""
        await asyncio.to_thread(self.inject, name, value, description=description, remote=remote)

    async def ainject_type(
        self, cls: type, *, name: str | None = None, description: str | None = None
    ) -> None:
        """`inject_type` without blocking the event loop."""
        await asyncio.to_thread(self.inject_type, cls, name=name, description=description)

    async def aretrieve(self, name: str, *, trusted: bool = False) -> Any:
        """`retrieve` without blocking the event loop."""
        return await asyncio.to_thread(self.retrieve, name, trusted=trusted)

    async def avariables(self) -> list[VariableInfo]:
        """`variables` without blocking the event loop."""
        return await asyncio.to_thread(self.variables)

    async def areset(self, *, runtime: bool = True) -> None:
        """`reset` without blocking the event loop."""
        await asyncio.to_thread(self.reset, runtime=runtime)

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

    def reset(self, *, runtime: bool = True) -> None:
        """Forget the conversation; with ``runtime=True`` also reset the runtime's namespace.

        Resetting a shared runtime resets it for every agent that uses it.
        """
        self._check_open()
        if self._busy.locked():
            raise CaveUsageError("cannot reset while a chat is running; cancel() it first")
        self._history.clear()
        if runtime:
            self.runtime.reset()

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
        run = _Chat(started=time.monotonic(), trace=telemetry.chat_trace(self.model))
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
                        _log_event(event)
                        yield event
            stopped = Stopped(run.reason or StopReason.COMPLETED, run.reply())
            run.trace.end(stopped.reply)
            _log_event(stopped)
            yield stopped
        finally:
            run.trace.end(run.reply())  # once: a chat torn down by an exception ends its span too
            if pending_note:  # the model wrote code that never got an observation
                self._history.append(Message("user", pending_note[0]))
            with self._wakers_lock:
                self._wakers.pop(loop, None)
            self._busy.release()

    async def _steps(
        self, run: _Chat, waker: asyncio.Event, pending_note: list[str]
    ) -> AsyncGenerator[Event, None]:
        system = self.system_prompt()  # once per chat: what is injected does not change mid-chat
        for step in range(1, self.max_steps + 1):
            if self._should_stop(run):
                return
            started = time.monotonic()
            replies: list[ModelReply] = []
            call = self._call_model(step, system, run, waker, replies)
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
                note = await self._not_an_answer(run, reply.text)
                if note:
                    run.nudges += 1
                    self._history.append(Message("user", note))
                    continue
                run.stop(StopReason.COMPLETED)
                yield FinalAnswer(step, reply.text)
                return
            if extraction.code is None:  # an unterminated block
                run.stats.append(StepStats(step, reply.usage, model_s))
                self._history.append(Message("user", prompt.UNTERMINATED_NOTE))
                continue
            if self._cancelled.is_set():
                self._history.append(Message("user", prompt.not_run_note("cancelled")))
                run.stats.append(StepStats(step, reply.usage, model_s))
                run.stop(StopReason.CANCELLED, "cancelled before the cell ran")
                return
            previous = run.cells[-1] if run.cells else None
            if self.guard_repeats and previous and previous.code.strip() == extraction.code.strip():
                self._history.append(Message("user", prompt.repeated_note(previous.result)))
                run.stats.append(StepStats(step, reply.usage, model_s))
                continue
            pending_note[:] = [prompt.not_run_note("the chat was stopped")]
            yield CodeExtracted(step, extraction.code, extraction.ignored_blocks)
            pending_note[:] = [prompt.interrupted_note()]
            span = run.trace.cell(step, extraction.code)
            try:
                with self._cell_lock:
                    self._cell_running = True
                try:
                    result = await self.runtime.aexecute(extraction.code, timeout=self._cell_timeout(run))
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
            if not result.ok and (hint := await self._name_hint(result)):
                observation += "\n" + hint
            images = tuple(Image(f.mime_type, f.data) for f in result.figures) if self.show_figures else ()
            self._history.append(Message("user", observation, images))
            pending_note.clear()
            run.cells.append(CellRecord(step, extraction.code, result))
            run.stats.append(StepStats(step, reply.usage, model_s, result.duration_s))
            yield _cell_event(step, extraction, result, observation)
        run.stop(StopReason.MAX_STEPS, f"no answer after {self.max_steps} model calls")

    async def _name_hint(self, result: CellResult) -> str:
        if result.error is None or result.error.type != "NameError":
            return ""
        injected = [self._injected_notes.get(item.name, item) for item in self.runtime.injected()]
        try:
            names = [v.name for v in await self.runtime.avariables()] + [i.name for i in injected]
        except CaveRuntimeError:
            return ""
        return prompt.name_hint(result, injected, names)

    async def _not_an_answer(self, run: _Chat, text: str) -> str:
        """Why a reply without code is visibly not the answer ("" if it may be), twice per chat at most.

        It says the request back; or no code ran for a request that names what
        the runtime holds, or the reply states a number nobody computed (it
        claims what it never looked up or did); or every block of the chat failed, so nothing
        was done; or the user named a variable in backticks that the runtime
        still lacks.
        """
        if not self.check_completion or run.nudges >= 2:
            return ""
        if prompt.is_echo(text, run.request):
            return prompt.ECHO_NOTE
        if not run.cells and run.nudges == 0 and run.held:
            if prompt.claims_unseen(text, run.request, run.held):
                return prompt.NO_CODE_NOTE
        if run.cells and not any(cell.result.ok for cell in run.cells):
            return prompt.FAILED_NOTE
        wanted = prompt.requested_names(run.request)
        if not wanted:
            return ""
        try:
            present = {v.name for v in await self.runtime.avariables()}
        except CaveRuntimeError:
            return ""
        present |= {item.name for item in self.runtime.injected()}
        missing = [name for name in wanted if name not in present]
        return prompt.missing_note(missing) if missing else ""

    async def _call_model(
        self,
        step: int,
        system: str,
        run: _Chat,
        waker: asyncio.Event,
        out: list[ModelReply],
    ) -> AsyncGenerator[Event, None]:
        """Stream one model call, abandoning it on cancel, at its call timeout or the wall budget.

        The call runs in its own task feeding a queue, so waiting on it can race
        the cancel signal and the deadlines without tearing down this generator.
        A call that fails or is abandoned still counts its time in the step stats.
        """
        queue: asyncio.Queue[Any] = asyncio.Queue()
        messages = tuple(self._history)
        began = time.monotonic()
        pump = asyncio.ensure_future(self._pump(system, messages, queue))
        wake = asyncio.ensure_future(waker.wait())
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                wall_left = self._wall_left(run)
                call_left = None
                if self.call_timeout is not None:
                    call_left = self.call_timeout - (time.monotonic() - began)
                by_call = call_left is not None and (wall_left is None or call_left < wall_left)
                timeout = call_left if by_call else wall_left
                done, _ = await asyncio.wait(
                    {getter, wake},
                    timeout=None if timeout is None else max(0.0, timeout),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if getter not in done:
                    getter.cancel()
                    if wake in done:
                        run.stop(StopReason.CANCELLED, "cancelled while the model was replying")
                    elif by_call:
                        error = ModelError(f"the model call took longer than {self.call_timeout:g} s "
                                           "(the agent's call_timeout) and was abandoned", kind="timeout")
                        run.stop(StopReason.MODEL_ERROR, str(error), error)
                    else:
                        run.stop(StopReason.BUDGET, f"wall-time budget of {self.max_wall_s}s used up")
                    run.stats.append(StepStats(step, Usage(), time.monotonic() - began))
                    return
                item = getter.result()
                if item is _END:
                    if not out:
                        error = ModelError(f"{self.model!r} ended its stream without a reply",
                                           kind="bad_stream")
                        run.stop(StopReason.MODEL_ERROR, str(error), error)
                    return
                if isinstance(item, ModelError):
                    run.stop(StopReason.MODEL_ERROR, str(item), item)
                    run.stats.append(StepStats(step, Usage(), time.monotonic() - began))
                    return
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, ModelReply):
                    out.append(item)
                    continue
                if isinstance(item, RetryNotice):
                    yield ModelRetrying(step, item.attempt, item.max_retries, item.delay_s, item.reason,
                                        item.status, item.elapsed_s)
                    continue
                yield TextDelta(step, item)
        finally:
            wake.cancel()
            if not pump.done():
                pump.cancel()
            await asyncio.gather(pump, wake, return_exceptions=True)

    async def _pump(self, system: str, messages: Sequence[Message], queue: asyncio.Queue[Any]) -> None:
        try:
            async for item in self.model.astream(system, messages):
                queue.put_nowait(item)
        except Exception as exc:
            queue.put_nowait(exc)
        finally:
            queue.put_nowait(_END)

    def _should_stop(self, run: _Chat) -> bool:
        """Check cancel and budgets before a model call; record why if stopping."""
        if self._cancelled.is_set():
            run.stop(StopReason.CANCELLED, "cancelled")
        elif self.max_tokens_total is not None and run.usage.total_tokens >= self.max_tokens_total:
            run.stop(
                StopReason.BUDGET,
                f"token budget of {self.max_tokens_total} used up ({run.usage.total_tokens})",
            )
        elif (left := self._wall_left(run)) is not None and left <= 0:
            run.stop(StopReason.BUDGET, f"wall-time budget of {self.max_wall_s}s used up")
        return run.reason is not None

    def _wall_left(self, run: _Chat) -> float | None:
        if self.max_wall_s is None:
            return None
        return self.max_wall_s - (time.monotonic() - run.started)

    def _cell_timeout(self, run: _Chat) -> float | None:
        left = self._wall_left(run)
        if left is None:
            return self.cell_timeout
        left = max(0.001, left)
        return left if self.cell_timeout is None else min(self.cell_timeout, left)

    # -- lifecycle ---------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise AgentClosedError("this agent was closed")

    def close(self) -> None:
        """Close the runtime if this agent created it (a shared runtime stays open)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_runtime:
            self.runtime.close()

    async def aclose(self) -> None:
        """Close, and release the model's HTTP pool on the running loop."""
        self.close()
        await self.model.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._history)} messages"
        return f"CaveLite({self.model!r}, {state})"


def _history_from(history: Iterable[Message | Mapping[str, Any]]) -> list[Message]:
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


def _log_event(event: Event) -> None:
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


def _cell_event(step: int, extraction: Extraction, result: CellResult, observation: str) -> CellFinished:
    if result.error is not None and result.error.kind == "policy":
        return PolicyViolated(step, extraction.code or "", result, observation)
    return CellFinished(step, extraction.code or "", result, observation)
