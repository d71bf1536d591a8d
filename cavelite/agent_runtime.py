"""The runtime, through the agent: `CaveLite`'s inject/retrieve/variables/reset, their async twins, close.

A mixin, like `cavelite.runtime.aio.AsyncTwins`, so the agent class stays
about the chat loop. Each call checks the agent is open and forwards to its
runtime; injecting also keeps a richer description of the value (signatures,
fields, methods, computed here in the host) for the system prompt. Closing
(also as a context manager) closes the runtime only if the agent created it.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from cavelite import prompt
from cavelite.errors import AgentClosedError, CaveUsageError
from cavelite.runtime.results import Injected, VariableInfo

if TYPE_CHECKING:
    from cavelite.models.base import Message, Model
    from cavelite.runtime.like import RuntimeLike


class RuntimeThroughAgent:
    """The `CaveLite` API that acts on its runtime rather than on the conversation, and its lifetime."""

    runtime: RuntimeLike
    _history: list[Message]
    _injected_notes: dict[str, Injected]
    model: Model
    _busy: threading.Lock
    _closed: bool
    _owns_runtime: bool

    def inject(
        self, name: str, value: Any, *, description: str | None = None, remote: bool | None = None
    ) -> None:
        """Put ``value`` into the runtime as ``name`` (same rules as `Runtime.inject`)."""
        self._check_open()
        self.runtime.inject(name, value, description=description, remote=remote)
        self._remember(name, value)

    def inject_type(self, cls: type, *, name: str | None = None, description: str | None = None) -> None:
        """Make a class available to the model's code (dataclass, enum, pydantic model...)."""
        if not isinstance(cls, type):
            raise CaveUsageError(f"inject_type expects a class, got {type(cls).__name__}")
        self._check_open()
        self.runtime.inject_type(cls, name=name, description=description)
        self._remember(name or cls.__name__, cls)

    def _remember(self, name: str, value: Any) -> None:
        """Keep a richer description (signatures, fields) of what was just injected."""
        for item in self.runtime.injected():
            if item.name == name:
                self._injected_notes[name] = prompt.enrich(item, value)
                return
        self._injected_notes.pop(name, None)  # plain data: listed with the variables

    def retrieve(self, name: str, *, trusted: bool = False) -> Any:
        """A variable's value, decoded safely (see `Runtime.retrieve`)."""
        self._check_open()
        return self.runtime.retrieve(name, trusted=trusted)

    def variables(self) -> list[VariableInfo]:
        """The runtime's variables, each with its type and bounded summary (no data is copied)."""
        self._check_open()
        return self.runtime.variables()

    def reset(self, *, runtime: bool = True) -> None:
        """Forget the conversation; with ``runtime=True`` also reset the runtime's namespace.

        Resetting a shared runtime resets it for every agent that uses it.
        """
        self._check_open()
        if self._busy.locked():
            raise CaveUsageError("cannot reset while a chat is running; cancel() it first")
        self._history.clear()
        if runtime:
            self.runtime.reset()

    async def ainject(
        self, name: str, value: Any, *, description: str | None = None, remote: bool | None = None
    ) -> None:
        """`inject` without blocking the event loop."""
        await asyncio.to_thread(self.inject, name, value, description=description, remote=remote)

    async def ainject_type(
        self, cls: type, *, name: str | None = None, description: str | None = None
    ) -> None:
        """`inject_type` without blocking the event loop."""
        await asyncio.to_thread(self.inject_type, cls, name=name, description=description)

    async def aretrieve(self, name: str, *, trusted: bool = False) -> Any:
        """`retrieve` without blocking the event loop."""
        return await asyncio.to_thread(self.retrieve, name, trusted=trusted)

    async def avariables(self) -> list[VariableInfo]:
        """`variables` without blocking the event loop."""
        return await asyncio.to_thread(self.variables)

    async def areset(self, *, runtime: bool = True) -> None:
        """`reset` without blocking the event loop."""
        await asyncio.to_thread(self.reset, runtime=runtime)

    def close(self) -> None:
        """Close the runtime if this agent created it (a shared runtime stays open)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_runtime:
            self.runtime.close()

    async def aclose(self) -> None:
        """Close, and release the model's HTTP pool on the running loop."""
        self.close()
        await self.model.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise AgentClosedError("this agent was closed")
