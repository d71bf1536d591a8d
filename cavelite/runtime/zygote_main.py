"""The zygote process: preload modules once, then hand sessions to pre-forked spares.

Started by `zygote.Zygote` as ``python -I`` with an almost empty environment.
It keeps one *spare* worker forked in advance (see `spare`), so a new
session is a hand-over of a socket, not a fork. It is the child subreaper
of everything below it and, when the host goes, stays until every
descendant has exited.
"""

from __future__ import annotations

import gc
import os
import pickle
import select
import signal
import socket
import sys
import tempfile
from typing import NoReturn

from . import messages, protocol, wire
from .messages import Forked, ForkWorker, ZygoteReady

PR_SET_CHILD_SUBREAPER = 36
_LIMITS = protocol.FrameLimits(max_body=1 << 24, max_passed_fds=1)


def main() -> NoReturn:
    """Zygote process entry point (see the module docstring)."""
    control = socket.socket(fileno=int(sys.argv[2]))
    preload = [m for m in sys.argv[3].split(",") if m]
    # Orphaned checkpoints (their worker died) are re-parented here and, with
    # SIGCHLD ignored, reaped by the kernel: no zombies anywhere.
    from ..security import limits

    limits.become_subreaper()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the host's terminal is the host's
    for name in preload:
        __import__(name)
    _warm_up(preload)
    # Preloaded objects are permanent: keep the cyclic GC from touching (and so
    # copying, after fork) their pages in every worker.
    gc.collect()
    gc.freeze()
    _send(control, ZygoteReady(tempfile.gettempdir()))
    spare, spare_pid = _fork_spare(control)
    workers: list[int] = []  # pidfds of the workers handed out (a pid may be reused; these not)
    while True:
        try:
            frame = protocol.recv(control, _LIMITS)
            request = wire.decode_request(frame.body, accept=(ForkWorker,))
        except Exception:  # the host is gone (or confused): stop serving
            _exit_reaping(spare, workers)
        workers = _still_running(workers)
        if len(frame.fds) != 1:
            for fd in frame.fds:
                os.close(fd)
            continue
        fd = frame.fds[0]
        if pickle.loads(request.config).policy.readable_dirs:
            # The spare is already confined to the library directories: a policy
            # that opts more in gets a worker forked for it.
            fresh, pid = _fork_spare(control, landlock=False, inherited=(spare,))
            _hand_over(fresh, frame.body, fd)
            workers.append(os.pidfd_open(pid))
            _send(control, Forked(pid))
            continue
        # Hand the request to the spare forked earlier, so the fork is not on the
        # path of a new session; then fork the next spare.
        try:
            _hand_over(spare, frame.body, fd)
        except OSError:  # that spare died: fork another one for this session
            spare, spare_pid = _fork_spare(control)
            _hand_over(spare, frame.body, fd)
        workers.append(os.pidfd_open(spare_pid))
        _send(control, Forked(spare_pid))
        spare, spare_pid = _fork_spare(control)


def _send(sock: socket.socket, message: messages.Message) -> None:
    body, _ = wire.encode(message)
    protocol.send(sock, body)


def _hand_over(spare: socket.socket, body: bytes, fd: int) -> None:
    """Pass the session (its request and socket) to a spare; the zygote keeps neither."""
    try:
        protocol.send(spare, body, fds=[fd])
    finally:
        spare.close()
    os.close(fd)


def _still_running(workers: list[int]) -> list[int]:
    """Close the pidfds of workers that have exited (a pidfd is readable once its process ends)."""
    if not workers:
        return workers
    ended = set(select.select(workers, [], [], 0)[0])
    for fd in ended:
        os.close(fd)
    return [fd for fd in workers if fd not in ended]


def _exit_reaping(spare: socket.socket, workers: list[int]) -> NoReturn:
    """The host is gone: stop its workers, let the spare go, stay until every descendant exited.

    A worker whose host died (killed, or its machine's Ray node removed) has
    nobody to enforce its cell's deadline: a cell that spins would spin forever,
    so it is killed; its checkpoint then finds the socket closed and exits. As
    the subreaper, the zygote adopts orphaned checkpoints; staying until they
    are gone means none of them ends as a zombie under an init that does not reap.
    """
    for fd in workers:
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
    spare.close()
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue


def _fork_spare(control: socket.socket, *, landlock: bool = True,
                inherited: tuple[socket.socket, ...] = ()) -> tuple[socket.socket, int]:
    """Fork an idle worker that waits for its session; returns the zygote's end and its pid.

    ``landlock=False`` makes one for a policy with extra readable directories
    (Landlock cannot be widened once applied, so such a worker is forked for it).
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        control.close()
        ours.close()
        for sock in inherited:
            sock.close()  # another spare's line: it must see EOF when the zygote goes
        from . import spare

        spare.run(theirs, landlock=landlock)
    theirs.close()
    return ours, pid


def _warm_up(preload: list[str]) -> None:
    """Import the runtime and run one cell's worth of code paths once, before any fork."""
    import asyncio  # noqa: F401  (top-level await)

    import dill  # noqa: F401

    from ..security import audit, limits
    from ..security.policy import Policy
    from . import cell, spare, worker  # noqa: F401

    cell.compile_cell("x = [i for i in range(3)]\nx", Policy.default(), "<warmup>")
    audit.library_roots()  # cached for every worker
    limits.seccomp_program()  # likewise: workers only install it
    tempfile.gettempdir()
    if "pandas" in preload:
        import pandas as pd

        frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
        repr(frame)
        frame.groupby("b").sum()
