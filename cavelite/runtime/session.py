"""`Session`: requests with deadlines over a `WorkerConnection`, and recovery when one fails.

Every request is sent, then messages are read until its reply, with remote
calls served meanwhile (their time counts against the request's deadline).
Whatever goes wrong on the way is handled the same way, like a cell timeout:

    deadline missed ─┐
    worker died ─────┼─▶ kill the serving process ─▶ checkpoint takes over? ─ yes ─▶ state kept
    hostile bytes ───┤                                         │
    interrupted ─────┘                                         no ─▶ fresh worker ─▶ state lost,
                                                                     injected remotes/types re-bound

and the caller gets `Failed`, saying why and whether the variables were lost.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import CaveRuntimeError, ProtocolError, WorkerDiedError
from . import messages
from .config import WorkerConfig
from .connection import Deadline, Gone, Incoming, Resources, WorkerConnection
from .messages import Call, CallResult, Ready
from .zygote import Zygote

_TAKEOVER_WAIT_S = 10.0
_START_WAIT_S = 60.0
_INTERRUPT_GRACE_S = 1.0

Why = Literal["timeout", "crash", "protocol", "superseded"]


@dataclass(frozen=True)
class Recovery:
    lost: bool  # a fresh worker had to start: the namespace is empty
    crash: str = ""  # what the failed process wrote (faulthandler), if anything


class Failed(Exception):
    """A request got no reply; the session has recovered (see `Recovery`)."""

    def __init__(self, why: Why, recovery: Recovery, detail: str = ""):
        super().__init__(why, detail)
        self.why = why
        self.recovery = recovery
        self.detail = detail


class _Superseded(Exception):
    """A nested request failed during a remote call: the process serving this one is gone."""


CallServer = Callable[[Call, list[Any]], tuple[CallResult, list[Any]]]


class Session:
    """One session's worker, replaced as needed; see the module docstring."""

    def __init__(self, preload: tuple[str, ...], config: WorkerConfig,
                 serve_call: CallServer, rebind: Callable[[], None]):
        self.preload = preload
        self.config = config
        self.resources = Resources()
        self.releases: list[int] = []  # references the worker let go of, not yet applied
        # Weak: the runtime owns the session, and its finalizer must be able to run.
        self._serve_call = weakref.WeakMethod(serve_call)
        self._rebind = weakref.WeakMethod(rebind)
        self._rebinding = False
        self.interrupted = False  # set by interrupt(): the next failure is the caller's doing
        self.busy = False  # a request is in flight
        self._connect()

    @property
    def conn(self) -> WorkerConnection:
        conn = self.resources.connection
        if conn is None:
            raise CaveRuntimeError("the runtime has no worker")
        return conn

    def _connect(self) -> None:
        conn = WorkerConnection(Zygote.shared(self.preload), self.config)
        self.resources.connection = conn
        try:
            ready = conn.receive(time.monotonic() + _START_WAIT_S)
        except (Gone, Deadline, ProtocolError) as exc:
            self.resources.close()
            raise CaveRuntimeError(f"the worker did not start ({type(exc).__name__})") from None
        if not isinstance(ready.message, Ready) or ready.sender != conn.pid:
            self.resources.close()
            raise ProtocolError("the worker did not start with a ready message")
        conn.confinement = ready.message.confinement

    # --- requests ----------------------------------------------------------------------------

    def request(self, message: messages.HostRequest, *, timeout: float | None,
                buffers: list[Any] = (), interruptible: bool = False) -> Incoming:  # type: ignore[assignment]
        """Send ``message`` and return its reply; on any failure recover and raise `Failed`.

        ``interruptible`` (a cell, without checkpoints): at the deadline, try SIGINT
        first; a reply within a short grace keeps the namespace.
        """
        conn = self.conn
        deadline = None if timeout is None else time.monotonic() + timeout
        outer, self.busy = self.busy, True
        try:
            conn.send(message, buffers)
            while True:
                try:
                    incoming = conn.receive(deadline)
                    if isinstance(incoming.message, Call) and deadline is not None \
                            and time.monotonic() >= deadline:
                        raise Deadline()  # remote calls count: none is served after the deadline
                except Deadline:
                    if not interruptible:
                        raise
                    conn.interrupt()  # a KeyboardInterrupt in the cell, even mid-call
                    deadline = time.monotonic() + _INTERRUPT_GRACE_S
                    interruptible = False
                    continue
                self.releases += incoming.released
                reply = incoming.message
                if isinstance(reply, Call):
                    self._answer(conn, reply, incoming.buffers)
                    continue
                if isinstance(reply, Ready):  # the serving process died; its checkpoint is here
                    conn.adopt_takeover(incoming.sender, reply)
                    raise Failed("crash", Recovery(False, reply.crash))
                return incoming
        except Failed:
            raise
        except Deadline:
            raise Failed("timeout", self.recover(kill=True)) from None
        except Gone as exc:
            raise Failed("crash", self.recover(kill=False), str(exc)) from None
        except ProtocolError as exc:
            raise Failed("protocol", self.recover(kill=True), str(exc)) from None
        except _Superseded:
            raise Failed("superseded", Recovery(False)) from None
        except BaseException:
            # Interrupted (Ctrl-C, task cancellation, an error escaping a remote tool): the
            # reply will never be read, so the process serving it goes.
            self.recover(kill=True)
            raise
        finally:
            self.busy = outer

    def _answer(self, conn: WorkerConnection, call: Call, buffers: list[Any]) -> None:
        generation = conn.generation
        serve = self._serve_call()
        if serve is None:
            raise CaveRuntimeError("the runtime is gone")
        result, out = serve(call, buffers)
        if self.resources.connection is not conn or conn.generation != generation:
            raise _Superseded()  # a nested request of the tool failed and the session recovered
        conn.send(result, out)

    def interrupt(self) -> bool:
        """Stop the request in flight, from any thread: its serving process is killed.

        The waiting request then recovers as after a crash (the checkpoint takes over).
        Only the pidfd is touched, never the socket: that belongs to the waiting thread.
        """
        conn = self.resources.connection
        if not self.busy or conn is None:
            return False
        self.interrupted = True
        conn.kill()
        return True

    # --- recovery ----------------------------------------------------------------------------

    def recover(self, *, kill: bool) -> Recovery:
        """The serving process failed (or must go): its checkpoint takes over, else a fresh one."""
        conn = self.conn
        if kill:
            conn.kill()
        if self.config.atomic:
            try:
                return Recovery(False, self._await_takeover(conn))
            except (Gone, Deadline, ProtocolError, OSError):
                pass
        self.restart()
        return Recovery(True)

    def after_rollback(self) -> Recovery:
        """A cell reported its own failure: the worker exits and the checkpoint takes over."""
        try:
            return Recovery(False, self._await_takeover(self.conn))
        except (Gone, Deadline, ProtocolError, OSError):
            self.conn.kill()
            self.restart()
            return Recovery(True)

    def _await_takeover(self, conn: WorkerConnection) -> str:
        """Wait for the checkpoint's ``Ready``; returns the crash report it carries."""
        deadline = time.monotonic() + _TAKEOVER_WAIT_S
        while True:
            # The failed worker's last words (a reply, or half of one) are dropped by sender.
            conn.drain_from(conn.pid, deadline)
            incoming = conn.receive(deadline, serving=False)
            if not isinstance(incoming.message, Ready):
                raise ProtocolError("the checkpoint spoke before taking over")
            try:
                conn.adopt_takeover(incoming.sender, incoming.message)
            except Gone:
                continue  # it died right after taking over; its own checkpoint may follow
            self.releases.clear()  # the checkpoint still holds what the failed cell let go
            return incoming.message.crash

    def restart(self) -> None:
        """Replace the worker with a fresh one and re-bind what the host injected."""
        if self._rebinding:
            raise WorkerDiedError("the worker died again while the injected objects were being "
                                  "re-bound", variables_lost=True)
        self.resources.close()
        self.releases.clear()
        self._connect()
        rebind = self._rebind()
        if rebind is not None:
            self._rebinding = True
            try:
                rebind()
            finally:
                self._rebinding = False

    def close(self) -> None:
        """Ask the worker to exit, then release everything (safe to call twice)."""
        conn = self.resources.connection
        if conn is None:
            return
        if conn.owner != os.getpid():
            self.resources.connection = None  # a forked copy of the host: leave the worker be
            return
        try:
            conn.send(messages.Shutdown())
            conn.exited(2.0)
        except Gone:
            pass
        self.resources.close()
