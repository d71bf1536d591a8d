"""The host's handle to a zygote: a clean interpreter that preloads modules and forks workers.

`Zygote` starts one per host process and preload set, as a fresh ``python``
(never a fork of the host: it must hold none of the host's memory, threads
or secrets), with an almost empty environment; its own side is
`zygote_main`. A new session is one request: the host passes the worker's
socket and configuration, the zygote answers with the worker's pid. That
pid, the zygote's pid and its temporary directory are what the host knows
of its workers: it never takes a pid or a path from a worker's message.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import threading
import weakref
from typing import Any

from ..errors import CaveRuntimeError, ProtocolError
from . import protocol, wire
from .config import WorkerConfig
from .messages import Forked, ForkWorker, ZygoteReady

# Non-secret variables that change how native libraries behave (an old
# OpenBLAS can crash without its core type): everything else is dropped.
_PASS_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "LC_", "LANG", "TZ", "TMPDIR",
                      "CAVELITE_CGROUP")  # a delegated cgroup v2 parent (security/cgroups.py)
_START_TIMEOUT_S = 120.0  # preloading numpy and pandas on a loaded machine
_FORK_TIMEOUT_S = 30.0
_LIMITS = protocol.FrameLimits(max_body=1 << 16)


class Zygote:
    """Host handle to one zygote process."""

    _lock = threading.Lock()
    _instances: dict[tuple[str, ...], Zygote] = {}

    @classmethod
    def shared(cls, preload: tuple[str, ...]) -> Zygote:
        """The zygote for this preload set, started on first use (and again if it died)."""
        key = tuple(sorted(set(preload)))
        with cls._lock:
            zygote = cls._instances.get(key)
            if zygote is not None and zygote.owner_pid != os.getpid():
                zygote = None  # inherited through a fork of the host: never share it
            elif zygote is not None and not zygote.alive():
                zygote.close()
                zygote = None
            if zygote is None:
                zygote = cls._instances[key] = cls(key)
            return zygote

    def __init__(self, preload: tuple[str, ...]):
        self.preload = preload
        self.owner_pid = os.getpid()
        host_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {k: v for k, v in os.environ.items() if k.startswith(_PASS_ENV_PREFIXES)}
        # BLAS thread pools are shut down by their atfork handlers on every fork
        # (the checkpoint of every atomic cell), and re-created on the next matrix
        # product for ~20 ms. One thread avoids that; set the variables to override.
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, "1")
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        bootstrap = (
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from cavelite.runtime.zygote_main import main; main()"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", bootstrap, package_parent, str(zygote_end.fileno()),
             ",".join(preload)],
            pass_fds=(zygote_end.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=None if os.environ.get("CAVELITE_DEBUG") else subprocess.DEVNULL,
            cwd="/",
            close_fds=True,
            # Its own session: a signal to the host's process group (a terminal's, or Ray
            # killing an actor's) does not reach it, so it sees the host go and stops its
            # sessions (zygote_main._exit_reaping) instead of leaving them to spin unwatched.
            start_new_session=True,
        )
        zygote_end.close()
        self.sock = host_end
        self.pid = self.process.pid
        self._request_lock = threading.Lock()
        try:
            ready = self._receive(ZygoteReady, _START_TIMEOUT_S)
        except (CaveRuntimeError, OSError):
            self.sock.close()
            self.process.kill()
            self.process.wait()
            raise CaveRuntimeError(
                f"the zygote failed to start (preload={list(preload)}); "
                "check that the preloaded modules import in a clean interpreter"
            ) from None
        self.tmpdir: str = ready.tmpdir
        _register_exit_hook()

    def alive(self) -> bool:
        return self.owner_pid == os.getpid() and self.process.poll() is None

    def workdir(self, pid: int) -> str:
        """The private directory of the worker ``pid`` (named by the spare that became it)."""
        return os.path.join(self.tmpdir, f"cavelite-{pid}")

    def fork_worker(self, config: WorkerConfig) -> tuple[socket.socket, int]:
        """Start a worker for ``config``; returns the host's end of its socket and its pid."""
        host_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Before the worker can send anything: every frame then carries its sender's pid.
        protocol.enable_credentials(host_end)
        body, _ = wire.encode(ForkWorker(pickle.dumps(config, protocol=5)))
        try:
            with self._request_lock:
                protocol.send(self.sock, body, fds=[worker_end.fileno()])
                forked = self._receive(Forked, _FORK_TIMEOUT_S)
        except (OSError, CaveRuntimeError) as exc:
            host_end.close()
            raise CaveRuntimeError(f"the zygote did not start a worker: {exc}") from exc
        finally:
            worker_end.close()  # the worker has its own copy now
        return host_end, forked.pid

    def _receive(self, kind: type[Any], timeout: float) -> Any:
        if not select.select([self.sock], [], [], timeout)[0]:
            raise CaveRuntimeError("the zygote did not answer in time")
        try:
            frame = protocol.recv(self.sock, _LIMITS)
        except protocol.PeerClosed:
            raise CaveRuntimeError("the zygote is gone") from None
        message, _ = wire.decode(frame.body, accept=(kind,))
        if isinstance(message, Forked) and message.pid <= 0:
            raise ProtocolError("the zygote named no worker")
        return message

    def close(self) -> None:
        if self.owner_pid != os.getpid():
            return  # a forked copy of the host: the zygote is the parent's business
        try:
            self.sock.close()  # EOF tells the zygote to exit once its workers are gone
        except OSError:
            pass
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait()


_SESSIONS: weakref.WeakSet[Any] = weakref.WeakSet()
_HOOKED = False


def track_session(runtime: Any) -> None:
    """Remember a live runtime so that interpreter exit closes it before its zygote."""
    _SESSIONS.add(runtime)


def _register_exit_hook() -> None:
    global _HOOKED
    if not _HOOKED:
        _HOOKED = True
        atexit.register(_shutdown)


def _shutdown() -> None:
    # Sessions first (their workers exit and are reaped by the live zygote), then zygotes.
    for runtime in list(_SESSIONS):
        try:
            runtime.close()
        except Exception:
            pass
    for zygote in list(Zygote._instances.values()):
        zygote.close()
