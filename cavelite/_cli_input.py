"""What the user types in ``cavelite chat``: line editing, a persisted history, typing ahead.

Lines are read with `input()` and GNU readline, so arrows, Ctrl-A/E, Ctrl-R
and Ctrl-L (clear the screen) work as in a shell; the history is kept in the
user's state directory (``$XDG_STATE_HOME/cavelite/history``, by default
``~/.local/state/cavelite/history``) and comes back in the next session.

While the model works, the terminal does not echo and nothing typed is
taken as the next question: `LineReader.model_working` switches the line
discipline to no-echo, non-canonical input (Ctrl-C still interrupts) and,
afterwards, collects what was typed, says so, and puts it into the next
input line for the user to edit or send with Enter.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

HISTORY_LENGTH = 2000
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|O.|.)")  # arrow keys and the like
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def history_path() -> Path:
    """Where the input history lives: ``$XDG_STATE_HOME/cavelite/history``."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "cavelite" / "history"


class LineReader:
    """Reads the user's lines; remembers them between sessions when the input is a terminal."""

    def __init__(self, console: Console, *, stdin: Any = None) -> None:
        self.console = console
        self.stdin = stdin if stdin is not None else sys.stdin
        self.interactive = _is_tty(self.stdin) and _is_tty(sys.stdout)
        self._readline: Any = None
        self._loaded = 0
        self._prefill = ""
        if self.interactive:
            self._start_readline()

    def _start_readline(self) -> None:
        try:
            import readline
        except ImportError:  # Python built without it: plain input() still works
            return
        self._readline = readline
        readline.set_history_length(HISTORY_LENGTH)
        path = history_path()
        with contextlib.suppress(OSError):
            readline.read_history_file(path)
        self._loaded = readline.get_current_history_length()

    def read(self, prompt: str = "you › ") -> str:
        """One line (EOFError at Ctrl-D / end of input, KeyboardInterrupt at Ctrl-C)."""
        if not self.interactive:
            return input(prompt)
        with _signals_reach_readline():
            return self._read_line(prompt)

    def _read_line(self, prompt: str) -> str:
        shown = f"\x01\x1b[1;36m\x02{prompt.rstrip()}\x01\x1b[0m\x02 "  # \x01..\x02: zero width
        if self._readline is not None and self._prefill:
            text, self._prefill = self._prefill, ""
            readline = self._readline

            def insert() -> None:
                readline.insert_text(text)
                readline.redisplay()

            readline.set_pre_input_hook(insert)
            try:
                return input(shown)
            finally:
                readline.set_pre_input_hook(None)
        return input(shown)

    def save(self) -> None:
        """Write the history (the file's lines, then this session's, at most HISTORY_LENGTH)."""
        if self._readline is None or self._readline.get_current_history_length() == self._loaded:
            return
        path = history_path()
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.touch(mode=0o600)  # what someone typed is theirs alone
            self._readline.write_history_file(path)
        self._loaded = self._readline.get_current_history_length()

    @contextlib.contextmanager
    def model_working(self) -> Iterator[None]:
        """No echo and no line editing while the model works; what was typed is kept apart."""
        if not self.interactive:
            yield
            return
        import termios

        fd = self.stdin.fileno()
        saved = termios.tcgetattr(fd)
        quiet = termios.tcgetattr(fd)
        quiet[3] &= ~(termios.ECHO | termios.ICANON)  # ISIG stays: Ctrl-C still interrupts
        quiet[3] |= termios.NOFLSH  # and does not throw away what was typed, or shown
        quiet[6][termios.VMIN], quiet[6][termios.VTIME] = 1, 0
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
        try:
            yield
        finally:
            typed = _drain(fd)
            termios.tcsetattr(fd, termios.TCSANOW, saved)
            self._typed_ahead(typed)

    def _typed_ahead(self, raw: bytes) -> None:
        text = _CONTROL.sub("", _ESCAPES.sub("", raw.decode("utf-8", "replace").replace("\r", "\n")))
        text = " ".join(part.strip() for part in text.split("\n") if part.strip())
        if not text:
            return
        shown = text if len(text) <= 80 else text[:79] + "…"
        self.console.print(Text.assemble(
            ("you typed while the model worked (not sent): ", "yellow"), (shown, "default"),
            ("\n  it is in the input line below: Enter sends it, Ctrl-U clears it", "dim"),
        ), soft_wrap=True)
        self._prefill = text


@contextlib.contextmanager
def _signals_reach_readline() -> Iterator[None]:
    """Make a signal that arrives at the prompt take effect now, not after the next Enter.

    CPython runs a signal's Python handler from readline's wait only when the
    wait is interrupted (EINTR); a signal that lands just before readline
    starts waiting is noticed only after the next key. The C-level handler
    writes the signal number to the wakeup fd at once, though, so a helper
    thread reading it pokes the main thread with a no-op SIGUSR1 until the
    wait is interrupted and the pending handler (Ctrl-C, SIGTERM) has run.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wake_r, wake_w = os.pipe()
    stop_r, stop_w = os.pipe()
    os.set_blocking(wake_w, False)
    previous_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    previous_usr1 = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    done = threading.Event()
    main = threading.main_thread().ident
    assert main is not None

    def poke() -> None:
        ready, _, _ = select.select([wake_r, stop_r], [], [])
        if wake_r in ready:
            for _ in range(40):  # at most 2 s of pokes; the first one usually suffices
                if done.wait(0.05):
                    break
                signal.pthread_kill(main, signal.SIGUSR1)

    helper = threading.Thread(target=poke, name="cavelite-prompt-signals", daemon=True)
    helper.start()
    try:
        yield
    finally:
        done.set()
        os.write(stop_w, b"x")
        helper.join()
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGUSR1, previous_usr1)
        for fd in (wake_r, wake_w, stop_r, stop_w):
            os.close(fd)


def _drain(fd: int) -> bytes:
    """Everything already typed on ``fd``, without waiting for more."""
    chunks = []
    while select.select([fd], [], [], 0)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
