"""A spare's life: forked by the zygote before any session exists, then handed one.

`run` first does what does not depend on the session (`prepare`): its own
process group, an empty environment, a private directory, its own event
loop, the page faults of the common paths, and the kernel layer (it was born
in a cgroup leaf of its own; it gives up its privileges, then no_new_privs,
seccomp and, for the library directories, Landlock). Then it waits for the zygote to pass it a
session (the configuration and the host's socket) and becomes the worker
(`start`): resource limits, the audit hook, and the serve loop.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import sys
from typing import NoReturn

from ..security import audit, limits
from ..security.guards import Guard
from ..security.policy import Policy
from . import cell, checkpoint, codec, figures, protocol, rebuild, restore, snapshot_format, wire
from .config import WorkerConfig
from .messages import ForkWorker, Ready

_LIMITS = protocol.FrameLimits(max_body=1 << 24, max_passed_fds=1)


def run(zygote_line: socket.socket, *, landlock: bool, read_dirs: tuple[str, ...] = ()) -> NoReturn:
    """Entry point of a freshly forked spare (never returns)."""
    try:
        prepare(landlock=landlock, read_dirs=read_dirs)
        frame = protocol.recv(zygote_line, _LIMITS)
        request = wire.decode_request(frame.body, accept=(ForkWorker,))
        if len(frame.fds) != 1:
            os._exit(0)
        # The configuration comes from the zygote, which got it from the host; no cell
        # has run in this process yet.
        config = pickle.loads(request.config)
        zygote_line.close()
        start(socket.socket(fileno=frame.fds[0]), config)
    except protocol.PeerClosed:
        pass  # the zygote went away before this spare had a session
    except BaseException:
        # Nobody reads a spare's stderr unless the host ran with CAVELITE_DEBUG set.
        import traceback

        traceback.print_exc()
    os._exit(0)


def prepare(*, landlock: bool = True, read_dirs: tuple[str, ...] = ()) -> None:
    """Config-independent setup, done by the spare before it is handed a session.

    ``read_dirs``: a policy's opted-in directories, for a spare forked for it
    (the kernel layer checks that its uid can read them; Landlock comes later).
    """
    try:
        os.setsid()  # own session: a Ctrl-C in the host's terminal does not reach cells
    except OSError:
        pass
    # Children (the checkpoints) are reaped by the kernel: no zombies, no waits.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # file-size limit -> EFBIG, not death
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    limits.set_process_name("cave-spare")
    os.chdir(limits.private_workdir())
    os.environ.clear()  # no host secrets, even in libraries that read the environment
    figures.refuse_unprepared()  # matplotlib works only if the zygote set it up
    cell.prepare_event_loop()  # this process's own (see there why not the zygote's)
    # A fresh fork pays a copy-on-write fault for every page it first writes;
    # take those for the common paths now, while the spare is idle, not when
    # a session is waiting for it.
    guard = Guard(Policy.default())
    guard.namespace_globals()
    cell.compile_cell("x = [i for i in range(2)]\nx", guard.policy, "<spare>")
    wire.encode(Ready("", ("rlimits",)), coerce=True)
    # Kernel layer (cgroup leaf, privileges, seccomp, Landlock): see security/limits.py.
    limits.confine_early([*audit.session_independent_roots(), *read_dirs], landlock_now=landlock)


def start(sock: socket.socket, config: WorkerConfig) -> NoReturn:
    """Become the worker for one session (after `prepare`; never returns)."""
    from .worker import Worker

    limits.set_process_name("cave-worker")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    worker = Worker(sock, config, ())
    limits.apply(memory_limit_mb=config.memory_limit_mb, max_file_bytes=config.max_file_bytes)
    audit.install(
        extra_read_roots=config.policy.readable_dirs,
        fork_functions=checkpoint.FORK_FUNCTIONS,
        native_functions=(limits.set_process_name,),
        loader_modules=(codec, restore, rebuild, snapshot_format),  # restore's code, as one
        host_socket=sock,
    )
    worker.confinement = ("rlimits", "audit-hook", *limits.CONFINEMENT)
    sys.setrecursionlimit(config.recursion_limit)
    worker.serve()
