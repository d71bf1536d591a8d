"""``cavelite run``: one question, for scripts.

The answer goes to stdout (or, with ``--json``, one record holding every
cell's output, value, changed variables and structured error, the usage and
the stop reason); the live display goes to stderr. ``--save NAME PATH``
writes variables out when the chat ends, however it ends. Ctrl-C and
SIGTERM stop the chat through the agent, so the record is still printed,
and the exit code says which signal came (130, 143).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from cavelite._cli_figures import FigureFolder
from cavelite._cli_files import DataFileError, save
from cavelite._cli_model import model_failure
from cavelite._cli_records import reply_record
from cavelite._cli_render import EventRenderer, drive
from cavelite.cli import EXIT_DATA, EXIT_MODEL, EXIT_OK, exit_code_for, exit_code_for_signal, open_session
from cavelite.errors import CaveliteError, VariableNotFoundError


def run_question(args: argparse.Namespace, err: Console) -> int:
    agent, _ = open_session(args)
    figures = FigureFolder(args.figures)
    with agent:
        renderer = None if args.json else EventRenderer(err, show_answer=False,
                                                         cell_timeout=agent.cell_timeout, figures=figures)
        driven = drive(agent, args.question, renderer)
        reply = driven.reply
        if renderer is None:  # the renderer saved them as the cells came
            for cell in reply.cells:
                figures.save(cell.step, cell.result.figures)
        saved = [save_variable(agent, name, path) for name, path in args.save]
    code = exit_code_for(reply)
    if (figures.errors or any(not item["ok"] for item in saved)) and code == EXIT_OK:
        code = EXIT_DATA
    code = exit_code_for_signal(driven.signal) or code
    if args.json:
        record = reply_record(reply, agent.model.name, figures.saved)
        record["figure_errors"] = figures.errors
        record["saved"] = saved
        record["signal"] = signal.Signals(driven.signal).name if driven.signal else None
        sys.stdout.write(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    elif reply.completed:
        Console(soft_wrap=True).print(reply.text, markup=False, highlight=False)
    _say_outcome(err, reply, agent.model, saved, driven.signal)
    return code


def save_variable(agent: Any, name: str, path: str) -> dict[str, Any]:
    """Retrieve ``name`` and write it; the outcome as a record (nothing raises)."""
    try:
        written = save(agent.retrieve(name), path)
    except VariableNotFoundError:
        return {"name": name, "path": path, "ok": False, "error": f"no variable named {name!r}"}
    except (DataFileError, CaveliteError, OSError) as exc:
        return {"name": name, "path": path, "ok": False, "error": str(exc)}
    return {"name": name, "path": str(written), "ok": True, "error": None}


def _say_outcome(err: Console, reply: Any, model: Any, saved: list[dict[str, Any]],
                 signum: int | None) -> None:
    def say(text: str, style: str) -> None:
        err.print(Text(text, style=style), soft_wrap=True)

    for item in saved:
        if item["ok"]:
            say(f"saved {item['name']} to {item['path']}", "green")
        else:
            say(f"cavelite: data file error: cannot save {item['name']}: {item['error']}", "bold red")
    if signum is not None:
        what = "interrupted" if signum == signal.SIGINT else "terminated"
        say(f"cavelite: {what}: the chat was stopped "
            f"({reply.stop_reason.value})", "yellow")
    elif exit_code_for(reply) == EXIT_MODEL:
        say(f"cavelite: model error: {model_failure(reply.detail, reply.error, model)}", "bold red")
    elif not reply.completed:
        say(f"cavelite: no answer: {reply.stop_reason.value}: {reply.detail}", "yellow")
