"""Shared fixtures: a module-scoped runtime, process-leak checks, a clean environment."""

from __future__ import annotations

import os

import pytest

from cavelite import Runtime

# Loopback Messages-API and chat-completions servers (session-wide, with .url).
pytest_plugins = ["fakes.fixtures"]


def _descendants() -> set[int]:
    """Pids of every live process below this one (workers are grandchildren via the zygote)."""
    me = os.getpid()
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [me]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def worker_pids() -> set[int]:
    """Live cave processes serving a session: workers and their checkpoints (not spares)."""
    found = set()
    for pid in _descendants():
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() in ("cave-worker", "cave-checkpoint"):
                    found.add(pid)
        except OSError:
            continue
    return found


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see real provider credentials unless they set them themselves."""
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "CAVELITE_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def rt():
    """One runtime shared by a test module (tests must leave it usable)."""
    runtime = Runtime(cell_timeout=20)
    yield runtime
    runtime.close()


@pytest.fixture
def fresh_rt():
    runtime = Runtime(cell_timeout=20)
    yield runtime
    runtime.close()


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_processes():
    """At the end of the session, every worker and checkpoint is gone."""
    yield
    import gc
    import time

    gc.collect()
    deadline = time.monotonic() + 5
    left = worker_pids()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)  # processes exiting asynchronously after close(); bounded
        left = worker_pids()
    assert not left, f"cave processes left behind: {sorted(left)}"
