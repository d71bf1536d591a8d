"""Figures out of the cave: matplotlib prepared in the zygote, PNGs captured after each cell.

matplotlib needs a writable config and cache directory (its font list) the
first time it is imported, and a worker can write nowhere (the audit hook
and Landlock refuse it). So the zygote that preloads matplotlib does it
before any worker exists (`prepare_zygote`, `warm_zygote`): it points
``MPLCONFIGDIR`` at a private directory of its own, selects the cave's
backend (`figure_backend`), builds the font list there (keeping only fonts
under the library roots, the only ones a worker can read), renders one
figure to warm the caches, and closes the fonts it opened (an open file
inherited by every worker would share its offset between sessions). Workers
forked from it write nothing. A runtime whose zygote did not preload
matplotlib refuses to import it, with the way to get it (`refuse_unprepared`).

In the worker, `FigureCapture` collects the cell's figures: those rendered
by ``plt.show()`` during the cell, those left open at its end, and a figure
(or an artist of one) that is the cell's value. Each is rendered to PNG at
its own size and dpi (``savefig``'s rcParams, such as a tight bounding box
that a far-away artist can make huge, do not apply), within a time limit,
a pixel and a byte bound and a count; what is left out is said on stderr.
"""

from __future__ import annotations

import importlib.abc
import io
import math
import os
import shutil
import sys
import weakref
from typing import Any

from ..security.figure_doors import CAVE_BACKEND
from . import png
from .namespace import bounded, safe_type_name
from .results import Figure
from .wire import plain_text

MAX_PIXELS = 4096 * 4096  # one figure, rendered (an RGBA buffer of 64 MB)
RENDER_S = 5.0  # one figure's rendering after the cell (the host's cell deadline is the backstop)

_ZYGOTE_DIR: list[str] = []


def wants_matplotlib(preload: list[str]) -> bool:
    return any(name == "matplotlib" or name.startswith("matplotlib.") for name in preload)


def prepare_zygote(tmpdir: str) -> None:
    """Before the preloads: matplotlib's own directory, and the cave's backend."""
    path = os.path.join(tmpdir, f"cavelite-mpl-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)  # a stale one from a recycled pid
    os.mkdir(path, 0o700)
    _ZYGOTE_DIR[:] = [path]
    os.environ["MPLCONFIGDIR"] = path
    os.environ["MPLBACKEND"] = CAVE_BACKEND


def warm_zygote(read_roots: tuple[str, ...]) -> None:
    """After the preloads: fonts a worker can read, caches warm, no font file left open."""
    import gc

    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    def readable(entry: Any) -> bool:
        path = os.path.realpath(entry.fname)
        return any(path.startswith(root + os.sep) for root in read_roots)

    manager = font_manager.fontManager
    manager.ttflist = [f for f in manager.ttflist if readable(f)]
    manager.afmlist = [f for f in manager.afmlist if readable(f)]
    manager._findfont_cached.cache_clear()  # type: ignore[attr-defined]
    fig, ax = plt.subplots(figsize=(2, 1.5), dpi=50)
    ax.plot([0, 1], [1, 0], label="warm")
    ax.set_title("warm")
    ax.legend()
    capture = FigureCapture(1, 1 << 20)
    capture.take(fig)
    plt.close("all")
    font_manager._get_font.cache_clear()  # type: ignore[attr-defined]  # closes the font files once collected
    gc.collect()


def remove_zygote_dir() -> None:
    for path in _ZYGOTE_DIR:
        shutil.rmtree(path, ignore_errors=True)


class _Unprepared(importlib.abc.MetaPathFinder):
    """Refuses matplotlib in a worker whose zygote did not set it up (it could not start)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(
                "matplotlib was not preloaded by this runtime, and it cannot set itself up inside "
                "the cave: ask the user to create the runtime with "
                "preload=('numpy', 'pandas', 'matplotlib')")
        return None


def refuse_unprepared() -> None:
    """In a spare: make ``import matplotlib`` fail clearly unless the zygote prepared it."""
    if "matplotlib" not in sys.modules:
        sys.meta_path.insert(0, _Unprepared())


_CURRENT: list[FigureCapture] = []


def show_open_figures() -> None:
    """``plt.show()`` in a cell (see `figure_backend`): into the running cell's result."""
    if _CURRENT:
        _CURRENT[0].show_open()


class FigureCapture:
    """The figures of the cell running in this worker (one instance per worker, `install`)."""

    def __init__(self, max_figures: int, max_bytes: int):
        self.max_figures = max_figures
        self.max_bytes = max_bytes
        self.figures: list[Figure] = []
        self.notes: list[str] = []
        # Figures already taken, by id, with a weak reference to tell a live figure from
        # a new one that got the id of a figure shown (and freed) earlier in the cell.
        self._seen: dict[int, Any] = {}
        self._skipped = 0

    def install(self) -> FigureCapture:
        """Make this the capture ``plt.show()`` renders into."""
        _CURRENT[:] = [self]
        return self

    def begin(self) -> None:
        self.figures, self.notes, self._seen, self._skipped = [], [], {}, 0

    def finish(self, value: Any) -> tuple[tuple[Figure, ...], str]:
        """After the cell: the open figures and the value's, then ``(figures, notes)``."""
        if "matplotlib.figure" in sys.modules:
            self.show_open()
            figure = _figure_of(value)
            if figure is not None:
                self.take(figure)
        if self._skipped:
            self.notes.append(f"[{self._skipped} more figure(s) not shown: at most "
                              f"{self.max_figures} per cell]")
        return tuple(self.figures), "".join(note + "\n" for note in self.notes)

    def show_open(self) -> None:
        """Render every figure pyplot holds open, then close them (``plt.show()``)."""
        if "matplotlib.pyplot" not in sys.modules:
            return
        from matplotlib._pylab_helpers import Gcf

        managers = Gcf.get_all_fig_managers()
        try:
            for manager in managers:
                self.take(manager.canvas.figure)
        finally:
            if managers:
                Gcf.destroy_all()

    def take(self, figure: Any) -> None:
        seen = self._seen.get(id(figure))
        if seen is not None and seen() is figure:
            return
        try:
            self._seen[id(figure)] = weakref.ref(figure)
        except TypeError:  # not weakly referenceable: keep it alive for the cell instead
            self._seen[id(figure)] = lambda figure=figure: figure
        if len(self.figures) >= self.max_figures:
            self._skipped += 1
            return
        number = len(self._seen)
        too_long: Figure | str = f"it took longer than {RENDER_S:g} s to draw"
        result = bounded(_render, figure, self.max_bytes, fallback=too_long, seconds=RENDER_S)
        if isinstance(result, Figure):
            self.figures.append(result)
        else:
            self.notes.append(f"[figure {number} not shown: {result}]")


def _figure_of(value: Any) -> Any:
    """The figure a cell's value is, or belongs to (an Axes, a line); None otherwise."""
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure as MplFigure

    if isinstance(value, MplFigure):
        return value
    if isinstance(value, Artist):
        figure = Artist.get_figure(value, root=True)
        return figure if isinstance(figure, MplFigure) else None
    return None


def _render(figure: Any, max_bytes: int) -> Figure | str:
    """One figure as a checked PNG, or why not (a text for the notes)."""
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.transforms import Bbox

    try:
        width_in, height_in = MplFigure.get_size_inches(figure)
        dpi = float(MplFigure.dpi.fget(figure))  # type: ignore[attr-defined]
        width, height = width_in * dpi, height_in * dpi
        if not (math.isfinite(width) and math.isfinite(height)) or width * height > MAX_PIXELS:
            return (f"{width:.0f}x{height:.0f} pixels is more than {MAX_PIXELS} (make figsize or "
                    "dpi smaller)")
        buffer = io.BytesIO()
        # The box is built from the size just checked, not read from the figure (a cell may
        # have set its bbox_inches attribute to anything).
        box = Bbox.from_bounds(0, 0, width_in, height_in)
        MplFigure.savefig(figure, buffer, format="png", dpi=dpi, bbox_inches=box)
        data = buffer.getvalue()
        if len(data) > max_bytes:
            return f"its PNG takes {len(data)} bytes, more than {max_bytes}"
        width_px, height_px = png.dimensions(data)  # what the host will check, checked here first
        if width_px * height_px > MAX_PIXELS:
            return f"it drew {width_px}x{height_px} pixels, more than {MAX_PIXELS}"
        return Figure("image/png", width_px, height_px, data)
    except MemoryError:
        return "drawing it ran out of memory"
    except Exception as exc:
        return f"drawing it failed: {safe_type_name(exc)}: {plain_text(str(exc), 300)}"
