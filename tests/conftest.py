"""Shared fixtures: a module-scoped runtime, process-leak checks, a clean environment."""

from __future__ import annotations

import pytest
from fakes.processes import wait_gone, worker_pids

from cavelite import Runtime

# Loopback Messages-API and chat-completions servers (session-wide, with .url).
pytest_plugins = ["fakes.fixtures"]


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

    gc.collect()
    left = wait_gone(worker_pids())
    assert not left, f"cave processes left behind: {sorted(left)}"
