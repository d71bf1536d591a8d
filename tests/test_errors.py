"""Every public failure raises a `CaveliteError` subclass that says who is at fault.

The test walks the failure paths of the public API (bad arguments, missing
variables, values that cannot travel, closed objects, a worker that dies or
hangs, bad policies, bad snapshots, model trouble) and checks the exact type
of what each raises, and that it is a `CaveliteError`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from cavelite import (
    AgentClosedError,
    CaveLite,
    CaveliteError,
    CaveUsageError,
    ClosedError,
    ModelError,
    Policy,
    PolicyError,
    RequestTimeoutError,
    Runtime,
    RuntimeClosedError,
    Snapshot,
    UnpicklableValueError,
    UntrustedTypeError,
    VariableNotFoundError,
    WorkerDiedError,
)
from cavelite.models import AnthropicModel, OpenAIModel, ScriptedModel


@pytest.fixture(scope="module")
def rt() -> Iterator[Runtime]:
    runtime = Runtime(request_timeout=2)
    runtime.execute("class Made:\n    pass\nmade = Made()\nslow = None")
    yield runtime
    runtime.close()


def _spinning_repr(rt: Runtime) -> None:
    rt.execute("class Z:\n    def __getstate__(self):\n        while True:\n            try:\n"
               "                while True: pass\n            except BaseException: pass\nz = Z()")
    try:
        rt.retrieve("z", trusted=True)
    finally:
        rt.reset()


def _dead_worker(rt: Runtime) -> None:
    import os
    import signal

    os.kill(rt.pid, signal.SIGKILL)
    rt.variables()


def _inject_socket(rt: Runtime) -> None:
    with socket.socket() as sock:
        rt.inject("sock", sock)


def _closed_runtime() -> None:
    closed = Runtime()
    closed.close()
    closed.variables()


def _closed_agent() -> None:
    agent = CaveLite(ScriptedModel(["done"]))
    agent.close()
    agent.variables()


PATHS: dict[str, tuple[Callable[[Runtime], object], type[CaveliteError]]] = {
    "bad name": (lambda rt: rt.inject("not a name", 1), CaveUsageError),
    "reserved name": (lambda rt: rt.inject("_getattr_", 1), CaveUsageError),
    "code not a str": (lambda rt: rt.execute(42), CaveUsageError),  # type: ignore[arg-type]
    "bad timeout": (lambda rt: rt.execute("1", timeout=0), CaveUsageError),
    "bad runtime option": (lambda rt: Runtime(cell_timeout=-1), CaveUsageError),
    "bad policy object": (lambda rt: Runtime(policy="strict"), CaveUsageError),  # type: ignore[arg-type]
    "missing variable": (lambda rt: rt.retrieve("nope"), VariableNotFoundError),
    "delete missing": (lambda rt: rt.delete("nope"), VariableNotFoundError),
    "unpicklable inject": (lambda rt: rt.inject("lock", threading.Lock()), UnpicklableValueError),
    "socket inject": (lambda rt: _inject_socket(rt), UnpicklableValueError),
    "cell-made retrieve": (lambda rt: rt.retrieve("made"), UntrustedTypeError),
    "bad regex": (lambda rt: Policy.default().add_regex("(", "never"), PolicyError),
    "bad snapshot": (lambda rt: Snapshot.from_bytes(b"not a snapshot"), CaveUsageError),
    "restore without remotes": (
        lambda rt: Runtime.restore(Snapshot(b"", ("tool",))), CaveUsageError),
    "request timeout": (_spinning_repr, RequestTimeoutError),
    "worker killed": (_dead_worker, WorkerDiedError),
    "closed runtime": (lambda rt: _closed_runtime(), RuntimeClosedError),
    "closed agent": (lambda rt: _closed_agent(), AgentClosedError),
    "agent on a shared runtime with a policy": (
        lambda rt: CaveLite(ScriptedModel([]), runtime=rt, policy=Policy.default()), CaveUsageError),
    "not a model": (lambda rt: CaveLite("claude"), CaveUsageError),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("name", list(PATHS))
def test_each_failure_raises_its_own_type(rt: Runtime, name: str) -> None:
    path, expected = PATHS[name]
    with pytest.raises(CaveliteError) as caught:
        path(rt)
    assert type(caught.value) is expected, f"{name}: {type(caught.value).__name__}"
    assert str(caught.value), "an error without a message"
    assert rt.execute("1 + 1").value_repr == "2"  # the shared runtime is still usable


def test_closed_errors_share_a_root_that_says_who_closed_it() -> None:
    assert issubclass(RuntimeClosedError, ClosedError) and issubclass(AgentClosedError, ClosedError)


def test_a_model_failure_is_a_model_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = AnthropicModel("claude-test", api_key="k", base_url=f"http://127.0.0.1:{port}",
                           max_retries=0)
    with CaveLite(model) as agent:
        reply = agent.chat("hello")
    assert reply.stop_reason == "model_error" and reply.error is not None
    assert isinstance(reply.error, ModelError) or "connection" in str(reply.detail).lower()


def test_model_options_after_the_name_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        OpenAIModel("gpt-4o", "sk-not-a-url")  # type: ignore[misc]
    with pytest.raises(TypeError):
        AnthropicModel("claude-sonnet-4-5", "sk-key")  # type: ignore[misc]
