"""Test-only: a worker whose layer 2 has already fallen. Never part of the product.

Preloaded into a zygote (``Runtime(preload=(..., "tests.fakes.compromise"))``),
this module changes the worker it is forked into: a cell whose code starts
with ``#raw`` runs as plain Python, with the real builtins and no policy or
guards, in the worker process, with these names bound:

- ``worker``: the `Worker` object (its socket, namespace, checkpoints...);
- ``send(message, released=(), buffers=())``: send a typed message as the worker;
- ``send_frame(body, buffers=(), fds=())``: send raw frame bytes;
- ``messages``, ``protocol``, ``wire``, ``os``, ``sys``, ``pickle``, ``ast``.

The audit hook, seccomp, Landlock and the rlimits still apply, as they would
to code that escaped RestrictedPython. What such code can do to the *host*,
the zygote and other sessions is what `tests/security/test_compromised_worker.py`
checks. ``PRELOAD`` is the preload tuple to use.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import pickle
import sys

from cavelite.runtime import messages, protocol, wire
from cavelite.runtime import worker as _worker
from cavelite.runtime.messages import CellReply
from cavelite.runtime.results import CellError

MARK = "#raw\n"
PRELOAD = ("numpy", "pandas", "tests.fakes.compromise")
_ordinary_exec = _worker.Worker.on_exec


def _raw_exec(self, request, buffers, nested):  # type: ignore[no-untyped-def]
    if not request.code.startswith(MARK):
        return _ordinary_exec(self, request, buffers, nested)

    def send(message, released=(), buffers=()):  # type: ignore[no-untyped-def]
        body, extra = wire.encode(message, tuple(released))
        protocol.send(self.sock, body, [*extra, *buffers])

    def send_frame(body, buffers=(), fds=()):  # type: ignore[no-untyped-def]
        protocol.send(self.sock, body, list(buffers), list(fds))

    env = {"worker": self, "send": send, "send_frame": send_frame, "messages": messages,
           "protocol": protocol, "wire": wire, "os": os, "sys": sys, "pickle": pickle, "ast": ast,
           "__name__": "__raw__"}
    out = io.StringIO()
    error = None
    try:
        # Compiled from a tree: the audit hook judges compiled *text*, and this code has
        # left layer 2 behind by definition (that is what this module simulates).
        code = compile(ast.parse(request.code[len(MARK):]), "<raw>", "exec")
        with contextlib.redirect_stdout(out):
            exec(code, env)  # noqa: S102 - the point of this module
    except BaseException as exc:  # noqa: BLE001
        error = CellError("exception", type(exc).__name__, str(exc)[:2000])
    return CellReply(error is None, out.getvalue()[:5000], "", None, error, 0.0, (), (), False,
                     None, False)


_worker.Worker.on_exec = _raw_exec  # type: ignore[method-assign]
