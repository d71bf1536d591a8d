"""The cave's matplotlib backend: Agg, with ``plt.show()`` handing figures to the runtime.

matplotlib loads it by name (``module://cavelite.runtime.figure_backend``,
set in the zygote, see `figures`); nothing in cavelite imports it. Agg's own
``show()`` only warns that it cannot open a window; here it renders every
open figure to PNG for the cell's result and closes them, as Jupyter's
inline backend does.
"""

from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg

FigureCanvas = FigureCanvasAgg


def show(*args: Any, **kwargs: Any) -> None:
    """Render the open figures into this cell's result, then close them."""
    from . import figures

    figures.show_open_figures()
