"""A real pseudo-terminal running a real command, for testing the interactive CLI.

The command runs in its own session with the pty as its controlling
terminal, so Ctrl-C typed into the pty is a real SIGINT from the tty driver,
line editing is real readline, and rich sees a real terminal. Tests read the
screen until what they wait for appears, with a timeout: never the clock.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence

# Make the pty the controlling terminal (we are a session leader: start_new_session), then exec.
_ADOPT_TTY = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)
_ANSI = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-B]|\x1b[=>78]|\r"
)


class Terminal:
    """``Terminal(argv)``; `expect` what should appear, `send` keys, `wait` for the exit code."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str], cols: int = 110, rows: int = 40,
                 cwd: str | None = None) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ADOPT_TTY, *argv], stdin=slave, stdout=slave, stderr=slave,
            env=env, cwd=cwd, start_new_session=True, close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.raw = b""
        self._seen = 0  # the screen text before this was matched already
        self._eof = False

    @property
    def text(self) -> str:
        """Everything the program wrote, escape sequences removed."""
        return _ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def _read(self, timeout: float) -> None:
        if self._eof:
            return
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not ready:
            return
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the program closed the terminal (it exited)
            chunk = b""
        if chunk:
            self.raw += chunk
        else:
            self._eof = True

    def expect(self, pattern: str, timeout: float = 90.0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears after what earlier calls matched."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.text, self._seen)
            if match:
                self._seen = match.end()
                return match
            left = deadline - time.monotonic()
            if left <= 0 or self._eof:
                tail = self.text[self._seen:][-3000:]
                raise AssertionError(f"{pattern!r} did not appear (exited: {self._eof}); "
                                     f"the screen after the last match:\n{tail}")
            self._read(left)

    def expect_bytes(self, needle: bytes, timeout: float = 90.0) -> None:
        """Wait until the raw output (escape sequences and all) holds ``needle``."""
        deadline = time.monotonic() + timeout
        while needle not in self.raw:
            left = deadline - time.monotonic()
            if left <= 0 or self._eof:
                raise AssertionError(f"{needle!r} was not written; the end of it: {self.raw[-500:]!r}")
            self._read(left)

    def send(self, keys: str | bytes) -> None:
        os.write(self.master, keys.encode() if isinstance(keys, str) else keys)

    def wait(self, timeout: float = 120.0) -> int:
        """The exit code, once the program has ended (its output is all read)."""
        deadline = time.monotonic() + timeout
        while not self._eof and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())
        try:
            return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            screen = self.text[-2000:]
            raise AssertionError(f"the program did not exit; its screen ends with:\n{screen}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)
