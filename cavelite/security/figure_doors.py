"""Layer 2 for matplotlib: the doors a figure library opens, narrowed in the worker.

matplotlib is allowed so that cells can draw charts, which reach the user as
PNG bytes (see `cavelite.runtime.figures`). Besides drawing, it can:

- import a module by name: the backend (``matplotlib.use``,
  ``plt.switch_backend``, ``rcParams["backend"]``), ``rcParams["figure.hooks"]``
  (``"module:function"``, called with every new figure) and dotted style names
  (``plt.style.use("package.style")`` imports the package);
- write files: ``savefig(path)``, ``imsave``; read them: style files, rc files.

The policy refuses the modules and functions that only open files or run
programs (``matplotlib.backends``, ``cbook``, ``imread``...). What stays
public is narrowed here, process-wide, once the worker has matplotlib: the
backend is fixed to the cave's own (``"agg"`` is accepted as a synonym, since
models write ``matplotlib.use("Agg")`` out of habit), figure hooks must stay
empty, styles are the library's names or dicts, and ``savefig`` writes only
to file-like objects. The audit hook and Landlock refuse any file write
underneath; these checks are there so that the model reads what to do.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

from .library_doors import AccessDenied

CAVE_BACKEND = "module://cavelite.runtime.figure_backend"
_BACKEND_NAMES = frozenset(["agg", CAVE_BACKEND.lower()])
_SHOW_HINT = ("figures reach the user by themselves: call plt.show() or leave the figure open at "
              "the end of the cell; fig.savefig(io.BytesIO(), format='png') gives you the bytes")


def _check_backend(name: Any) -> str:
    if not isinstance(name, str) or name.lower() not in _BACKEND_NAMES:
        raise AccessDenied(f"the figure backend is fixed in the cave (asked for {name!r}); "
                           + _SHOW_HINT)
    return CAVE_BACKEND


def _check_hooks(value: Any) -> list[str]:
    if value:
        raise AccessDenied("rcParams['figure.hooks'] imports and calls functions by name; it "
                           "must stay empty in the cave")
    return []


def harden_matplotlib() -> None:
    """Narrow matplotlib's doors in this process (once; a no-op until matplotlib is loaded)."""
    if "matplotlib" not in sys.modules:
        return
    import matplotlib
    import matplotlib.figure
    import matplotlib.style

    if getattr(matplotlib.use, "_cave_checked", False):
        return
    validators = matplotlib.RcParams.validate
    validators["backend"] = _check_backend
    validators["figure.hooks"] = _check_hooks

    real_use = matplotlib.use

    def use(backend: Any, *, force: bool = True) -> None:
        _check_backend(backend)  # the cave's backend is already in use

    real_savefig = matplotlib.figure.Figure.savefig

    def savefig(self: Any, fname: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(fname, (str, bytes, os.PathLike)):
            raise AccessDenied(f"figures cannot be saved to files in the cave ({fname!r}); "
                               + _SHOW_HINT)
        return real_savefig(self, fname, *args, **kwargs)

    real_style_use = matplotlib.style.use

    def style_use(style: Any) -> None:
        for item in style if isinstance(style, (list, tuple)) else [style]:
            if isinstance(item, os.PathLike) or (
                    isinstance(item, str) and item not in matplotlib.style.library
                    and item not in ("default", "mpl20", "mpl15", "classic")):
                raise AccessDenied(f"style {item!r} is not one of matplotlib's own styles "
                                   "(plt.style.available lists them; a dict of rcParams works "
                                   "too); style files and packages are not reachable")
        real_style_use(style)

    for stand_in, original in ((use, real_use), (savefig, real_savefig), (style_use, real_style_use)):
        functools.update_wrapper(stand_in, original)
        stand_in.__dict__["_cave_checked"] = True
    matplotlib.use = use
    matplotlib.figure.Figure.savefig = savefig  # type: ignore[method-assign]
    matplotlib.style.use = style_use
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as pyplot

        real_switch = pyplot.switch_backend

        def switch_backend(newbackend: str) -> None:
            real_switch(_check_backend(newbackend))

        functools.update_wrapper(switch_backend, real_switch)
        pyplot.switch_backend = switch_backend
