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
import shutil
import signal
import socket
import sys
import tempfile
from typing import NoReturn

from . import figures, messages, protocol, wire
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
    if figures.wants_matplotlib(preload):
        figures.prepare_zygote(tempfile.gettempdir())  # before matplotlib is imported
    for name in preload:
        __import__(name)
    _warm_up(preload)
    # Preloaded objects are permanent: keep the cyclic GC from touching (and so
    # copying, after fork) their pages in every worker.
    gc.collect()
    gc.freeze()
    _send(control, ZygoteReady(tempfile.gettempdir()))
    spare, spare_pid = _fork_spare(control)
    sessions: set[int] = set()  # the session ids (spare pids) handed to the host
    while True:
        try:
            frame = protocol.recv(control, _LIMITS)
            request = wire.decode_request(frame.body, accept=(ForkWorker,))
        except Exception:  # the host is gone (or confused): its sessions go with it
            _exit_reaping(spare, sessions)
        if len(frame.fds) != 1:
            for fd in frame.fds:
                os.close(fd)
            continue
        fd = frame.fds[0]
        if pickle.loads(request.config).policy.readable_dirs:
            # The spare is already confined to the library directories: a policy
            # that opts more in gets a worker forked for it.
            fresh, pid = _fork_spare(control, landlock=False, inherited=(spare,),
                                     read_dirs=pickle.loads(request.config).policy.readable_dirs)
            _hand_over(fresh, frame.body, fd)
            sessions.add(pid)
            _send(control, Forked(pid))
            continue
        # Hand the request to the spare forked earlier, so the fork is not on the
        # path of a new session; then fork the next spare.
        try:
            _hand_over(spare, frame.body, fd)
        except OSError:  # that spare died: fork another one for this session
            spare, spare_pid = _fork_spare(control)
            _hand_over(spare, frame.body, fd)
        sessions.add(spare_pid)
        _send(control, Forked(spare_pid))
        spare, spare_pid = _fork_spare(control)
        limits.sweep()  # cgroup leaves of sessions that ended (off the session's path)


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


def _exit_reaping(spare: socket.socket, sessions: set[int]) -> NoReturn:
    """The host is gone: stop its sessions, and stay until every descendant has exited.

    A worker busy in a cell would never notice the host's end of its socket
    closing: every process of the host's sessions (found by session id, which
    they cannot leave for another) is killed. As the subreaper, the zygote
    adopts orphaned checkpoints; staying until they are gone means none of
    them ends as a zombie under an init that does not reap.
    """
    spare.close()
    figures.remove_zygote_dir()
    for _ in range(10):  # a checkpoint may take over while the first pass runs
        if not _kill_sessions(sessions):
            break
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            from ..security import limits

            limits.close()  # every worker is gone: remove the zygote's cgroup directories
            _remove_workdirs()
            os._exit(0)
        except InterruptedError:
            continue


def _kill_sessions(sessions: set[int]) -> int:
    """SIGKILL every process whose session id is one of ``sessions``; returns how many."""
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            fields = stat[stat.rfind(")") + 2:].split()
            if fields[0] != "Z" and int(fields[3]) in sessions:
                os.kill(int(entry), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError, IndexError):
            continue
    return killed


def _fork_spare(control: socket.socket, *, landlock: bool = True,
                inherited: tuple[socket.socket, ...] = (),
                read_dirs: tuple[str, ...] = ()) -> tuple[socket.socket, int]:
    """Fork an idle worker that waits for its session; returns the zygote's end and its pid.

    ``landlock=False`` makes one for a policy with extra readable directories
    (Landlock cannot be widened once applied, so such a worker is forked for it).
    """
    from ..security import limits

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = limits.fork_spare()  # os.fork(), the child born in a cgroup leaf of its own
    if pid == 0:
        control.close()
        ours.close()
        for sock in inherited:
            sock.close()  # another spare's line: it must see EOF when the zygote goes
        from . import spare

        spare.run(theirs, landlock=landlock, read_dirs=read_dirs)
    theirs.close()
    _FORKED.add(pid)
    return ours, pid


_FORKED: set[int] = set()  # every spare this zygote forked (each made cavelite-<pid>)


def _remove_workdirs() -> None:
    """Every spare's private directory goes when the zygote does (workers and spares are
    gone by then; a spare never handed out and a host that died would leave theirs)."""
    for pid in _FORKED:
        try:
            os.kill(pid, 0)
            continue  # that pid belongs to a live process again: not ours to touch
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(os.path.join(tempfile.gettempdir(), f"cavelite-{pid}"), ignore_errors=True)


def _warm_up(preload: list[str]) -> None:
    """Import the runtime and run one cell's worth of code paths once, before any fork."""
    import asyncio  # noqa: F401  (top-level await)

    import dill  # noqa: F401

    from ..security import audit, limits
    from ..security.policy import Policy
    from . import cell, spare, worker  # noqa: F401

    cell.compile_cell("x = [i for i in range(3)]\nx", Policy.default(), "<warmup>")
    audit.library_roots()  # cached for every worker
    # Likewise: the seccomp programs, the cgroup directories, the readability check.
    limits.warm_up(audit.session_independent_roots())
    tempfile.gettempdir()
    if figures.wants_matplotlib(preload):
        figures.warm_zygote(audit.library_roots())
    if "pandas" in preload:
        import pandas as pd

        frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
        repr(frame)
        frame.groupby("b").sum()
