"""The zygote: a clean interpreter that preloads modules and forks workers.

Host side, `Zygote` starts it once per host process and preload set, as a
fresh ``python`` (never a fork of the host: it must hold none of the host's
memory, threads or secrets), with an almost empty environment. Zygote side,
`main` preloads numpy/pandas and the runtime, then forks one worker per
request; the worker's socket arrives over the control socket (SCM_RIGHTS),
so the worker talks to the host directly, never through the zygote.
"""

from __future__ import annotations

import atexit
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from ..errors import CaveRuntimeError

# Non-secret variables that change how native libraries behave (an old
# OpenBLAS can crash without its core type): everything else is dropped.
_PASS_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "LC_", "LANG", "TZ")
PR_SET_CHILD_SUBREAPER = 36


class Zygote:
    """Host handle to one zygote process."""

    _lock = threading.Lock()
    _instances: dict[tuple[str, ...], Zygote] = {}

    @classmethod
    def shared(cls, preload: tuple[str, ...]) -> Zygote:
        """The zygote for this preload set, started on first use."""
        key = tuple(sorted(set(preload)))
        with cls._lock:
            zygote = cls._instances.get(key)
            if zygote is None or not zygote.alive():
                if zygote is not None:
                    zygote.close()
                zygote = cls._instances[key] = cls(key)
            return zygote

    def __init__(self, preload: tuple[str, ...]):
        self.preload = preload
        host_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {k: v for k, v in os.environ.items() if k.startswith(_PASS_ENV_PREFIXES)}
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        bootstrap = (
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from cavelite.runtime.zygote import main; main()"
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
        )
        zygote_end.close()
        self.sock = host_end
        self._request_lock = threading.Lock()
        try:
            ready = self.sock.recv(1)
        except OSError:
            ready = b""
        if ready != b"R":
            self.process.kill()
            self.process.wait()
            raise CaveRuntimeError(
                f"the zygote failed to start (preload={list(preload)}); "
                "check that the preloaded modules import in a clean interpreter"
            )
        atexit.register(self.close)

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork_worker(self, config: dict[str, Any]) -> socket.socket:
        """Fork a worker; returns the host's end of the worker's socket."""
        host_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        payload = pickle.dumps(config, protocol=5)
        try:
            with self._request_lock:
                socket.send_fds(self.sock, [len(payload).to_bytes(8, "little") + payload],
                                [worker_end.fileno()])
                ack = self.sock.recv(1)
        except OSError as exc:
            host_end.close()
            raise CaveRuntimeError(f"the zygote is unreachable: {exc}") from exc
        finally:
            worker_end.close()  # the worker has its own copy now
        if ack != b"F":
            host_end.close()
            raise CaveRuntimeError("the zygote did not fork a worker")
        return host_end

    def close(self) -> None:
        try:
            self.sock.close()  # EOF tells the zygote to exit
        except OSError:
            pass
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def main() -> None:
    """Zygote process entry point (see the module docstring)."""
    control = socket.socket(fileno=int(sys.argv[2]))
    preload = [m for m in sys.argv[3].split(",") if m]
    # Orphaned checkpoints (their worker died) are re-parented here and, with
    # SIGCHLD ignored, reaped by the kernel: no zombies anywhere.
    try:
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except OSError:
        pass
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the host's terminal is the host's
    for name in preload:
        __import__(name)
    _warm_up(preload)
    control.sendall(b"R")
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(control, 8, 4)
        except OSError:
            os._exit(0)
        if not msg:
            os._exit(0)
        try:
            size = int.from_bytes(msg + _recv_exact(control, 8 - len(msg)), "little")
            config = pickle.loads(_recv_exact(control, size))
        except (EOFError, OSError):
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            control.close()
            from . import worker

            worker.start(socket.socket(fileno=fds[0]), config)
            os._exit(0)
        for fd in fds:
            os.close(fd)
        control.sendall(b"F")


def _warm_up(preload: list[str]) -> None:
    """Import the runtime and run one cell's worth of code paths once, before any fork."""
    import asyncio  # noqa: F401  (top-level await)

    import dill  # noqa: F401

    from ..security.policy import Policy
    from . import cell, worker  # noqa: F401

    cell.compile_cell("x = [i for i in range(3)]\nx", Policy.default(), "<warmup>")
    if "pandas" in preload:
        import pandas as pd

        frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
        repr(frame)
        frame.groupby("b").sum()
