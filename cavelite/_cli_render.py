"""Showing a chat in the terminal with rich, and driving it so Ctrl-C cancels one step.

`EventRenderer` turns the agent's typed events into a live display: a spinner
while the model thinks (with the characters streamed so far), the model's
text with its code syntax-highlighted, the cell's output, errors and policy
violations each in their own style, and per-step and total tokens and time.
Everything the model or a cell produced is printed as `Text`, never as rich
markup, so a model cannot style (or hide) what the user reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.markdown import Markdown
from rich.panel import Panel
from rich.status import Status
from rich.syntax import Syntax
from rich.text import Text

from cavelite.agent import CaveLite
from cavelite.events import (
    CellFinished,
    CodeExtracted,
    Event,
    FinalAnswer,
    ModelReplied,
    PolicyViolated,
    Reply,
    Stopped,
    StopReason,
    TextDelta,
    Usage,
)
from cavelite.extract import extract_code
from cavelite.runtime.results import CellResult

CODE_THEME = "monokai"
_MAX_SHOWN_OUTPUT = 6000  # the terminal gets a bounded view too; the rest is in cell_outputs


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

    def __init__(self, console: Console, *, show_answer: bool = True) -> None:
        self.console = console
        self.show_answer = show_answer
        self._status: Status | None = None
        self._streamed = 0
        self._step = 0

    # -- the spinner ----------------------------------------------------------
    def _spin(self, text: str) -> None:
        if self._status is None:
            self._status = self.console.status(text, spinner="dots")
            self._status.start()
        else:
            self._status.update(text)

    def stop_spinner(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def begin(self) -> None:
        """Call before the chat's first event: the model is thinking from now on."""
        self._streamed = 0
        self._spin("model thinking…")

    def cancelling(self) -> None:
        self._spin("cancelling: the step stops after the model call or the running cell…")

    # -- events ---------------------------------------------------------------
    def handle(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            self._streamed += len(event.text)
            self._spin(f"model thinking… step {event.step}, {self._streamed:,} chars")
        elif isinstance(event, ModelReplied):
            self.stop_spinner()
            self._model_replied(event)
        elif isinstance(event, CodeExtracted):
            if event.ignored_blocks:
                self.console.print(
                    Text(f"  ({event.ignored_blocks} more code block(s) in this reply were not run)",
                         style="yellow")
                )
            self._spin("running the cell…")
        elif isinstance(event, CellFinished):
            self.stop_spinner()
            self._cell_finished(event)
            self._streamed = 0
            self._spin("model thinking…")
        elif isinstance(event, FinalAnswer):
            pass  # shown with its ModelReplied, which comes first
        elif isinstance(event, Stopped):
            self.stop_spinner()
            self._stopped(event.reply)

    def _model_replied(self, event: ModelReplied) -> None:
        self._step = event.step
        final = extract_code(event.text).is_final_answer
        if final and not self.show_answer:
            pass
        elif final:
            self.console.print(Panel(Markdown(event.text, code_theme=CODE_THEME), title="answer",
                                     title_align="left", border_style="green"))
        else:
            self.console.rule(Text(f"step {event.step}", style="dim"), style="dim")
            self.console.print(_reply_body(event.text))
        self.console.print(
            Text(f"  model {format_seconds(event.wall_s)} · {format_usage(event.usage)}", style="dim")
        )

    def _cell_finished(self, event: CellFinished) -> None:
        result = event.result
        for renderable in cell_renderables(result, policy=isinstance(event, PolicyViolated)):
            self.console.print(renderable)

    def _stopped(self, reply: Reply) -> None:
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
        self.console.print(line)


def _reply_body(text: str) -> Group:
    """The model's prose as text and its python blocks syntax-highlighted."""
    parts: list[Any] = []
    prose: list[str] = []
    code: list[str] | None = None
    fence = ""
    for line in text.splitlines():
        stripped = line.strip()
        if code is None and stripped.startswith("```"):
            if prose and any(p.strip() for p in prose):
                parts.append(Text("\n".join(prose).strip("\n")))
            prose, code = [], []
            fence = stripped[: len(stripped) - len(stripped.lstrip("`"))]
        elif code is not None and stripped == fence:
            parts.append(Syntax("\n".join(code), "python", theme=CODE_THEME, line_numbers=True,
                                word_wrap=True))
            code = None
        elif code is not None:
            code.append(line)
        else:
            prose.append(line)
    if code is not None:  # unterminated: show what there is; the agent tells the model
        parts.append(Syntax("\n".join(code), "python", theme=CODE_THEME, line_numbers=True))
    if any(p.strip() for p in prose):
        parts.append(Text("\n".join(prose).strip("\n")))
    return Group(*parts)


def cell_renderables(result: CellResult, *, policy: bool = False) -> list[Any]:
    """Output, value, stderr, error (or violations) and changed variables of one cell."""
    out: list[Any] = []
    if result.stdout:
        out.append(Panel(Text(_clip(result.stdout.rstrip("\n"))), title="output", title_align="left",
                         border_style="blue"))
    if result.stdout_truncated:
        index = f"cell_outputs[{result.output_index}]" if result.output_index is not None else "cell_outputs"
        out.append(Text(f"  output truncated: the full text is in {index}", style="yellow"))
    if result.stderr:
        out.append(Panel(Text(_clip(result.stderr.rstrip("\n")), style="yellow"), title="stderr",
                         title_align="left", border_style="yellow"))
    if result.value_repr is not None:
        value = Text("Out:", style="bold blue")
        value.append("\n" if "\n" in result.value_repr else " ")
        value.append(_clip(result.value_repr), style="default")
        out.append(value)
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
        out.append(Panel(Text(_clip(error.for_model()), style="red"), title=title, title_align="left",
                         border_style="red"))
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


def _clip(text: str) -> str:
    if len(text) <= _MAX_SHOWN_OUTPUT:
        return text
    half = _MAX_SHOWN_OUTPUT // 2
    return f"{text[:half]}\n… {len(text) - 2 * half:,} characters not shown …\n{text[-half:]}"


def drive(agent: CaveLite, message: str, renderer: EventRenderer | None,
          on_event: Callable[[Event], None] | None = None) -> Reply:
    """Run one chat to its end, showing it live; the first Ctrl-C cancels it.

    The cancel goes through `CaveLite.cancel()`, so the model call is dropped
    and the history stays valid: the session carries on with the next message.
    A second Ctrl-C raises `KeyboardInterrupt` for callers that want out.
    """
    presses = 0

    def on_sigint(signum: int, frame: object) -> None:
        nonlocal presses
        presses += 1
        if presses > 1:
            raise KeyboardInterrupt
        agent.cancel()
        if renderer is not None:
            renderer.cancelling()

    async def consume() -> Reply:
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
        assert reply is not None  # stream() always ends with Stopped
        return reply

    # Signal handlers can only be set from the main thread; elsewhere Ctrl-C keeps its default.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main else None
    try:
        if renderer is not None:
            renderer.begin()
        return asyncio.run(consume())
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        if renderer is not None:
            renderer.stop_spinner()
