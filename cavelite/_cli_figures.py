"""Where the ``cavelite`` command writes the figures cells draw.

Each session gets its own folder under ``--figures`` (default
``./cavelite-figures``), named by its start time, made when the first figure
arrives: ``cavelite-figures/20250101-120000/step2-1.png``. The paths are
printed with the cell and listed by ``run --json``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from cavelite.runtime.results import Figure

DEFAULT_ROOT = "cavelite-figures"


class FigureFolder:
    """One session's figure folder (``root/<start time>``), created on first use."""

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT) -> None:
        self.root = Path(root).absolute()  # scripts get paths that do not depend on their cwd
        self.name = time.strftime("%Y%m%d-%H%M%S")
        self._folder: Path | None = None
        self.saved: dict[int, list[str]] = {}  # step -> paths written for that step's cell
        self.errors: list[str] = []

    def save(self, step: int, figures: Sequence[Figure]) -> list[str]:
        """Write a cell's figures; returns their paths (a failure is kept in `errors`)."""
        paths: list[str] = []
        for number, figure in enumerate(figures, 1):
            try:
                path = self._where() / f"step{step}-{number}.png"
                path.write_bytes(figure.data)
            except OSError as exc:
                self.errors.append(f"cannot save figure {number} of step {step}: {exc}")
                continue
            paths.append(str(path))
        if paths:
            self.saved[step] = paths
        return paths

    def _where(self) -> Path:
        if self._folder is None:
            folder = self.root / self.name
            for suffix in range(1, 1000):  # two sessions started in the same second
                try:
                    folder.mkdir(parents=True)
                    break
                except FileExistsError:
                    folder = self.root / f"{self.name}-{suffix}"
            self._folder = folder
        return self._folder
