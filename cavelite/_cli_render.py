"""Showing a chat in the terminal with rich, and driving it so signals stop it cleanly.

`EventRenderer` turns the agent's typed events into a live display: the
model's text streams in as it arrives under a status line with a spinner and
an elapsed timer; when the reply is complete it is reprinted with its code
syntax-highlighted, the block that runs framed apart from blocks that do not
(a second block, an unterminated one). Cell output, errors, policy
violations and retries each have their own style, and tokens and time are
shown per step and in total. Everything the model or a cell produced is
printed as `Text`, never as rich markup, so a model cannot style (or hide)
what the user reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.spinner import Spinner
from rich.syntax import Syntax
from rich.text import Text

from cavelite._cli_figures import FigureFolder
from cavelite.agent import CaveLite
from cavelite.events import (
    CellFinished,
    CodeExtracted,
    Event,
    FinalAnswer,
    ModelReplied,
    ModelRetrying,
    PolicyViolated,
    Reply,
    Stopped,
    StopReason,
    TextDelta,
    Usage,
)
from cavelite.extract import extract_code, looks_like_code
from cavelite.prompt import where_output_is_kept
from cavelite.runtime.results import CellResult

CODE_THEME = "monokai"
_MAX_SHOWN_OUTPUT = 6000  # the terminal gets a bounded view too
_PYTHON_INFO = {"python", "python3", "py", "pycon"}


def format_usage(usage: Usage) -> str:
    """``1,234 tokens (in 100 · out 34 · cache read 1,100 · write 0)``."""
    return (
        f"{usage.total_tokens:,} tokens (in {usage.input_tokens:,} · out {usage.output_tokens:,}"
        f" · cache read {usage.cache_read_tokens:,} · write {usage.cache_write_tokens:,})"
    )


def format_seconds(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


class EventRenderer:
    """Prints one chat's events as they come. ``show_answer=False`` leaves the answer to the caller."""

    def __init__(self, console: Console, *, show_answer: bool = True, cell_timeout: float | None = None,
                 figures: FigureFolder | None = None):
        self.console = console
        self.figures = figures
        self.show_answer = show_answer
        self.cell_timeout = cell_timeout
        self._live: Live | None = None
        self._spinner = Spinner("dots", style="cyan")
        self._phase = "model thinking"
        self._phase_started = time.monotonic()
        self._streamed: list[str] = []
        self._running_cell = False
        self._lock = threading.Lock()  # the live view renders from rich's refresh thread

    # -- the live view ----------------------------------------------------------
    def begin(self) -> None:
        """Call before the chat's first event: the model is thinking from now on."""
        self._set_phase("model thinking")
        if self._live is None:
            self._live = Live(console=self.console, get_renderable=self._view, refresh_per_second=10,
                              transient=True, redirect_stdout=False, redirect_stderr=False)
            self._live.start()

    def stop(self) -> None:
        """Take the live view off the screen (what was printed stays)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def cancelling(self) -> None:
        if self._running_cell:
            limit = f" (its time limit: {self.cell_timeout:g} s)" if self.cell_timeout else ""
            self._set_phase(f"stopping: the running cell is let finish{limit}")
        else:
            self._set_phase("stopping")

    def _set_phase(self, text: str) -> None:
        with self._lock:
            self._phase, self._phase_started = text, time.monotonic()

    def _view(self) -> RenderableType:
        with self._lock:
            phase, started, streamed = self._phase, self._phase_started, "".join(self._streamed)
        status = Text(f"{phase} · {time.monotonic() - started:.1f} s", style="cyan")
        if streamed:
            status.append(f" · {len(streamed):,} chars", style="dim")
        self._spinner.update(text=status)
        if not streamed:
            return self._spinner
        return Group(self._tail(streamed), self._spinner)

    def _tail(self, text: str) -> Text:
        """The end of the streamed text, as many lines as fit above the status line."""
        width = max(20, self.console.width)
        room = max(3, self.console.height - 3)
        lines = Text(text[-room * width * 2 :]).wrap(self.console, width)
        return Text("\n").join(lines[-room:])

    # -- events -------------------------------------------------------------------
    def handle(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            with self._lock:
                if not self._streamed:
                    self._phase, self._phase_started = f"step {event.step}: model writing", time.monotonic()
                self._streamed.append(event.text)
        elif isinstance(event, ModelRetrying):
            self._print(retry_line(event))
            self._set_phase(f"retrying the model call in {event.delay_s:.1f} s")
        elif isinstance(event, ModelReplied):
            with self._lock:
                self._streamed.clear()
            self._model_replied(event)
        elif isinstance(event, CodeExtracted):
            self._running_cell = True
            self._set_phase("running the cell")
        elif isinstance(event, CellFinished):
            self._running_cell = False
            paths = self.figures.save(event.step, event.result.figures) if self.figures else []
            for renderable in cell_renderables(event.result, policy=isinstance(event, PolicyViolated),
                                               figure_paths=paths):
                self._print(renderable)
            for error in self.figures.errors if self.figures else []:
                self._print(Text(f"  {error}", style="bold red"))
            if self.figures:
                self.figures.errors.clear()
            self._set_phase("model thinking")
        elif isinstance(event, FinalAnswer):
            pass  # shown with its ModelReplied, which comes first
        elif isinstance(event, Stopped):
            self.stop()
            self._keep_what_was_shown(event.reply)
            self._print(stop_line(event.reply))

    def _print(self, renderable: Any) -> None:
        self.console.print(renderable)

    def _keep_what_was_shown(self, reply: Reply) -> None:
        """A reply cut by a cancel, a timeout or an error stays on screen, marked as cut."""
        with self._lock:
            streamed, self._streamed = "".join(self._streamed), []
        if streamed:
            self._print(Text(streamed))
            self._print(Text(f"  (the reply was cut here: {reply.stop_reason.value})", style="yellow"))

    def _model_replied(self, event: ModelReplied) -> None:
        final = extract_code(event.text).is_final_answer
        if final and not self.show_answer:
            pass
        elif final:
            self._print(Panel(Markdown(event.text, code_theme=CODE_THEME), title="answer",
                              title_align="left", border_style="green"))
        else:
            self.console.rule(Text(f"step {event.step}", style="dim"), style="dim")
            self._print(reply_body(event.text))
        self._print(Text(f"  model {format_seconds(event.wall_s)} · {format_usage(event.usage)}",
                         style="dim"))


def retry_line(event: ModelRetrying) -> Text:
    """``retrying the model call in 2.0 s (1 of 4) after 0.3 s: <why>``."""
    line = Text(f"  retrying the model call in {event.delay_s:.1f} s ({event.attempt} of "
                f"{event.max_retries}) after {format_seconds(event.elapsed_s)}: ", style="yellow")
    line.append(event.reason, style="default")
    return line


def stop_line(reply: Reply) -> Text:
    style = "green" if reply.completed else "yellow"
    if reply.stop_reason in (StopReason.MODEL_ERROR, StopReason.RUNTIME_ERROR):
        style = "red"
    line = Text(f"{reply.stop_reason.value}", style=f"bold {style}")
    line.append(
        f" · {reply.steps} step(s) · {len(reply.cells)} cell(s) · {format_usage(reply.usage)}"
        f" · {format_seconds(reply.wall_s)}",
        style="dim",
    )
    if reply.detail and not reply.completed:
        line.append(f"\n  {reply.detail}", style=style)
    return line


@dataclass(frozen=True)
class _Fenced:
    info: str
    body: str
    closed: bool


def _segments(text: str) -> list[str | _Fenced]:
    """The reply as prose and fenced blocks, in order (CommonMark-ish fences, as the model writes)."""
    parts: list[str | _Fenced] = []
    prose: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped.startswith("```"):
            prose.append(lines[i])
            i += 1
            continue
        if any(p.strip() for p in prose):
            parts.append("\n".join(prose).strip("\n"))
        prose = []
        fence = stripped[: len(stripped) - len(stripped.lstrip("`"))]
        info = stripped[len(fence):].strip().split(" ")[0].lower()
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        parts.append(_Fenced(info, "\n".join(body), closed=i < len(lines)))
        i += 1
    if any(p.strip() for p in prose):
        parts.append("\n".join(prose).strip("\n"))
    return parts


def reply_body(text: str) -> Group:
    """The model's prose as text, and its code: the block that runs apart from those that do not."""
    runs = extract_code(text).code
    segments = _segments(text)
    if runs is not None and not any(isinstance(s, _Fenced) for s in segments):
        return Group(_code_panel(runs, "python · runs (no fences)", "green"))
    parts: list[Any] = []
    for segment in segments:
        if isinstance(segment, str):
            parts.append(Text(segment))
        elif runs is not None and segment.closed and segment.body == runs:
            parts.append(_code_panel(segment.body, "python · runs", "green"))
            runs = None  # only the first such block
        elif segment.info in _PYTHON_INFO or (segment.info == "" and looks_like_code(segment.body)):
            why = "no closing ``` fence" if not segment.closed else "only the first block of a reply runs"
            parts.append(_code_panel(segment.body, f"python · not run: {why}", "yellow", dim=True))
        else:
            parts.append(Syntax(segment.body, segment.info or "text", theme=CODE_THEME, word_wrap=True))
    return Group(*parts)


def _code_panel(code: str, title: str, border: str, *, dim: bool = False) -> Panel:
    syntax = Syntax(code, "python", theme=CODE_THEME, line_numbers=True, word_wrap=True,
                    background_color="default" if dim else None)
    return Panel(syntax, title=Text(title, style=f"bold {border}" if not dim else border),
                 title_align="left", border_style=f"dim {border}" if dim else border,
                 style="dim" if dim else "")


def cell_renderables(result: CellResult, *, policy: bool = False,
                     figure_paths: Sequence[str] = ()) -> list[Any]:
    """Output, value, stderr, figures, error (or violations) and changed variables of one cell."""
    out: list[Any] = []
    kept = where_output_is_kept(result)
    if result.stdout:
        out.append(Panel(Text(_clip(result.stdout.rstrip("\n"), kept)), title="output", title_align="left",
                         border_style="blue"))
    if result.stdout_truncated:
        out.append(Text(f"  output truncated: {kept}", style="yellow"))
    if result.stderr:
        out.append(Panel(Text(_clip(result.stderr.rstrip("\n"), "the rest was not kept"), style="yellow"),
                         title="stderr", title_align="left", border_style="yellow"))
    if result.value_repr is not None:
        value = Text("Out:", style="bold blue")
        value.append("\n" if "\n" in result.value_repr else " ")
        value.append(_clip(result.value_repr, "the value itself is in the runtime"), style="default")
        out.append(value)
    for number, figure in enumerate(result.figures, 1):
        line = Text(f"  figure {number}: {figure.for_model()}", style="bold blue")
        if number <= len(figure_paths):
            line.append(f" · saved to {figure_paths[number - 1]}", style="default")
        out.append(line)
    error = result.error
    if error is not None and (policy or error.kind == "policy"):
        body = Text()
        for v in error.violations:
            body.append(f"line {v.line}: {v.message} [{v.rule}]\n", style="magenta")
            body.append(f"    {v.snippet.strip()}\n")
            if v.hint:
                body.append(f"    hint: {v.hint}\n", style="dim")
        body.rstrip()
        out.append(Panel(body if body.plain else Text(error.message, style="magenta"),
                         title="policy violation: the cell did not run", title_align="left",
                         border_style="magenta"))
    elif error is not None:
        title = f"{error.kind}: {error.type}"
        if result.rolled_back:
            title += " · namespace rolled back"
        out.append(Panel(Text(_clip(error.for_model(), "the rest was not kept"), style="red"), title=title,
                         title_align="left", border_style="red"))
    status = Text("  cell ", style="dim")
    refused = error is not None and error.kind == "policy"
    outcome = "ok" if result.ok else "refused" if refused else "failed"
    status.append(outcome, style="green" if result.ok else "magenta" if refused else "red")
    status.append(f" {format_seconds(result.duration_s)}", style="dim")
    if result.changed:
        names = ", ".join(f"{v.name}: {v.type_name}" for v in result.changed[:12])
        more = len(result.changed) - 12
        status.append(f" · changed {names}" + (f" (+{more})" if more > 0 else ""), style="dim")
    if result.deleted:
        status.append(" · deleted " + ", ".join(result.deleted), style="dim")
    out.append(status)
    return out


def _clip(text: str, kept: str) -> str:
    if len(text) <= _MAX_SHOWN_OUTPUT:
        return text
    half = _MAX_SHOWN_OUTPUT // 2
    return f"{text[:half]}\n… {len(text) - 2 * half:,} characters not shown; {kept} …\n{text[-half:]}"


@dataclass(frozen=True)
class Driven:
    """How one driven chat ended: its reply, and the signal that stopped it (if one did)."""

    reply: Reply
    signal: int | None = None


def drive(agent: CaveLite, message: str, renderer: EventRenderer | None,
          on_event: Callable[[Event], None] | None = None) -> Driven:
    """Run one chat to its end, showing it live; Ctrl-C (SIGINT) and SIGTERM stop it cleanly.

    A signal goes through `CaveLite.cancel()`: the model call is dropped at
    once, a running cell is let finish (it is bounded by its time limit, so
    the worker is never left running on its own), and the history stays
    valid. The handlers never raise, so no signal can land half-way through
    the agent's bookkeeping; the caller learns which signal came from
    `Driven.signal` and decides (the chat carries on, ``run`` exits 130/143).
    """
    stopped_by: int | None = None

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopped_by
        if stopped_by is None or signum == signal.SIGTERM:
            stopped_by = signum
        agent.cancel()
        if renderer is not None:
            renderer.cancelling()

    async def consume() -> Reply:
        if main:  # from the loop's wakeup fd: no signal can slip in just before it waits
            loop = asyncio.get_running_loop()
            for each in previous:
                loop.add_signal_handler(each, on_signal, each, None)
        reply: Reply | None = None
        try:
            async with contextlib.aclosing(agent.stream(message)) as events:
                async for event in events:
                    if renderer is not None:
                        renderer.handle(event)
                    if on_event is not None:
                        on_event(event)
                    if isinstance(event, Stopped):
                        reply = event.reply
        finally:
            await agent.model.aclose()  # its HTTP pool belongs to this loop
            if main:
                for each in previous:
                    loop.remove_signal_handler(each)
        assert reply is not None  # stream() always ends with Stopped
        return reply

    # Signal handlers can only be set from the main thread; elsewhere signals keep their default.
    main = threading.current_thread() is threading.main_thread()
    previous: dict[int, Any] = {}
    if main:
        for each in (signal.SIGINT, signal.SIGTERM):
            previous[each] = signal.signal(each, on_signal)
    try:
        if renderer is not None:
            renderer.begin()
        reply = asyncio.run(consume())
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if renderer is not None:
            renderer.stop()
    return Driven(reply, stopped_by)
