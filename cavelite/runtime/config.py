"""`WorkerConfig`: everything about a session that crosses into the worker, as one frozen value.

The host builds it once per `Runtime`; the zygote hands it to the spare that
becomes the worker. Nothing on the host changes it afterwards, so host and
worker can never disagree (the public properties of `Runtime` read it).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Final

from ..errors import CaveUsageError
from ..security.policy import Policy
from .messages import Limits

DEFAULT_PRELOAD: tuple[str, ...] = ("numpy", "pandas")
# matplotlib can only be set up before the cave closes, so figures need it preloaded.
# It is not the default: the zygote's start pays ~2.5x and back-to-back atomic cells
# wait for a larger fork (benchmarks/figures_bench.py); the CLI and the MCP server,
# where charts are the point, preload it where installed.
FIGURES_PRELOAD: tuple[str, ...] = DEFAULT_PRELOAD + (
    ("matplotlib",) if importlib.util.find_spec("matplotlib") is not None else ())


class Default:
    """The type of `DEFAULT`."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final = Default()
"""``execute(timeout=DEFAULT)``: the runtime's own ``cell_timeout`` (``None`` means no limit)."""


@dataclass(frozen=True)
class WorkerConfig:
    policy: Policy
    atomic: bool
    memory_limit_mb: int | None
    max_output_chars: int
    max_repr_chars: int
    hard_output_limit: int
    recursion_limit: int = 3000
    max_figures: int = 8              # figures one cell may return
    max_figure_bytes: int = 5_000_000  # PNG bytes of one figure

    @property
    def max_file_bytes(self) -> int:
        """RLIMIT_FSIZE: the only files a worker writes are its memfd buffers."""
        if self.memory_limit_mb is None:
            return max(self.hard_output_limit, 1 << 30)
        return self.memory_limit_mb * 1024 * 1024

    @property
    def limits(self) -> Limits:
        """What a reply may hold: the worker cuts to it, the host refuses more."""
        return Limits.for_config(self.max_output_chars, self.max_repr_chars, self.max_figures,
                                 self.max_figure_bytes)

    @property
    def transfer_limit(self) -> int:
        """The most bytes one value may take on the wire (twice what the worker may hold)."""
        if self.memory_limit_mb is None:
            return 1 << 36
        return 2 * self.memory_limit_mb * 1024 * 1024 + (256 << 20)


def check_settings(cell_timeout: float | None, request_timeout: float, memory_limit_mb: int | None,
                   max_output_chars: int, max_figures: int, max_figure_bytes: int,
                   policy: object) -> None:
    """Refuse a `Runtime` setting out of range with a `CaveUsageError` naming it."""
    if cell_timeout is not None and not cell_timeout > 0:
        raise CaveUsageError("cell_timeout must be positive (or None for no limit)")
    if not request_timeout > 0:
        raise CaveUsageError("request_timeout must be positive")
    if max_output_chars < 100:
        raise CaveUsageError("max_output_chars must be at least 100")
    if memory_limit_mb is not None and memory_limit_mb < 16:
        raise CaveUsageError("memory_limit_mb must be at least 16 (or None)")
    if not 0 <= max_figures <= 100:
        raise CaveUsageError("max_figures must be between 0 and 100")
    if not 1_000 <= max_figure_bytes <= 1 << 28:
        raise CaveUsageError("max_figure_bytes must be between 1000 and 2**28")
    if policy is not None and not isinstance(policy, Policy):
        raise CaveUsageError(f"policy must be a cavelite.Policy, not {type(policy).__name__}")
