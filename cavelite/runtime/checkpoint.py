"""Atomic cells without copying the namespace: a forked checkpoint that waits on a pipe.

Before a cell the worker forks a *checkpoint* that blocks on a pipe. The
worker runs the cell itself (it keeps its thread pools and warm pages, so
numpy pays no re-initialisation). On success it writes ``C`` on the pipe and
the checkpoint exits ("commit"); on any failure the worker exits, the pipe
reaches end-of-file, and the checkpoint, which holds the state from before
the cell, becomes the worker. A kill from the host (timeout) or a crash
closes the pipe the same way, so every failure path is one path.

The strategy is chosen once per worker: `Checkpoints` when the session is
atomic, `NoCheckpoints` otherwise.
"""

from __future__ import annotations

import faulthandler
import os
import select
import socket
import time
from collections.abc import Callable
from typing import NoReturn

from ..security import limits


class NoCheckpoints:
    """``atomic=False``: cells change the namespace in place, as in Jupyter."""

    active = False
    waiting = True  # nothing to wait for: cells are never refused for want of one
    crash_report = ""
    fork_error = ""

    def prepare(self) -> bool:
        return False

    def commit(self) -> None:
        pass

    def roll_back(self) -> NoReturn:
        raise AssertionError("no checkpoint to roll back to")


class Checkpoints:
    """One forked checkpoint at a time, renewed after each commit."""

    active = True

    def __init__(self, sock: socket.socket, warm: Callable[[], None]):
        self._sock = sock
        self._warm = warm
        self._pipe: int | None = None  # write end, held by the worker while a checkpoint waits
        self.crash_report = ""  # what the failed worker wrote into the pipe (faulthandler)
        self.fork_error = ""  # why the last fork failed (the session is at its process limit)

    @property
    def waiting(self) -> bool:
        """A checkpoint waits: a cell that fails can be rolled back."""
        return self._pipe is not None

    def prepare(self) -> bool:
        """Make sure a checkpoint waits. Returns True in the checkpoint once it has taken over.

        When the session is at its process limit (a cell forked until the kernel said
        no, and its children are still being reaped) the fork is retried for a moment;
        if it still fails no checkpoint waits, and `waiting` says so: the next cell is
        refused rather than run without a way back.
        """
        if self._pipe is not None:
            return False
        read_end, write_end = os.pipe()
        try:
            child = _fork_retrying()
        except OSError as exc:
            os.close(read_end)
            os.close(write_end)
            self.fork_error = exc.strerror or str(exc)
            return False
        self.fork_error = ""
        if child == 0:
            os.close(write_end)
            faulthandler.disable()
            limits.set_process_name("cave-checkpoint")
            self.crash_report = _wait_for_parent(read_end)
            limits.set_process_name("cave-worker")
            os.close(read_end)
            return True
        os.close(read_end)
        self._pipe = write_end
        # A crash (SIGSEGV, abort) of this worker writes its traceback to the
        # checkpoint, which reports it to the host when it takes over.
        faulthandler.enable(file=_FdFile(write_end), all_threads=False)
        if not select.select([self._sock], [], [], 0)[0]:
            self._warm()  # the host is idle: take a typical cell's copy-on-write faults now
        return False

    def commit(self) -> None:
        """The namespace as it is now is the new rollback point: the checkpoint may go."""
        if self._pipe is None:
            return
        pipe, self._pipe = self._pipe, None
        faulthandler.disable()
        try:
            os.write(pipe, b"C")
        finally:
            os.close(pipe)

    def roll_back(self) -> NoReturn:
        """The cell failed: exit, and the checkpoint takes over with the state from before."""
        faulthandler.disable()
        os._exit(0)


def _fork() -> int:
    # The only fork the audit hook lets through: it recognises this function's code.
    return os.fork()


def _fork_retrying(attempts: int = 8, first_wait_s: float = 0.005) -> int:
    """`_fork`, retried with a doubling wait (about 1.3 s in all) while the kernel says EAGAIN."""
    wait = first_wait_s
    for _ in range(attempts - 1):
        try:
            return _fork()
        except BlockingIOError:  # EAGAIN: at the task limit; exited tasks are being reaped
            time.sleep(wait)
            wait *= 2
    return _fork()


FORK_FUNCTIONS = (_fork,)


class _FdFile:
    """The minimal file object faulthandler needs: a fileno()."""

    def __init__(self, fd: int):
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


def _wait_for_parent(fd: int) -> str:
    chunks = []
    kept = 0
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break  # end of file: the worker is gone (or committed, below)
        if kept < 65536:  # a crash report is short; the rest of a flood is dropped
            chunks.append(chunk)
            kept += len(chunk)
    data = b"".join(chunks)
    if data == b"C":
        os._exit(0)  # the cell committed; this checkpoint is not needed
    return data.decode("utf-8", "replace")
