"""Shared fixtures; `tests/conftest.py` imports them.

- ``messages_server``: session-wide fake Anthropic Messages API (``.url``).
- ``messages_api``: the same server, emptied of script and records for one test.
- ``openai_server`` / ``openai_api``: the same pair for chat completions.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .messages_server import MessagesServer
from .openai_server import OpenAIServer


@pytest.fixture(scope="session")
def messages_server() -> Iterator[MessagesServer]:
    server = MessagesServer().start()
    yield server
    server.close()


@pytest.fixture
def messages_api(messages_server: MessagesServer) -> Iterator[MessagesServer]:
    messages_server.reset()
    yield messages_server
    messages_server.reset()


@pytest.fixture(scope="session")
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    yield server
    server.close()


@pytest.fixture
def openai_api(openai_server: OpenAIServer) -> Iterator[OpenAIServer]:
    openai_server.reset()
    yield openai_server
    openai_server.reset()
