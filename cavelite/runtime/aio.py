"""The async twins of `Runtime`'s blocking calls (a mixin, so that class stays one screenful).

Each runs its blocking twin in a thread (``asyncio.to_thread``): IPC never
blocks the caller's event loop, and remote async functions that a cell
calls meanwhile run on that caller's loop, not on a new one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

from .config import DEFAULT, Default
from .results import CellResult, VariableInfo
from .snapshot import Snapshot

if TYPE_CHECKING:
    from .runtime import Runtime


class AsyncTwins:
    """``a``-prefixed versions of the `Runtime` API."""

    _loop: threading.local

    async def aexecute(self, code: str, *,
                       timeout: float | None | Default = DEFAULT) -> CellResult:
        """`execute` without blocking the event loop."""
        result: CellResult = await self._in_thread("execute", code, timeout=timeout)
        return result

    async def ainject(self, name: str, value: Any, *, description: str | None = None,
                      remote: bool | None = None) -> None:
        """`inject` without blocking the event loop."""
        await self._in_thread("inject", name, value, description=description, remote=remote)

    async def ainject_type(self, cls: type, *, name: str | None = None,
                           description: str | None = None) -> None:
        """`inject_type` without blocking the event loop."""
        await self._in_thread("inject_type", cls, name=name, description=description)

    async def aretrieve(self, name: str, *, trusted: bool = False) -> Any:
        """`retrieve` without blocking the event loop."""
        return await self._in_thread("retrieve", name, trusted=trusted)

    async def avariables(self) -> list[VariableInfo]:
        """`variables` without blocking the event loop."""
        found: list[VariableInfo] = await self._in_thread("variables")
        return found

    async def adelete(self, name: str) -> None:
        """`delete` without blocking the event loop."""
        await self._in_thread("delete", name)

    async def areset(self) -> None:
        """`reset` without blocking the event loop."""
        await self._in_thread("reset")

    async def asnapshot(self) -> Snapshot:
        """`snapshot` without blocking the event loop."""
        snapshot: Snapshot = await self._in_thread("snapshot")
        return snapshot

    @classmethod
    async def arestore(cls, snapshot: Snapshot | bytes, *, remotes: Mapping[str, Any] | None = None,
                       **kwargs: Any) -> Runtime:
        """`restore` without blocking the event loop."""
        restore = getattr(cls, "restore")  # noqa: B009 - the blocking twin, defined by Runtime
        runtime: Runtime = await asyncio.to_thread(restore, snapshot, remotes=remotes, **kwargs)
        return runtime

    async def aclose(self) -> None:
        """`close` without blocking the event loop."""
        await asyncio.to_thread(getattr(self, "close"))  # noqa: B009

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _in_thread(self, method: str, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        fn = getattr(self, method)

        def run() -> Any:
            # Remote async functions then run on the caller's loop, not a new one.
            self._loop.value = loop
            try:
                return fn(*args, **kwargs)
            finally:
                self._loop.value = None

        return await asyncio.to_thread(run)
