"""`WorkerConnection`: the host's end of one session, and the only code that signals a worker.

It holds the socket, a pidfd of the process serving the session, the
session's private directory and the pid of the process that created it (a
forked copy of the host must leave the parent's worker alone). Everything
it knows comes from the zygote or the kernel: the worker's pid from the
zygote's answer, the private directory from the zygote's temporary
directory and that pid, and the pid of a checkpoint that takes over from
the kernel's credentials on its ``Ready`` frame, checked against the
process tree. No pid or path in a worker's message is ever used.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import time
import weakref
from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError
from . import messages, protocol, wire
from .config import WorkerConfig
from .zygote import Zygote

_LIVE: weakref.WeakSet[WorkerConnection] = weakref.WeakSet()


class Gone(Exception):
    """The serving process died (or the socket closed) before answering."""


class Deadline(Exception):
    """The deadline passed with no answer."""


@dataclass
class Incoming:
    message: Any
    released: tuple[int, ...]
    buffers: list[Any]
    sender: int  # the sending process, as the kernel reports it


def _session_of(pid: int) -> int:
    """The session id of a process (/proc/PID/stat): who it descends from, unforgeably.

    The spare that became the worker made itself a session leader (setsid), so
    the worker and every checkpoint forked from it share its pid as session id;
    a process can leave its session only for a new one of its own (and cells
    cannot call setsid), never join another.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return -1
    return int(stat[stat.rfind(")") + 2:].split()[3])


class WorkerConnection:
    def __init__(self, zygote: Zygote, config: WorkerConfig):
        self.sock, self.pid = zygote.fork_worker(config)  # credentials already enabled
        self.pidfd = os.pidfd_open(self.pid)
        self.session_id = self.pid
        self.tmpdir = zygote.tmpdir
        self.workdir = zygote.workdir(self.pid)
        self.owner = os.getpid()
        self.generation = 0  # bumped whenever another process takes over the session
        self.confinement: tuple[str, ...] = ()
        self._limits = config.limits
        self._frames = protocol.FrameLimits(max_body=min(config.transfer_limit, 1 << 31),
                                            max_buffer_bytes=config.transfer_limit)
        _LIVE.add(self)

    # --- talking -------------------------------------------------------------------------

    def send(self, message: messages.HostRequest, buffers: list[Any] = ()) -> None:  # type: ignore[assignment]
        body, extra = wire.encode(message)
        try:
            protocol.send(self.sock, body, [*extra, *buffers])
        except OSError as exc:
            raise Gone(f"the worker is gone ({exc})") from None

    def receive(self, deadline: float | None, *, serving: bool = True) -> Incoming:
        """The next message, by ``deadline`` (a `time.monotonic` value, None: no limit).

        ``serving``: the worker is serving a request, so its death ends the wait
        (`Gone`) and a message from any other process is a `ProtocolError`,
        except a `Ready` (a checkpoint taking over, for the caller to check).
        Otherwise (waiting for a takeover) only the socket is watched.
        """
        if serving:
            self._wait(deadline)
        elif not self.wait_readable(deadline if deadline is not None else float("inf")):
            raise Deadline()
        try:
            frame = protocol.recv(self.sock, self._frames)
        except protocol.PeerClosed:
            raise Gone("the worker closed the connection") from None
        if frame.fds:
            for fd in frame.fds:
                os.close(fd)
            raise ProtocolError("the worker passed descriptors the host did not ask for")
        message, released = wire.decode(frame.body, accept=messages.WORKER_KINDS,
                                            limits=self._limits)
        if serving and frame.sender != self.pid and not isinstance(message, messages.Ready):
            raise ProtocolError(f"a message came from process {frame.sender}, not the worker")
        return Incoming(message, released, frame.buffers, frame.sender)

    def _wait(self, deadline: float | None) -> None:
        while True:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            waitables: list[Any] = [self.sock, self.pidfd]
            ready = select.select(waitables, [], [], timeout)[0]
            if self.sock in ready:
                return
            if ready:  # the serving process died: read what it sent first, if anything
                if select.select([self.sock], [], [], 0)[0]:
                    return
                raise Gone("the worker process died")
            if deadline is not None and time.monotonic() >= deadline:
                raise Deadline()

    def wait_readable(self, deadline: float) -> bool:
        """Whether the socket becomes readable by ``deadline`` (ignoring the process)."""
        timeout = None if deadline == float("inf") else max(deadline - time.monotonic(), 0.0)
        return bool(select.select([self.sock], [], [], timeout)[0])

    # --- the serving process ---------------------------------------------------------------

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def interrupt(self) -> None:
        self._signal(signal.SIGINT)

    def _signal(self, sig: int) -> None:
        try:
            signal.pidfd_send_signal(self.pidfd, sig)
        except (ProcessLookupError, OSError):
            pass

    def adopt_takeover(self, pid: int, ready: messages.Ready) -> None:
        """`adopt` the process that sent ``ready``, then resynchronise the stream with it."""
        self.adopt(pid)
        self.confinement = ready.confinement
        if ready.nonce:
            try:
                protocol.send_sync(self.sock, ready.nonce)
            except OSError as exc:
                raise Gone(f"the worker is gone ({exc})") from None

    def drain_from(self, pid: int, deadline: float) -> None:
        """Drop what ``pid`` (a worker that failed) wrote and nobody read; stop at another sender."""
        while self.wait_readable(deadline):
            try:
                if protocol.next_sender(self.sock) != pid:
                    return
                protocol.discard_from(self.sock, pid)
            except protocol.PeerClosed:
                raise Gone("nothing holds the session's socket any more") from None
        raise Deadline()

    def adopt(self, pid: int) -> None:
        """A checkpoint took over: serve the session through ``pid``, after checking it.

        ``pid`` is the kernel's word for who sent the takeover (so it holds this
        session's socket); it must also descend from the session's first worker.
        """
        if pid <= 0 or pid == self.pid or any(c.pid == pid for c in _LIVE if c is not self):
            raise ProtocolError(f"process {pid} cannot take over this session")
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            raise Gone(f"process {pid} that took over the session is gone") from None
        if _session_of(pid) != self.session_id:
            os.close(pidfd)
            raise ProtocolError(f"process {pid} is not this session's checkpoint")
        self.kill()  # the process it replaces is gone, or must be: one server per session
        os.close(self.pidfd)
        self.pidfd, self.pid = pidfd, pid
        self.generation += 1

    def exited(self, timeout: float) -> bool:
        return bool(select.select([self.pidfd], [], [], timeout)[0])

    def close(self, *, grace_s: float = 1.0) -> None:
        """Close the socket, make sure the serving process is gone, remove its directory."""
        if self.owner != os.getpid():
            return  # a forked copy of the host must not stop the parent's worker
        _LIVE.discard(self)
        try:
            self.sock.close()
        except OSError:
            pass
        if self.pidfd >= 0:
            if not self.exited(grace_s):
                self.kill()
                self.exited(grace_s)
            os.close(self.pidfd)
            self.pidfd = -1
        # The directory is ours by name (zygote's tmpdir + the worker's pid), never a
        # path the worker gave; rmtree does not follow links out of it.
        if os.path.dirname(self.workdir) == self.tmpdir and os.path.isdir(self.workdir) \
                and not os.path.islink(self.workdir):
            shutil.rmtree(self.workdir, ignore_errors=True)


class Resources:
    """What a `Runtime`'s finalizer must release: it holds the connection, not the runtime."""

    def __init__(self) -> None:
        self.connection: WorkerConnection | None = None

    def close(self) -> None:
        conn, self.connection = self.connection, None
        if conn is not None:
            conn.close()
