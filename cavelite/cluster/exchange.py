"""One request's conversation between a host actor and the client that made it.

A Ray actor cannot call into a client, so a remote call a cell makes travels
back as the *reply* to the client's Ray call: the operation runs in a
thread of its own, and the actor's method returns whatever comes first,
the operation's end or a `CallRequest` for the client. The client answers
with its next Ray call (``resume``), which hands the answer to the waiting
stand-in and again returns whatever comes next.
"""

from __future__ import annotations

import contextvars
import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .remotes import CallAnswer, CallRequest

# What a host method returns to the client:
#   ("done", value)           the operation's result
#   ("error", exception)      it raised (a CaveliteError, re-raised in the client)
#   ("call", id, request)     a remote call for the client to run, then `resume`
#   ("moved", None)           the session is not here (any more): look it up again
Item = tuple[str, Any] | tuple[str, int, CallRequest]

_POOL = ThreadPoolExecutor(max_workers=256, thread_name_prefix="cavelite-op")
_CURRENT: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar("cavelite_exchange",
                                                                          default=None)


def ask(request: CallRequest) -> CallAnswer:
    """A stand-in's call: carried by the operation running in this context."""
    exchange = _CURRENT.get()
    if exchange is None:
        return CallAnswer(False, None, "RuntimeError", "no client request is running to carry "
                          "this call to the process that injected the object")
    return exchange.ask(request)


class Exchange:
    """The outbox of one running operation, and the answers its stand-ins wait for."""

    def __init__(self, answer_timeout: float | None):
        self.outbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._answers: dict[int, queue.SimpleQueue[CallAnswer]] = {}
        self._ids = itertools.count(1)
        self._answer_timeout = answer_timeout
        self._lock = threading.Lock()
        self._contexts: dict[int, contextvars.Context] = {}

    def start(self, operation: Callable[[], Any],
              context: contextvars.Context | None = None) -> Item:
        """Run ``operation`` in a pool thread; returns its first item (the end, or a call).

        ``context``: that of a remote call this operation is nested in (a tool using
        the session whose cell called it), so the runtime knows it is already inside
        one of its own requests and does not wait for its own lock.
        """
        ctx = (context or contextvars.Context()).copy()

        def run() -> None:
            _CURRENT.set(self)
            try:
                self.outbox.put(("done", operation()))
            except Exception as exc:
                self.outbox.put(("error", exc))
        _POOL.submit(ctx.run, run)
        return self.outbox.get()

    def context_of(self, call_id: int) -> contextvars.Context | None:
        """The context of the stand-in waiting for ``call_id`` (None: not waiting)."""
        with self._lock:
            return self._contexts.get(call_id)

    def ask(self, request: CallRequest) -> CallAnswer:
        """Called by a stand-in in the operation's thread: send a call, wait for its answer."""
        box: queue.SimpleQueue[CallAnswer] = queue.SimpleQueue()
        with self._lock:
            call_id = next(self._ids)
            self._answers[call_id] = box
            self._contexts[call_id] = contextvars.copy_context()
        self.outbox.put(("call", call_id, request))
        try:
            return box.get(timeout=self._answer_timeout)
        except queue.Empty:
            return CallAnswer(False, None, "TimeoutError",
                              "the process that injected this object did not answer (it may have "
                              "gone away)")
        finally:
            with self._lock:
                self._answers.pop(call_id, None)
                self._contexts.pop(call_id, None)

    def resume(self, call_id: int, answer: CallAnswer) -> Item:
        """The client's answer to call ``call_id``; returns the operation's next item."""
        with self._lock:
            box = self._answers.get(call_id)
        if box is not None:
            box.put(answer)
        return self.outbox.get()
