"""``cavelite chat``: the interactive session and its slash commands.

Messages go to the agent; lines starting with ``/`` are commands for the
host side of the session (look at variables, save one to a file, save the
transcript, reset). Those commands use the runtime's public API only
(``variables``, ``retrieve``), so they never show the model anything and
never run code the model wrote in the host. Arguments are split like a
shell's, so a path with spaces can be quoted.
"""

from __future__ import annotations

import argparse
import shlex
import signal
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cavelite._cli_figures import FigureFolder
from cavelite._cli_files import DataFile, DataFileError, save
from cavelite._cli_input import LineReader
from cavelite._cli_model import describe_model, model_failure
from cavelite._cli_render import EventRenderer, drive
from cavelite._cli_show import bounded_view
from cavelite._cli_transcript import Transcript
from cavelite.agent import CaveLite
from cavelite.cli import EXIT_OK, EXIT_TERMINATED, Terminated, inject_files, open_session
from cavelite.errors import CaveliteError, TransferError, VariableNotFoundError
from cavelite.events import StopReason

HELP = """\
/vars                 variables in the runtime, with their summaries
/show NAME            a bounded view of one variable
/save NAME PATH       retrieve NAME and write it (.csv, .parquet, .json, .xlsx, .pkl); quote paths
                      with spaces; asks before overwriting
/transcript PATH      save the chat so far, what was said and what ran (.jsonl, .md, or both)
/reset                forget the conversation and the variables (data files are loaded again)
/history [N]          the conversation so far; with N, message N in full
/help                 this list
/quit                 leave (Ctrl-D works too)
Ctrl-C while the model works cancels that step; the session goes on. Ctrl-L clears the screen."""


class ChatSession:
    """One interactive session: an agent, the files loaded into it, a console and its input."""

    def __init__(self, agent: CaveLite, files: list[DataFile], console: Console,
                 reader: LineReader | None = None, figures: FigureFolder | None = None) -> None:
        self.agent = agent
        self.figures = figures or FigureFolder()
        self.files = files
        self.console = console
        self.reader = reader or LineReader(console)
        self.transcript = Transcript()
        self.commands: dict[str, Callable[[list[str]], bool]] = {
            "vars": self.vars, "show": self.show, "save": self.save, "reset": self.reset,
            "history": self.history, "transcript": self.save_transcript, "help": self.help,
            "quit": self.quit, "exit": self.quit,
        }

    def say(self, text: str, style: str = "") -> None:
        """One message line, unwrapped (the terminal wraps it), so paths and names stay whole."""
        self.console.print(Text(text, style=style), soft_wrap=True)

    def welcome(self) -> None:
        body = Text(f"model: {describe_model(self.agent.model)}\n")
        for item in self.files:
            body.append(f"{item.name}", style="bold")
            body.append(f" ← {item.path} ({item.frame.shape[0]:,} rows × {item.frame.shape[1]} columns)")
            body.append(f"; {item.note}\n" if item.note else "\n", style="yellow" if item.note else "")
        body.append("Ask a question, or /help for commands.", style="dim")
        self.console.print(Panel(body, title="cavelite chat", title_align="left", border_style="cyan"))

    def loop(self) -> int:
        """Read and answer until /quit, end of input or SIGTERM; returns the exit code."""
        self.welcome()
        try:
            while True:
                try:
                    line = self.reader.read()
                except EOFError:
                    self.console.print()
                    return EXIT_OK
                except Terminated:
                    raise
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
                code = self.ask(line)
                if code is not None:
                    return code
        finally:
            self.reader.save()

    def ask(self, message: str) -> int | None:
        """One question, shown live; an exit code if the session must end (SIGTERM)."""
        self.transcript.question(message)
        renderer = EventRenderer(self.console, cell_timeout=self.agent.cell_timeout,
                                 figures=self.figures)
        with self.reader.model_working():
            driven = drive(self.agent, message, renderer, on_event=self.transcript.on_event)
        reply = driven.reply
        if reply.stop_reason is StopReason.MODEL_ERROR:
            self.say(f"model error: {model_failure(reply.detail, reply.error, self.agent.model)}", "bold red")
        if driven.signal == signal.SIGTERM:
            self.say("terminated: the session ends", "yellow")
            return EXIT_TERMINATED
        return None

    def command(self, line: str) -> bool:
        """Run a slash command; False means leave the session."""
        try:
            name, *rest = shlex.split(line[1:]) or [""]
        except ValueError as exc:  # an unclosed quote
            self.say(f"cannot read that command: {exc}", "yellow")
            return True
        handler = self.commands.get(name.lower()) if name else None
        if handler is None:
            self.say(f"unknown command /{name}; /help lists them", "yellow")
            return True
        try:
            return handler(rest)
        except (CaveliteError, OSError) as exc:
            self.say(f"/{name}: {exc}", "red")
            return True

    def confirm(self, question: str) -> bool:
        self.say(question, "yellow")
        try:
            answer = self.reader.read("[y/N] ")
        except Terminated:
            raise
        except (EOFError, KeyboardInterrupt):
            self.console.print()
            return False
        return answer.strip().lower() in ("y", "yes")

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
            self.say('usage: /save NAME PATH   (.csv, .parquet, .json, .xlsx, .pkl; "quote" paths with '
                     "spaces)", "yellow")
            return True
        name, path = args
        target = Path(path).expanduser()
        try:
            value = self.agent.retrieve(name)
        except VariableNotFoundError:
            self.say(f"no variable named {name!r}; /vars lists them", "yellow")
            return True
        if target.is_dir():
            self.say(f"{target} is a directory; give a file name", "yellow")
            return True
        if target.exists() and not self.confirm(f"{target} exists; overwrite it?"):
            self.say("not saved", "yellow")
            return True
        try:
            written = save(value, path)
        except DataFileError as exc:
            self.say(str(exc), "red")
            return True
        self.transcript.note(f"saved {name} to {written}")
        self.say(f"saved {name} ({type(value).__name__}) to {written}", "green")
        return True

    def save_transcript(self, args: list[str]) -> bool:
        if len(args) != 1:
            self.say("usage: /transcript PATH   (PATH.jsonl, PATH.md, or a name without either for both)",
                     "yellow")
            return True
        target = Path(args[0]).expanduser()
        if target.is_dir():
            self.say(f"{target} is a directory; give a file name", "yellow")
            return True
        written = self.transcript.write(target)
        self.say("saved the transcript to " + " and ".join(str(p) for p in written), "green")
        return True

    def reset(self, args: list[str]) -> bool:
        self.agent.reset()
        inject_files(self.agent, self.files)
        self.transcript.note("the conversation and the variables were reset")
        loaded = ", ".join(item.name for item in self.files)
        self.say("conversation and variables cleared" + (f"; reloaded {loaded}" if loaded else ""), "green")
        return True

    def history(self, args: list[str]) -> bool:
        messages = self.agent.history
        if not messages:
            self.say("(no messages yet)", "dim")
            return True
        if args:
            return self._one_message(args[0])
        for i, message in enumerate(messages, 1):
            first = headline(message.content)
            line = Text(f"{i:3d} ", style="dim")
            line.append(f"{message.role:10s}", style="cyan" if message.role == "user" else "green")
            line.append(first[:100] + ("…" if len(first) > 100 else ""))
            line.append(f"  ({len(message.content):,} chars)", style="dim")
            self.console.print(line)
        self.say("/history N shows message N in full", "dim")
        return True

    def _one_message(self, number: str) -> bool:
        messages = self.agent.history
        if not number.isdigit() or not 1 <= int(number) <= len(messages):
            self.say(f"usage: /history N, with N from 1 to {len(messages)}", "yellow")
            return True
        message = messages[int(number) - 1]
        self.console.rule(Text(f"message {number} · {message.role} · {len(message.content):,} chars",
                               style="cyan"), style="dim")
        self.console.print(Text(message.content), soft_wrap=True)
        self.console.rule(style="dim")
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


def run_chat(args: argparse.Namespace, console: Console) -> int:
    """``cavelite chat``: load, connect, then read messages until /quit or end of input."""
    agent, files = open_session(args)
    with agent:
        return ChatSession(agent, files, console, figures=FigureFolder(args.figures)).loop()
