"""The ``cavelite`` command: ``chat``, ``run`` and ``demo``.

    cavelite chat [--data [NAME=]FILE ...] [--model NAME] [--base-url URL]
    cavelite run "QUESTION" [--data [NAME=]FILE ...] [--json] [--save NAME PATH ...]
    cavelite demo [--offline] [--rows N]

The model: ``--base-url``/``CAVELITE_BASE_URL`` selects an OpenAI-compatible
server (``CAVELITE_API_KEY`` or ``OPENAI_API_KEY`` if it needs a key);
otherwise ``ANTHROPIC_API_KEY`` selects Claude. ``--model`` (or
``CAVELITE_MODEL``) names the model. Only ``demo`` runs without a model, on a
scripted one, and says so.

Exit codes, for scripts: 0 the answer was completed; 1 the chat stopped
without an answer (step limit, budget, cancelled); 2 bad usage (an unknown
option, a missing argument); 3 model or configuration error (no model
configured, bad key, unreachable server); 4 a data file could not be read
or written; 5 the runtime failed; 130 interrupted (Ctrl-C); 143 terminated
(SIGTERM).

Errors are one clear line on stderr, never a traceback: every error this
module expects is a `CaveliteError` (or argparse's usage error), translated
here into a message and an exit code. Signals are handled the same way:
SIGTERM becomes `Terminated` outside a chat, and inside one both Ctrl-C and
SIGTERM stop the chat through the agent (see `cavelite._cli_render.drive`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any

from cavelite._cli_model import (
    DEFAULT_CLAUDE,
    DEFAULT_OPENAI,
    ConfigError,
    check_served,
    describe_model,
    model_failure,
    name_given,
    pick_model,
)
from cavelite.errors import CaveliteError, CaveRuntimeError, CaveUsageError, ModelError
from cavelite.events import Reply, StopReason

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_DATA = 4
EXIT_RUNTIME = 5
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

INSTRUCTIONS = (
    "You are a careful data analyst working in a live Python session with pandas and numpy. "
    "Work step by step, check intermediate results, and answer concisely with the numbers you computed."
)

__all__ = ["main", "build_parser", "pick_model", "ConfigError", "EXIT_OK", "EXIT_INCOMPLETE",
           "EXIT_USAGE", "EXIT_MODEL", "EXIT_DATA", "EXIT_RUNTIME", "EXIT_INTERRUPTED",
           "EXIT_TERMINATED", "describe_model", "model_failure"]


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived outside a chat: unwind (closing the runtime), then exit 143.

    A `KeyboardInterrupt`, because that is what asyncio and the HTTP stack let
    through untouched from anywhere (any other exception raised by a signal
    handler inside them can come out as a "connection error").
    """


def exit_code_for(reply: Reply) -> int:
    """The process exit code for how a chat ended."""
    if reply.stop_reason is StopReason.COMPLETED:
        return EXIT_OK
    if reply.stop_reason is StopReason.MODEL_ERROR:
        return EXIT_MODEL
    if reply.stop_reason is StopReason.RUNTIME_ERROR:
        return EXIT_RUNTIME
    return EXIT_INCOMPLETE


def exit_code_for_signal(signum: int | None) -> int | None:
    if signum == signal.SIGINT:
        return EXIT_INTERRUPTED
    if signum == signal.SIGTERM:
        return EXIT_TERMINATED
    return None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cavelite")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from cavelite import __version__

        return __version__


def _model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="NAME", help="model name (default: $CAVELITE_MODEL, "
                       f"{DEFAULT_CLAUDE} for Claude; for a compatible server the one it serves, "
                       f"else '{DEFAULT_OPENAI}')")
    group.add_argument("--base-url", metavar="URL", help="an OpenAI-compatible endpoint, e.g. "
                       "http://127.0.0.1:8080/v1 (default: $CAVELITE_BASE_URL)")
    group.add_argument("--retries", type=_non_negative, default=4, metavar="N",
                       help="retries on 429/5xx/connection errors (default: 4)")
    group.add_argument("--no-stream", dest="stream", action="store_false",
                       help="ask for whole replies instead of a stream (for servers that stream badly)")
    group.add_argument("--call-timeout", type=_seconds, default=180.0, metavar="SECONDS",
                       help="time limit for one model call, retries included (default: 180; 0: none)")


def _session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", action="append", default=[], metavar="[NAME=]FILE",
                        help="CSV, TSV, JSON(L), Parquet or Excel file loaded as a DataFrame named NAME, "
                        "or after the file (repeatable)")
    parser.add_argument("--encoding", metavar="CODEC", help="text encoding of CSV/TSV/JSON data files "
                        "(default: UTF-8), e.g. latin-1, cp1252, utf-16")
    parser.add_argument("--on-bad-lines", choices=("error", "skip"), default="error",
                        help="CSV rows with too many fields: stop with an error (default) or skip them")
    parser.add_argument("--max-steps", type=_positive, default=20, metavar="N",
                        help="model calls per question (default: 20)")
    parser.add_argument("--max-wall-s", type=_seconds, default=900.0, metavar="SECONDS",
                        help="wall-clock budget per question (default: 900; 0: none)")
    parser.add_argument("--cell-timeout", type=_positive_seconds, default=30.0, metavar="SECONDS",
                        help="time limit for one cell (default: 30)")
    parser.add_argument("--instructions", default=INSTRUCTIONS, help="the system instructions")
    parser.add_argument("--figures", default="cavelite-figures", metavar="DIR",
                        help="where the figures cells draw are saved, one subfolder per session "
                        "(default: ./cavelite-figures)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds, 0 or more")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so the documentation and tests can read it)."""
    parser = argparse.ArgumentParser(
        prog="cavelite",
        description="An LLM operating a live, contained Python runtime.",
        epilog="exit codes: 0 ok, 1 no answer (step limit/budget/cancel), 2 usage, "
        "3 model/config, 4 data file, 5 runtime, 130 interrupted, 143 terminated",
    )
    parser.add_argument("--version", action="version", version=f"cavelite {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chat = sub.add_parser("chat", help="an interactive session (slash commands: /help)")
    _session_options(chat)
    _model_options(chat)
    run = sub.add_parser("run", help="answer one question and exit")
    run.add_argument("question", help="the question or task")
    run.add_argument("--json", action="store_true", help="print one JSON record instead of the display")
    run.add_argument("--save", nargs=2, action="append", default=[], metavar=("NAME", "PATH"),
                     help="when the chat ends, write variable NAME to PATH (.csv, .parquet, .json, "
                     ".xlsx, .pkl; repeatable)")
    _session_options(run)
    _model_options(run)
    from cavelite._cli_mcp import add_parser as add_mcp_parser

    add_mcp_parser(sub)
    demo = sub.add_parser("demo", help="an agent analysing a generated sales dataset")
    demo.add_argument("--offline", action="store_true",
                      help="use the scripted model even when a real one is configured")
    demo.add_argument("--rows", type=_positive, default=50_000, metavar="N",
                      help="rows of generated sales data (default: 50000)")
    demo.add_argument("--seed", type=int, default=2024, help="random seed of the dataset")
    _model_options(demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code. Ctrl-C and SIGTERM end it with 130 and 143."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage error (or --help) already
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    main_thread = _in_main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        return _dispatch(args)
    except Terminated:
        _say_stopped("terminated")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        _say_stopped("interrupted")
        return EXIT_INTERRUPTED
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _dispatch(args: argparse.Namespace) -> int:
    from rich.console import Console

    err = Console(stderr=True)
    try:
        if args.command == "demo":
            from cavelite._cli_demo import run_demo

            return run_demo(args, Console())
        if args.command == "run":
            from cavelite._cli_run import run_question

            return run_question(args, err)
        if args.command == "mcp":
            from cavelite._cli_mcp import run_mcp

            return run_mcp(args)
        from cavelite._cli_chat import run_chat

        return run_chat(args, Console())
    except CaveliteError as exc:
        return report(err, exc)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _say_stopped(what: str) -> None:
    try:
        sys.stderr.write(f"cavelite: {what}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def report(console: Any, exc: BaseException) -> int:
    """Print an expected error as one line and return its exit code."""
    from rich.text import Text

    from cavelite._cli_files import DataFileError

    if isinstance(exc, DataFileError):
        code, what = EXIT_DATA, "data file error"
    elif isinstance(exc, ConfigError | ModelError):
        code, what = EXIT_MODEL, "model error"
    elif isinstance(exc, CaveRuntimeError):
        code, what = EXIT_RUNTIME, "runtime error"
    elif isinstance(exc, CaveUsageError):
        code, what = EXIT_USAGE, "usage error"
    else:
        code, what = EXIT_RUNTIME, "error"
    console.print(Text(f"cavelite: {what}: {exc}", style="bold red"), soft_wrap=True)
    return code


def open_session(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    """Load the data files, pick and check the model, start the agent; errors raise (data first)."""
    from cavelite._cli_files import load
    from cavelite.agent import CaveLite

    files = []
    taken: set[str] = set()
    for spec in args.data:
        item = load(spec, taken, encoding=args.encoding, on_bad_lines=args.on_bad_lines)
        taken.add(item.name)
        files.append(item)
    call_timeout = args.call_timeout or None
    model = pick_model(args.model, args.base_url, retries=args.retries, stream=args.stream,
                       timeout=call_timeout)
    assert model is not None
    check_served(model, named=name_given(args.model))
    from cavelite.runtime.runtime import FIGURES_PRELOAD  # charts are what a CLI user wants

    agent = CaveLite(model, instructions=args.instructions, max_steps=args.max_steps,
                     cell_timeout=args.cell_timeout, max_wall_s=args.max_wall_s or None,
                     call_timeout=call_timeout, preload=FIGURES_PRELOAD)
    try:
        inject_files(agent, files)
    except BaseException:
        agent.close()
        raise
    return agent, files


def inject_files(agent: Any, files: Sequence[Any]) -> None:
    for item in files:
        agent.inject(item.name, item.frame, description=item.description)


if __name__ == "__main__":
    from cavelite.__main__ import console_entry

    console_entry()
