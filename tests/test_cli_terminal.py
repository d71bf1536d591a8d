"""The real ``cavelite`` command in real processes: signals, and the chat in a pseudo-terminal.

Each test starts the installed console script (or ``python -m cavelite.cli``)
as a subprocess; model traffic goes to the loopback chat-completions server.
Where a test must act "while the model works", the server stalls and the
test waits on its ``stalled`` event or on text in the terminal, never on
the clock.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import fixtures as loopback
from fakes.terminal import Terminal

from cavelite.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED

openai_server = loopback.openai_server
openai_api = loopback.openai_api

_SCRIPT = shutil.which("cavelite", path=os.path.dirname(sys.executable))
COMMAND = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "cavelite.cli"]


def py(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "CAVELITE_"))}
    clean.update(TERM="xterm-256color", XDG_STATE_HOME=str(tmp_path / "state"), HOME=str(tmp_path))
    clean.pop("COLUMNS", None)
    clean.pop("LINES", None)
    # The command must run the cavelite under test (this checkout), not whichever one the
    # venv's editable install points at.
    clean["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parent.parent), clean.get("PYTHONPATH")) if p)
    return clean


def _default_sigint() -> None:
    # A test runner started in the background (no job control) ignores SIGINT, and a child
    # inherits that: the command would rightly keep ignoring it, and the test would hang.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*COMMAND, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_default_sigint)


def stop(proc: subprocess.Popen[str], server: object) -> None:
    """Let the stalled server go; kill the command if it is still there, and reap it here
    (not in the garbage collector, during a later test)."""
    server.release.set()  # type: ignore[attr-defined]
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


# -- signals in `run` ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, EXIT_INTERRUPTED),
                                              (signal.SIGTERM, EXIT_TERMINATED)])
def test_a_signal_during_the_model_call_still_prints_the_record(openai_api, env, signum, code):
    openai_api.reply(py("kept = [1, 2]"))
    openai_api.stall("I am about to")
    proc = start(["run", "go", "--json", "--base-url", openai_api.url], env)
    try:
        assert openai_api.stalled.wait(60), "the second model call never started"
        proc.send_signal(signum)
        returncode, out, err = finish(proc)
    finally:
        stop(proc, openai_api)
    assert returncode == code, err
    record = json.loads(out)
    assert record["stop_reason"] == "cancelled" and record["signal"] == signal.Signals(signum).name
    assert [c["code"] for c in record["cells"]] == ["kept = [1, 2]"] and record["cells"][0]["ok"]
    assert "Traceback" not in err and ("interrupted" if signum == signal.SIGINT else "terminated") in err


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, EXIT_INTERRUPTED),
                                              (signal.SIGTERM, EXIT_TERMINATED)])
def test_a_signal_during_start_up_exits_cleanly(openai_api, env, signum, code):
    openai_api.models = ["m"]
    openai_api.stall_models = True  # the start-up model check hangs until released
    proc = start(["run", "go", "--base-url", openai_api.url, "--model", "m"], env)
    try:
        assert openai_api.stalled.wait(60), "the model check never started"
        proc.send_signal(signum)
        returncode, out, err = finish(proc)
    finally:
        stop(proc, openai_api)
    assert returncode == code
    assert "Traceback" not in err and "Exception ignored" not in err
    assert ("interrupted" if signum == signal.SIGINT else "terminated") in err
    assert openai_api.requests == []


def test_ctrl_c_while_a_cell_runs_interrupts_it_and_exits_130(openai_api, env):
    openai_api.reply(py("n = 0\nwhile True:\n    n += 1"))
    term = Terminal([*COMMAND, "run", "spin", "--base-url", openai_api.url, "--cell-timeout", "60"],
                    env=env)
    try:
        term.expect("running the cell")
        term.send("\x03")  # Ctrl-C typed in the terminal: the tty driver sends SIGINT
        # (the "stopping: interrupting the running cell" phase may be gone before a redraw)
        term.expect("interrupted: Interrupted · namespace rolled back")  # not its 60 s limit
        term.expect("cell failed")
        term.expect("cavelite: interrupted: the chat was stopped")
        assert term.wait() == EXIT_INTERRUPTED
        assert "Traceback" not in term.text
        assert len(openai_api.requests) == 1  # stopped: the model was not asked again
    finally:
        term.close()


# -- the interactive chat, in a terminal --------------------------------------------------------------


def test_chat_streams_keeps_a_cut_reply_and_never_takes_typed_ahead_text(openai_api, env):
    openai_api.stall("Let me look at the da")
    term = Terminal([*COMMAND, "chat", "--base-url", openai_api.url], env=env)
    try:
        term.expect("you ›")
        term.send("first question\r")
        term.expect("Let me look at the da")  # on screen while the call is still open
        term.expect(r"model writing · \d+\.\d s")  # with an elapsed timer
        term.send("hello")  # typed while the model works: not echoed, not sent
        term.send("\x03")
        term.expect(r"Let me look at the da\s+\(the reply was cut here: cancelled\)")
        openai_api.release.set()
        term.expect("you typed while the model worked \\(not sent\\): hello")
        term.expect("you ›")
        assert len(openai_api.requests) == 1
        openai_api.reply("Two blocks.\n" + py("x = 6 * 7\nprint(x)") + "\nand\n" + py("y = 2"))
        openai_api.reply("x is 42.")
        term.send(" world\r")  # the typed-ahead text was put in the line: extend it, send it
        term.expect("python · runs")
        term.expect("python · not run: only the first block of a reply runs")
        term.expect("x is 42")
        term.expect("you ›")
        assert openai_api.requests[1].body["messages"][-1]["content"].endswith("hello world")
        term.send("/quit\r")
        assert term.wait() == EXIT_OK
    finally:
        openai_api.release.set()
        term.close()


def test_chat_line_editing_history_and_ctrl_l(openai_api, env, tmp_path):
    term = Terminal([*COMMAND, "chat", "--base-url", openai_api.url], env=env)
    try:
        term.expect("you ›")
        term.send("/vars\r")
        term.expect("no variables")
        term.expect("you ›")
        term.send("\x0c")  # Ctrl-L: readline clears the screen (cursor home, erase) and redraws
        term.expect_bytes(b"\x1b[H")
        term.expect_bytes(b"J")
        term.send("/xhelp\x01\x1b[C\x1b[3~\r")  # Ctrl-A, right arrow, Delete: real line editing
        term.expect("/save NAME PATH")
        term.send("/quit\r")
        assert term.wait() == EXIT_OK
    finally:
        term.close()
    history = tmp_path / "state" / "cavelite" / "history"
    assert history.read_text().splitlines()[-3:] == ["/vars", "/help", "/quit"]
    again = Terminal([*COMMAND, "chat", "--base-url", openai_api.url], env=env)
    try:
        again.expect("you ›")
        again.send("\x1b[A")  # up: the previous session's last line comes back
        again.expect("/quit")
        again.send("\x1b[A")  # readline redraws only what differs from "/quit"
        again.expect("help")
        again.send("\r")
        again.expect("/save NAME PATH")
        again.expect("you ›")  # readline is reading again (a Ctrl-D before it would be lost)
        again.send("\x04")  # Ctrl-D leaves
        assert again.wait() == EXIT_OK
    finally:
        again.close()


def test_sigterm_at_the_chat_prompt_exits_143(openai_api, env):
    term = Terminal([*COMMAND, "chat", "--base-url", openai_api.url], env=env)
    try:
        term.expect("you ›")
        term.proc.send_signal(signal.SIGTERM)
        assert term.wait() == EXIT_TERMINATED
        assert "terminated" in term.text and "Traceback" not in term.text
    finally:
        term.close()
