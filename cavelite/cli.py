"""The ``cavelite`` command: ``chat``, ``run`` and ``demo``.

    cavelite chat [--data FILE ...] [--model NAME] [--base-url URL]
    cavelite run "QUESTION" [--data FILE ...] [--json]
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
or written; 5 the runtime failed; 130 interrupted.

Errors are one clear line on stderr, never a traceback: every error this
module expects is a `CaveliteError` (or argparse's usage error), translated
here into a message and an exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from cavelite.errors import CaveliteError, CaveRuntimeError, CaveUsageError, ModelError
from cavelite.events import Reply, StopReason
from cavelite.models import AnthropicModel, Model, OpenAIModel

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_DATA = 4
EXIT_RUNTIME = 5
EXIT_INTERRUPTED = 130

DEFAULT_CLAUDE = "claude-sonnet-4-5"
DEFAULT_OPENAI = "default"  # llama.cpp and most local servers serve whatever is loaded

INSTRUCTIONS = (
    "You are a careful data analyst working in a live Python session with pandas and numpy. "
    "Work step by step, check intermediate results, and answer concisely with the numbers you computed."
)

__all__ = ["main", "build_parser", "pick_model", "ConfigError", "EXIT_OK", "EXIT_INCOMPLETE",
           "EXIT_USAGE", "EXIT_MODEL", "EXIT_DATA", "EXIT_RUNTIME", "EXIT_INTERRUPTED"]


class ConfigError(CaveliteError):
    """No usable model configuration (no key, no server): the user must set something."""


def exit_code_for(reply: Reply) -> int:
    """The process exit code for how a chat ended."""
    if reply.stop_reason is StopReason.COMPLETED:
        return EXIT_OK
    if reply.stop_reason is StopReason.MODEL_ERROR:
        return EXIT_MODEL
    if reply.stop_reason is StopReason.RUNTIME_ERROR:
        return EXIT_RUNTIME
    return EXIT_INCOMPLETE


def pick_model(model: str | None = None, base_url: str | None = None, *, retries: int = 4,
               required: bool = True) -> Model | None:
    """The model the flags and environment select; None (or `ConfigError`) when there is none.

    An explicit ``base_url`` wins, then ``ANTHROPIC_API_KEY``, then ``CAVELITE_BASE_URL``.
    """
    name = model or os.environ.get("CAVELITE_MODEL") or None
    url = base_url or None
    if url is None and not os.environ.get("ANTHROPIC_API_KEY"):
        url = os.environ.get("CAVELITE_BASE_URL") or None
    if url is not None:
        key = os.environ.get("CAVELITE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        return OpenAIModel(name or DEFAULT_OPENAI, base_url=url, api_key=key, max_retries=retries,
                           max_backoff_s=8.0)
    if os.environ.get("ANTHROPIC_API_KEY"):
        return AnthropicModel(name or DEFAULT_CLAUDE, max_retries=retries, max_backoff_s=8.0)
    if required:
        raise ConfigError(
            "no model configured: set ANTHROPIC_API_KEY for Claude, or pass --base-url URL "
            "(or set CAVELITE_BASE_URL) for an OpenAI-compatible server such as llama.cpp"
        )
    return None


def describe_model(model: Model) -> str:
    if isinstance(model, OpenAIModel):
        return f"{model.name} at {model.base_url} (OpenAI-compatible)"
    if isinstance(model, AnthropicModel):
        return f"Claude {model.name}" + (f" at {model.base_url}" if model.base_url else "")
    return model.name or type(model).__name__


def _model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="NAME", help="model name (default: $CAVELITE_MODEL, "
                       f"{DEFAULT_CLAUDE} for Claude, '{DEFAULT_OPENAI}' for a compatible server)")
    group.add_argument("--base-url", metavar="URL", help="an OpenAI-compatible endpoint, e.g. "
                       "http://127.0.0.1:8080/v1 (default: $CAVELITE_BASE_URL)")
    group.add_argument("--retries", type=_non_negative, default=4, metavar="N",
                       help="retries on 429/5xx/connection errors (default: 4)")


def _session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", action="append", default=[], metavar="FILE",
                        help="CSV, TSV, JSON(L) or Parquet file loaded as a DataFrame named after the "
                        "file (repeatable)")
    parser.add_argument("--max-steps", type=_positive, default=20, metavar="N",
                        help="model calls per question (default: 20)")
    parser.add_argument("--cell-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="time limit for one cell (default: 30)")
    parser.add_argument("--instructions", default=INSTRUCTIONS, help="the system instructions")


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so the documentation and tests can read it)."""
    parser = argparse.ArgumentParser(
        prog="cavelite",
        description="An LLM operating a live, contained Python runtime.",
        epilog="exit codes: 0 ok, 1 no answer (step limit/budget/cancel), 2 usage, "
        "3 model/config, 4 data file, 5 runtime, 130 interrupted",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chat = sub.add_parser("chat", help="an interactive session (slash commands: /help)")
    _session_options(chat)
    _model_options(chat)
    run = sub.add_parser("run", help="answer one question and exit")
    run.add_argument("question", help="the question or task")
    run.add_argument("--json", action="store_true", help="print one JSON record instead of the display")
    _session_options(run)
    _model_options(run)
    demo = sub.add_parser("demo", help="an agent analysing a generated sales dataset")
    demo.add_argument("--offline", action="store_true",
                      help="use the scripted model even when a real one is configured")
    demo.add_argument("--rows", type=_positive, default=50_000, metavar="N",
                      help="rows of generated sales data (default: 50000)")
    demo.add_argument("--seed", type=int, default=2024, help="random seed of the dataset")
    _model_options(demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage error (or --help) already
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    from rich.console import Console

    err = Console(stderr=True)
    try:
        if args.command == "demo":
            from cavelite._cli_demo import run_demo

            return run_demo(args, Console())
        if args.command == "run":
            return _run(args, err)
        from cavelite._cli_chat import run_chat

        return run_chat(args, Console())
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        return EXIT_INTERRUPTED
    except CaveliteError as exc:
        return report(err, exc)


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
    """Load the data files, pick the model, start the agent; errors raise (data first)."""
    from cavelite._cli_files import load
    from cavelite.agent import CaveLite

    files = []
    taken: set[str] = set()
    for path in args.data:
        item = load(path, taken)
        taken.add(item.name)
        files.append(item)
    model = pick_model(args.model, args.base_url, retries=args.retries)
    assert model is not None
    agent = CaveLite(model, instructions=args.instructions, max_steps=args.max_steps,
                     cell_timeout=args.cell_timeout)
    try:
        inject_files(agent, files)
    except BaseException:
        agent.close()
        raise
    return agent, files


def inject_files(agent: Any, files: Sequence[Any]) -> None:
    for item in files:
        agent.inject(item.name, item.frame, description=item.description)


def model_failure(reply: Reply, model: Model) -> str:
    """A one-line explanation of a model_error stop, naming what to check."""
    hint = ""
    if isinstance(model, OpenAIModel):
        hint = f" (server: {model.base_url}; check --base-url / CAVELITE_BASE_URL)"
    elif isinstance(model, AnthropicModel):
        hint = " (check ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL)"
    return f"{reply.detail}{hint}"


def reply_record(reply: Reply, model: Model) -> dict[str, Any]:
    """The JSON record ``run --json`` prints."""
    usage = reply.usage
    return {
        "answer": reply.text if reply.completed else None,
        "last_text": reply.text,
        "stop_reason": reply.stop_reason.value,
        "completed": reply.completed,
        "detail": reply.detail,
        "steps": reply.steps,
        "cells": [
            {"step": c.step, "code": c.code, "ok": c.result.ok,
             "error": c.result.error.for_model() if c.result.error else None,
             "duration_s": round(c.result.duration_s, 6)}
            for c in reply.cells
        ],
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "total_tokens": usage.total_tokens,
        },
        "wall_s": round(reply.wall_s, 6),
        "model": model.name,
    }


def _run(args: argparse.Namespace, err: Any) -> int:
    from rich.console import Console

    from cavelite._cli_render import EventRenderer, drive

    agent, _ = open_session(args)
    with agent:
        renderer = None if args.json else EventRenderer(err, show_answer=False)
        reply = drive(agent, args.question, renderer)
    code = exit_code_for(reply)
    if args.json:
        sys.stdout.write(json.dumps(reply_record(reply, agent.model), indent=2) + "\n")
        sys.stdout.flush()
    elif reply.completed:
        Console(soft_wrap=True).print(reply.text, markup=False, highlight=False)
    if code == EXIT_MODEL:
        err.print(f"cavelite: model error: {model_failure(reply, agent.model)}", style="bold red",
                  markup=False, highlight=False, soft_wrap=True)
    elif code != EXIT_OK:
        err.print(f"cavelite: no answer: {reply.stop_reason.value}: {reply.detail}", style="yellow",
                  markup=False, highlight=False, soft_wrap=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
