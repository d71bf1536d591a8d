"""``cavelite chat``: the interactive session and its slash commands.

Messages go to the agent; lines starting with ``/`` are commands for the
host side of the session (look at variables, save one to a file, reset).
Those commands use the runtime's public API only (``variables``,
``retrieve``), so they never show the model anything and never run code
the model wrote in the host.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console, Group
from rich.panel import Panel
from rich.pretty import Pretty
from rich.table import Table
from rich.text import Text

from cavelite._cli_files import DataFile, DataFileError, save
from cavelite._cli_render import EventRenderer, drive
from cavelite.agent import CaveLite
from cavelite.cli import EXIT_OK, describe_model, inject_files, model_failure, open_session
from cavelite.errors import CaveliteError, TransferError, VariableNotFoundError
from cavelite.events import StopReason

HELP = """\
/vars               variables in the runtime, with their summaries
/show NAME          a bounded view of one variable
/save NAME PATH     retrieve NAME and write it (.csv, .parquet, .json, .pkl)
/reset              forget the conversation and the variables (data files are loaded again)
/history            the conversation so far
/help               this list
/quit               leave (Ctrl-D works too)
Ctrl-C while the model works cancels that step; the session goes on."""

_SHOW_ROWS = 15
_SHOW_COLS = 12


class ChatSession:
    """One interactive session: an agent, the files loaded into it, and a console."""

    def __init__(self, agent: CaveLite, files: list[DataFile], console: Console) -> None:
        self.agent = agent
        self.files = files
        self.console = console
        self.commands: dict[str, Callable[[list[str]], bool]] = {
            "vars": self.vars, "show": self.show, "save": self.save, "reset": self.reset,
            "history": self.history, "help": self.help, "quit": self.quit, "exit": self.quit,
        }

    def say(self, text: str, style: str = "") -> None:
        """One message line, unwrapped (the terminal wraps it), so paths and names stay whole."""
        self.console.print(Text(text, style=style), soft_wrap=True)

    def welcome(self) -> None:
        body = Text(f"model: {describe_model(self.agent.model)}\n")
        for item in self.files:
            body.append(f"{item.name}", style="bold")
            body.append(f" ← {item.path} ({item.frame.shape[0]:,} rows × {item.frame.shape[1]} columns)\n")
        body.append("Ask a question, or /help for commands.", style="dim")
        self.console.print(Panel(body, title="cavelite chat", title_align="left", border_style="cyan"))

    def loop(self) -> int:
        self.welcome()
        while True:
            try:
                line = self.console.input("[bold cyan]you ›[/] ")
            except EOFError:
                self.console.print()
                return EXIT_OK
            except KeyboardInterrupt:
                self.console.print("\n[dim](/quit or Ctrl-D to leave)[/]")
                continue
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if not self.command(line):
                    return EXIT_OK
                continue
            self.ask(line)

    def ask(self, message: str) -> None:
        try:
            reply = drive(self.agent, message, EventRenderer(self.console))
        except KeyboardInterrupt:
            self.console.print("[yellow]step interrupted[/]")
            return
        if reply.stop_reason is StopReason.MODEL_ERROR:
            self.say(f"model error: {model_failure(reply, self.agent.model)}", "bold red")

    def command(self, line: str) -> bool:
        """Run a slash command; False means leave the session."""
        name, *rest = line[1:].split()
        handler = self.commands.get(name.lower()) if name else None
        if handler is None:
            self.say(f"unknown command /{name}; /help lists them", "yellow")
            return True
        try:
            return handler(rest)
        except (CaveliteError, OSError) as exc:
            self.say(f"/{name}: {exc}", "red")
            return True

    # -- commands ----------------------------------------------------------------
    def help(self, args: list[str]) -> bool:
        self.console.print(Text(HELP))
        return True

    def quit(self, args: list[str]) -> bool:
        return False

    def vars(self, args: list[str]) -> bool:
        variables = self.agent.variables()
        injected = self.agent.runtime.injected()
        if not variables and not injected:
            self.say("(no variables)", "dim")
            return True
        table = Table("name", "type", "summary", title=f"{len(variables)} variable(s)", title_justify="left")
        for info in variables:
            summary = info.summary + (f"  # {info.description}" if info.description else "")
            table.add_row(Text(info.name, style="bold"), Text(info.type_name), Text(summary))
        for item in injected:
            if item.kind in ("function", "object"):
                table.add_row(Text(item.name, style="bold"), Text(f"remote {item.kind}"),
                              Text(item.signature or item.type_name))
        self.console.print(table)
        return True

    def show(self, args: list[str]) -> bool:
        if len(args) != 1:
            self.say("usage: /show NAME", "yellow")
            return True
        name = args[0]
        try:
            value = self.agent.retrieve(name)
        except VariableNotFoundError:
            self.say(f"no variable named {name!r}; /vars lists them", "yellow")
            return True
        except TransferError as exc:  # cannot come back safely: show what the runtime says of it
            info = next((v for v in self.agent.variables() if v.name == name), None)
            self.console.print(Text(f"{name}: {info.type_name} = {info.summary}" if info else name))
            self.say(f"(not retrieved: {exc})", "dim")
            return True
        self.console.print(bounded_view(name, value))
        return True

    def save(self, args: list[str]) -> bool:
        if len(args) != 2:
            self.say("usage: /save NAME PATH   (.csv, .parquet, .json, .pkl)", "yellow")
            return True
        name, path = args
        try:
            value = self.agent.retrieve(name)
            written = save(value, path)
        except VariableNotFoundError:
            self.say(f"no variable named {name!r}; /vars lists them", "yellow")
            return True
        except DataFileError as exc:
            self.say(str(exc), "red")
            return True
        self.say(f"saved {name} ({type(value).__name__}) to {written}", "green")
        return True

    def reset(self, args: list[str]) -> bool:
        self.agent.reset()
        inject_files(self.agent, self.files)
        loaded = ", ".join(item.name for item in self.files)
        self.say("conversation and variables cleared"
                                + (f"; reloaded {loaded}" if loaded else ""), "green")
        return True

    def history(self, args: list[str]) -> bool:
        messages = self.agent.history
        if not messages:
            self.say("(no messages yet)", "dim")
            return True
        for i, message in enumerate(messages, 1):
            first = headline(message.content)
            line = Text(f"{i:3d} ", style="dim")
            line.append(f"{message.role:10s}", style="cyan" if message.role == "user" else "green")
            line.append(first[:100] + ("…" if len(first) > 100 else ""))
            line.append(f"  ({len(message.content):,} chars)", style="dim")
            self.console.print(line)
        return True


def headline(content: str) -> str:
    """One line that says what a history message is: the question, the prose, or the code's size."""
    if content.startswith("[runtime state]") and "\n\n" in content:
        content = content.split("\n\n", 1)[1]  # past the variable list: what the user typed
    lines = [line.strip() for line in content.strip().splitlines()]
    code = sum(1 for line in lines if line.startswith("```"))
    prose = next((line for line in lines if line and not line.startswith("```")), "")
    if code and (not prose or lines[0].startswith("```")):
        body = len(lines) - code
        return f"(python, {body} line{'s' if body != 1 else ''})"
    return prose


def bounded_view(name: str, value: Any) -> Any:
    """A terminal view of a value that stays small however big the value is."""
    if isinstance(value, pd.Series):
        value = value.to_frame(name=value.name if value.name is not None else name)
    if isinstance(value, pd.DataFrame):
        rows, cols = value.shape
        shown = value.iloc[:_SHOW_ROWS, :_SHOW_COLS]
        header = Text(f"{name}: DataFrame {rows:,} rows × {cols} columns", style="bold")
        table = Table()
        named_index = not isinstance(value.index, pd.RangeIndex)
        if named_index:
            table.add_column(str(value.index.name or ""), style="bold")
        for column in shown.columns:
            table.add_column(f"{column}\n{value[column].dtype}", justify="right")
        for index, row in zip(shown.index, shown.itertuples(index=False), strict=True):
            cells = [_cell(v) for v in row]
            table.add_row(*([_cell(index)] if named_index else []), *cells)
        more = []
        if rows > _SHOW_ROWS:
            more.append(f"{rows - _SHOW_ROWS:,} more rows")
        if cols > _SHOW_COLS:
            more.append(f"{cols - _SHOW_COLS} more columns")
        if more:
            table.caption = " · ".join(more)
        return Group(header, table)
    if isinstance(value, np.ndarray):
        return Text(f"{name}: ndarray {value.shape} {value.dtype}\n"
                    + np.array2string(value, threshold=200, edgeitems=4))
    return Pretty(value, max_length=20, max_string=400, max_depth=4)


def _cell(value: Any) -> Text:
    text = f"{value:,.4g}" if isinstance(value, float | np.floating) else str(value)
    return Text(text if len(text) <= 60 else text[:59] + "…")


def run_chat(args: argparse.Namespace, console: Console) -> int:
    """``cavelite chat``: load, connect, then read messages until /quit or end of input."""
    agent, files = open_session(args)
    with agent:
        return ChatSession(agent, files, console).loop()
