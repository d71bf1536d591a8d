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
import weakref
from typing import Any

from ..errors import CaveRuntimeError
from .protocol import _recv_exact

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
            self.sock.close()
            self.process.kill()
            self.process.wait()
            raise CaveRuntimeError(
                f"the zygote failed to start (preload={list(preload)}); "
                "check that the preloaded modules import in a clean interpreter"
            )
        _register_exit_hook()

    def alive(self) -> bool:
        return self.owner_pid == os.getpid() and self.process.poll() is None

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
                self.process.kill()
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
    # Preloaded objects are permanent: keep the cyclic GC from touching (and so
    # copying, after fork) their pages in every worker.
    import gc

    gc.collect()
    gc.freeze()
    control.sendall(b"R")
    spare = _fork_spare(control)
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(control, 8, 4)
            if not msg:
                raise EOFError
            size = int.from_bytes(msg + _recv_exact(control, 8 - len(msg)), "little")
            payload = _recv_exact(control, size)
        except (EOFError, OSError):
            _exit_reaping(spare)
        if pickle.loads(payload)["policy"].readable_dirs:
            # The spare is already confined to the library directories: a policy
            # that opts more in gets a worker forked for it.
            fresh = _fork_spare(control, landlock=False, inherited=(spare,),
                                read_dirs=tuple(pickle.loads(payload)["policy"].readable_dirs))
            socket.send_fds(fresh, [len(payload).to_bytes(8, "little") + payload], fds)
            fresh.close()
            for fd in fds:
                os.close(fd)
            control.sendall(b"F")
            continue
        # Hand the request to the spare worker forked earlier, so the fork is
        # not on the path of a new session; then fork the next spare.
        try:
            socket.send_fds(spare, [len(payload).to_bytes(8, "little") + payload], fds)
        except OSError:
            spare.close()
            spare = _fork_spare(control)
            socket.send_fds(spare, [len(payload).to_bytes(8, "little") + payload], fds)
        spare.close()
        for fd in fds:
            os.close(fd)
        control.sendall(b"F")
        spare = _fork_spare(control)
        _limits().sweep()  # cgroup leaves of sessions that ended (off the session's path)


def _exit_reaping(spare: socket.socket) -> None:
    """The host is gone: let the spare go, and stay until every descendant has exited.

    As the subreaper, the zygote adopts orphaned checkpoints; staying until they
    are gone means none of them ends as a zombie under an init that does not reap.
    """
    spare.close()
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            _limits().close()  # every worker is gone: remove the zygote's cgroup directories
            os._exit(0)
        except InterruptedError:
            continue


def _fork_spare(control: socket.socket, *, landlock: bool = True,
                inherited: tuple[socket.socket, ...] = (),
                read_dirs: tuple[str, ...] = ()) -> socket.socket:
    """Fork an idle worker that waits for its socket and config; returns the zygote's end.

    ``landlock=False`` makes one for a policy with extra readable directories
    (Landlock cannot be widened once applied, so such a worker is forked for it).
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = _limits().fork_spare()  # os.fork(), the child born in a cgroup leaf of its own
    if pid == 0:
        control.close()
        ours.close()
        for sock in inherited:
            sock.close()  # another spare's line: it must see EOF when the zygote goes
        from . import worker

        worker.prepare(landlock=landlock, read_dirs=read_dirs)
        try:
            msg, fds, _flags, _addr = socket.recv_fds(theirs, 8, 4)
            if not msg or not fds:
                os._exit(0)
            size = int.from_bytes(msg + _recv_exact(theirs, 8 - len(msg)), "little")
            config = pickle.loads(_recv_exact(theirs, size))
        except (EOFError, OSError):
            os._exit(0)
        theirs.close()
        worker.start(socket.socket(fileno=fds[0]), config)
        os._exit(0)
    theirs.close()
    return ours


def _limits() -> Any:
    """The kernel layer, imported in the zygote only (the host never loads it)."""
    from ..security import limits

    return limits


def _warm_up(preload: list[str]) -> None:
    """Import the runtime and run one cell's worth of code paths once, before any fork."""
    import asyncio  # noqa: F401  (top-level await)

    import dill  # noqa: F401

    from ..security import audit
    from ..security.policy import Policy
    from . import cell, worker  # noqa: F401

    cell.compile_cell("x = [i for i in range(3)]\nx", Policy.default(), "<warmup>")
    audit.library_roots()  # cached for every worker
    audit.path_roots()
    # Likewise: the seccomp programs, the cgroup directories, the readability check.
    _limits().warm_up(audit.session_independent_roots())
    import tempfile

    tempfile.gettempdir()
    # The event loop for top-level await needs a socketpair, which the worker's
    # audit hook refuses; workers inherit this one (each process runs its own loop).
    cell.prepare_event_loop()
    if "pandas" in preload:
        import pandas as pd

        frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
        repr(frame)
        frame.groupby("b").sum()
