"""Figures out of the cave: matplotlib charts come back as checked PNG bytes on `CellResult`.

Each test runs real cells in a real worker whose zygote preloaded matplotlib,
and reads the PNG it got back with Pillow (in the test: the host itself
never decodes an image).
"""

from __future__ import annotations

import glob
import io
import os
import tempfile
from collections.abc import Iterator

import pytest
from PIL import Image

from cavelite import Runtime
from cavelite.runtime.results import Figure

MPL = ("numpy", "pandas", "matplotlib")


@pytest.fixture(scope="module")
def plots() -> Iterator[Runtime]:
    runtime = Runtime(preload=MPL, cell_timeout=30, max_figures=3)
    runtime.execute("import matplotlib.pyplot as plt\nimport pandas as pd")
    yield runtime
    runtime.close()


def pixels(figure: Figure) -> tuple[int, int]:
    image = Image.open(io.BytesIO(figure.data))
    image.load()  # the whole image decodes: real PNG data, not only a header
    return image.size


def test_a_figure_left_open_comes_back_as_png(plots: Runtime) -> None:
    result = plots.execute("fig, ax = plt.subplots()\nax.plot([1, 3, 2])\nax.set_title('t')\n"
                           "total = 6")
    assert result.ok, result.error
    [figure] = result.figures
    assert (figure.mime_type, figure.width, figure.height) == ("image/png", 640, 480)
    assert pixels(figure) == (640, 480)
    # The model is told a figure was made and how big, never the pixels.
    text = result.for_model()
    assert "[figure 1] 640x480 PNG" in text and "KB" in text
    assert "\\x89PNG" not in text and len(text) < 200
    # Left open, it was shown once and closed: the next cell draws nothing.
    again = plots.execute("total + 1")
    assert again.figures == () and again.value_repr == "7"


def test_show_renders_each_figure_where_it_is_called(plots: Runtime) -> None:
    result = plots.execute("plt.plot([1, 2])\nplt.show()\nplt.figure(figsize=(3, 2), dpi=100)\n"
                           "plt.plot([2, 1])\nplt.show()\nprint('done')")
    assert result.ok, result.error
    assert [(f.width, f.height) for f in result.figures] == [(640, 480), (300, 200)]
    assert result.stdout == "done\n" and result.stderr == ""  # no Agg "cannot show" warning


def test_a_figure_value_and_dataframe_plot_are_captured(plots: Runtime) -> None:
    made = plots.execute("from matplotlib.figure import Figure\nf = Figure(figsize=(2, 2), dpi=50)\n"
                         "f.subplots().bar(['a', 'b'], [1, 2])\nf")
    assert made.ok, made.error
    assert [(x.width, x.height) for x in made.figures] == [(100, 100)]
    frame = plots.execute("pd.DataFrame({'a': [1, 2, 3], 'b': [3, 1, 2]}).plot()")
    assert frame.ok, frame.error
    assert frame.value_repr == "<Axes: >" and len(frame.figures) == 1


def test_savefig_to_bytes_works_and_to_a_path_is_refused(plots: Runtime) -> None:
    result = plots.execute("import io\nbuf = io.BytesIO()\nfig = plt.figure()\nplt.plot([1])\n"
                           "fig.savefig(buf, format='png')\nplt.close(fig)\nhead = buf.getvalue()[:4]\n"
                           "head")
    assert result.ok, result.error
    assert result.value_repr == "b'\\x89PNG'" and result.figures == ()
    refused = plots.execute("plt.plot([1])\nplt.savefig('chart.png')")
    assert not refused.ok and refused.rolled_back
    assert refused.error.type == "AccessDenied"
    assert "plt.show()" in refused.error.message  # the model learns what to do instead
    assert refused.figures == ()
    assert plots.execute("head").value_repr == "b'\\x89PNG'"  # the session is unchanged


def test_a_failed_cell_returns_no_figures_and_leaves_none_open(plots: Runtime) -> None:
    result = plots.execute("plt.plot([1, 2])\n1 / 0")
    assert result.error.kind == "exception" and result.rolled_back and result.figures == ()
    assert plots.execute("x = 1").figures == ()


def test_more_figures_than_the_limit_are_counted_not_sent(plots: Runtime) -> None:
    result = plots.execute("for i in range(5):\n    plt.figure(figsize=(1, 1))\n    plt.plot([i])")
    assert result.ok, result.error
    assert len(result.figures) == 3
    assert "[2 more figure(s) not shown: at most 3 per cell]" in result.stderr
    # Each show() closes its figure, and a new one may reuse the freed one's id: still new.
    shown = plots.execute("for i in range(8):\n    plt.plot([i])\n    plt.show()")
    assert len(shown.figures) == 3
    assert "[5 more figure(s) not shown: at most 3 per cell]" in shown.stderr


def test_a_huge_figure_is_refused_with_a_reason(plots: Runtime) -> None:
    result = plots.execute("plt.figure(figsize=(500, 500), dpi=100)\nplt.plot([1])\nsize = 1")
    assert result.ok, result.error
    assert result.figures == ()
    assert "[figure 1 not shown: 50000x50000 pixels" in result.stderr
    assert plots.execute("size").value_repr == "1"


def test_rcparams_cannot_make_a_figure_bigger_than_it_is(plots: Runtime) -> None:
    # A tight bounding box around an artist far away, or a huge savefig dpi, would
    # make a 640x480 figure tens of thousands of pixels wide.
    result = plots.execute("with plt.rc_context({'savefig.bbox': 'tight', 'savefig.dpi': 5000}):\n"
                           "    fig, ax = plt.subplots()\n    ax.text(400, 400, 'far away')\n"
                           "    plt.show()")
    assert result.ok, result.error
    assert [(f.width, f.height) for f in result.figures] == [(640, 480)]


def test_a_runtime_without_matplotlib_preloaded_says_how_to_get_it() -> None:
    with Runtime(preload=("numpy", "pandas")) as runtime:
        refused = runtime.execute("import matplotlib.pyplot as plt")
        assert refused.error.type == "ImportError"
        assert "preload=('numpy', 'pandas', 'matplotlib')" in refused.error.message
        plotted = runtime.execute("import pandas as pd\npd.DataFrame({'a': [1]}).plot()")
        assert not plotted.ok and "preload" in plotted.error.message
        assert runtime.execute("1 + 1").value_repr == "2"


def test_matplotlib_writes_nothing_and_shares_no_open_font_file(plots: Runtime) -> None:
    tmp = tempfile.gettempdir()
    before = set(glob.glob(os.path.join(tmp, "matplotlib-*")))
    with Runtime(preload=MPL) as runtime:
        workdir = os.path.join(tmp, f"cavelite-{runtime.pid}")
        result = runtime.execute("import matplotlib.pyplot as plt\nplt.title('text needs fonts')")
        assert result.ok and len(result.figures) == 1
        # The worker's private directory stays empty and matplotlib made no temporary one.
        assert os.listdir(workdir) == []
        assert set(glob.glob(os.path.join(tmp, "matplotlib-*"))) == before
        # The font list was built by the zygote, in its own directory, before any worker.
        [mpl_dir] = [d for d in glob.glob(os.path.join(tmp, "cavelite-mpl-*"))
                     if os.path.isdir(d) and _is_zygote_dir(d)]
        names = os.listdir(mpl_dir)
        assert names and all(n.startswith("fontlist-") and n.endswith(".json") for n in names), names
    fresh = Runtime(preload=MPL)
    try:
        fds = [os.readlink(f"/proc/{fresh.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{fresh.pid}/fd")]
        assert not [path for path in fds if path.endswith((".ttf", ".otf", ".afm"))], fds
    finally:
        fresh.close()


def _is_zygote_dir(path: str) -> bool:
    from cavelite.runtime.zygote import Zygote

    return any(path.endswith(f"-{z.pid}") for z in Zygote._instances.values())


def test_a_figure_record_checks_its_own_bytes(plots: Runtime) -> None:
    from cavelite import CaveUsageError

    [real] = plots.execute("plt.plot([1])").figures
    assert Figure("image/png", real.width, real.height, real.data) == real
    for args, message in ((("image/png", real.width + 1, real.height, real.data), "disagrees"),
                          (("image/png", 1, 1, b"GIF89a" + real.data[6:]), "signature"),
                          (("image/gif", real.width, real.height, real.data), "image/png")):
        with pytest.raises(CaveUsageError, match=message):
            Figure(*args)
