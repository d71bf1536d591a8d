"""`WorkerConfig`: everything about a session that crosses into the worker, as one frozen value.

The host builds it once per `Runtime`; the zygote hands it to the spare that
becomes the worker. Nothing on the host changes it afterwards, so host and
worker can never disagree (the public properties of `Runtime` read it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..security.policy import Policy
from .messages import Limits


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
