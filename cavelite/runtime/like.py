"""`RuntimeLike`: what `CaveLite` needs of a runtime (typing only).

`Runtime` has it, and so does any handle that offers the same calls
elsewhere (`cavelite.cluster.ClusterRuntime`, a session on a Ray node).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from .config import Default
from .results import CellResult, Injected, VariableInfo

if TYPE_CHECKING:
    from .runtime import Runtime


class RuntimeLike(Protocol):
    """The part of the `Runtime` API an agent (and a user holding ``agent.runtime``) uses."""

    @property
    def preload(self) -> tuple[str, ...]: ...

    @property
    def cell_timeout(self) -> float | None: ...

    @property
    def max_output_chars(self) -> int: ...

    def execute(self, code: str, *, timeout: float | None | Default = ...) -> CellResult: ...

    async def aexecute(self, code: str, *, timeout: float | None | Default = ...) -> CellResult: ...

    def inject(self, name: str, value: Any, *, description: str | None = None,
               remote: bool | None = None) -> None: ...

    def inject_type(self, cls: type, *, name: str | None = None,
                    description: str | None = None) -> None: ...

    def injected(self) -> list[Injected]: ...

    def retrieve(self, name: str, *, trusted: bool = False) -> Any: ...

    def variables(self) -> list[VariableInfo]: ...

    async def avariables(self) -> list[VariableInfo]: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


if TYPE_CHECKING:
    def _runtime_is_runtime_like(runtime: Runtime) -> RuntimeLike:
        return runtime  # mypy checks that Runtime offers all of it
