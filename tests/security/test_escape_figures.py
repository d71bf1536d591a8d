"""Attacks through matplotlib: the figure path, its file doors, backends, hooks, fonts and styles.

Each attack runs in a real worker whose zygote preloaded matplotlib and is
checked for harm (see `conftest.Harm`): the canary outside the cave is
unread and unchanged and nothing appeared next to it, no process was
started, no socket opened, shared modules intact. An attack on the figure
path itself (huge or many figures) must also leave the session usable and
bounded: what comes back is at most the runtime's figures, each a checked
PNG within its pixel bound. A follow-up cell checks that matplotlib's own
state the attack aimed at (the backend, figure hooks, savefig) is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cavelite import Runtime
from cavelite.runtime.figures import MAX_PIXELS

MPL = ("numpy", "pandas", "matplotlib")


@pytest.fixture(scope="module")
def plots() -> Iterator[Runtime]:
    runtime = Runtime(preload=MPL, cell_timeout=15, memory_limit_mb=768, max_figures=4)
    assert runtime.execute("import matplotlib\nimport matplotlib.pyplot as plt").ok
    yield runtime
    runtime.close()


# name -> (code, how it must end: "refused" (an error) or "bounded" (ok, within the limits))
ATTACKS: dict[str, tuple[str, str]] = {
    # --- the figure path: size and count ---
    "huge_figsize": ("plt.figure(figsize=(2000, 2000))\nplt.plot([1, 2])", "bounded"),
    "huge_dpi": ("fig = plt.figure(dpi=100000)\nplt.plot([1])\nfig", "bounded"),
    "huge_savefig_dpi_rc": ("plt.rcParams['savefig.dpi'] = 100000\nplt.plot([1])", "bounded"),
    "tight_bbox_far_artist": ("plt.rcParams['savefig.bbox'] = 'tight'\nfig, ax = plt.subplots()\n"
                              "ax.annotate('x', (1e7, 1e7), xycoords='figure pixels')", "bounded"),
    "many_figures": ("for i in range(300):\n    plt.figure(figsize=(1, 1))", "bounded"),
    "many_shows": ("for i in range(300):\n    plt.plot([i])\n    plt.show()", "bounded"),
    "figure_subclass_lies_about_size": (
        "from matplotlib.figure import Figure\nclass Liar(Figure):\n"
        "    def get_size_inches(self):\n        return [1, 1]\n"
        "    def savefig(self, fname, **kw):\n        fname.write(b'not a png')\n"
        "f = Liar(figsize=(600, 600))\nf", "bounded"),
    "bbox_inches_attribute": ("from matplotlib.transforms import Bbox\nfig = plt.figure()\n"
                              "fig.bbox_inches = Bbox.from_bounds(0, 0, 5000, 5000)", "bounded"),
    "canvas_swapped_for_fake_bytes": (
        "class Fake:\n    def print_figure(self, fname, **kw):\n"
        "        fname.write(b'\\x89PNG\\r\\n\\x1a\\n' + b'x' * 100)\n"
        "fig = plt.figure()\nfig.canvas = Fake()", "bounded"),
    # --- writing elsewhere ---
    "savefig_to_path": ("plt.plot([1])\nplt.savefig({canary_dir!r} + '/chart.png')", "refused"),
    "savefig_canary": ("plt.plot([1])\nplt.gcf().savefig({canary!r})", "refused"),
    "savefig_format_pdf_path": ("plt.savefig({canary_dir!r} + '/x.pdf', format='pdf')", "refused"),
    "canvas_print_png_path": ("fig = plt.figure()\nfig.canvas.print_png({canary_dir!r} + '/c.png')",
                              "refused"),
    "canvas_print_figure_path": ("fig = plt.figure()\nfig.canvas.print_figure({canary!r})", "refused"),
    "imsave": ("import numpy as np\nplt.imsave({canary_dir!r} + '/i.png', np.zeros((2, 2)))",
               "refused"),
    "image_module_imsave": ("import matplotlib.image as mi\nimport numpy as np\n"
                            "mi.imsave({canary_dir!r} + '/i.png', np.zeros((2, 2)))", "refused"),
    "pdf_pages": ("from matplotlib.backends.backend_pdf import PdfPages\n"
                  "PdfPages({canary_dir!r} + '/p.pdf')", "refused"),
    "animation_writer": ("import matplotlib.animation as an\nan.FFMpegWriter()", "refused"),
    "font_json_dump": ("from matplotlib import font_manager as fm\n"
                       "fm.json_dump(fm.fontManager, {canary_dir!r} + '/f.json')", "refused"),
    "cbook_file_handle": ("from matplotlib import cbook\ncbook.to_filehandle({canary!r}, 'w')",
                          "refused"),
    "cbook_via_pyplot": ("plt.cbook.to_filehandle({canary!r}, 'w')", "refused"),
    "savefig_directory_rc": ("plt.rcParams['savefig.directory'] = {canary_dir!r}\n"
                             "plt.savefig('x.png')", "refused"),
    # --- reading outside the cave: fonts and config ---
    "font_from_canary": ("from matplotlib.font_manager import FontProperties\n"
                         "plt.title('x', fontproperties=FontProperties(fname={canary!r}))\n"
                         "plt.show()", "bounded"),
    "addfont_canary": ("from matplotlib import font_manager as fm\nfm.fontManager.addfont({canary!r})",
                       "refused"),
    "imread_canary": ("plt.imread({canary!r})", "refused"),
    "rc_file_canary": ("matplotlib.rc_file({canary!r})", "refused"),
    "rc_params_from_file": ("matplotlib.rc_params_from_file({canary!r})", "refused"),
    "style_file_canary": ("plt.style.use({canary!r})", "refused"),
    "cache_dir": ("print(matplotlib.get_cachedir())", "refused"),
    "system_font_scan": ("from matplotlib import font_manager as fm\nfm.findSystemFonts()", "refused"),
    "usetex_runs_latex": ("plt.rcParams['text.usetex'] = True\nplt.title('$x$')\nplt.show()",
                          "bounded"),
    # --- backends: windows, servers, modules imported by name ---
    "use_tk": ("matplotlib.use('TkAgg')\nplt.figure()", "refused"),
    "use_webagg_server": ("matplotlib.use('WebAgg')\nplt.show()", "refused"),
    "use_module_by_name": ("matplotlib.use('module://antigravity')", "refused"),
    "switch_backend_qt": ("plt.switch_backend('qtagg')", "refused"),
    "rcparams_backend": ("plt.rcParams['backend'] = 'module://this'\nplt.figure()", "refused"),
    "rcparams_update_backend": ("plt.rcParams.update({{'backend': 'module://this'}})", "refused"),
    "rc_defaults_backend": ("matplotlib.rcParamsDefault['backend'] = 'module://this'", "refused"),
    "dict_setitem_backend": ("dict.__setitem__(plt.rcParams, 'backend', 'module://this')\n"
                             "plt.switch_backend(plt.rcParams['backend'])", "refused"),
    "import_tk_backend": ("import matplotlib.backends.backend_tkagg", "refused"),
    "import_backend_bases": ("from matplotlib import backend_bases\n"
                             "backend_bases.register_backend('evil', 'this')", "refused"),
    "figure_hooks": ("plt.rcParams['figure.hooks'] = ['os:system']\nplt.figure()", "refused"),
    "figure_hooks_rc": ("plt.rc('figure', hooks=['builtins:print'])\nplt.figure()", "refused"),
    "style_imports_package": ("plt.style.use('antigravity.style')", "refused"),
    "style_context_imports": ("with plt.style.context('this.style'):\n    pass", "refused"),
    "monkeypatch_savefig": ("from matplotlib.figure import Figure\n"
                            "Figure.savefig = lambda self, *a, **k: None", "refused"),
    "monkeypatch_backend_module": ("plt._backend_mod = None", "refused"),
}


def _format(code: str, canary) -> str:
    return code.format(canary=str(canary.file), canary_dir=str(canary.dir))


@pytest.mark.parametrize("name", list(ATTACKS))
def test_figure_attack_does_no_harm(plots: Runtime, make_harm, canary, name: str) -> None:
    code, ending = ATTACKS[name]
    harm = make_harm(plots)
    assert plots.execute("survivor = 41").ok
    result = plots.execute(_format(code, canary))
    harm.assert_none(result, *(f.width for f in result.figures))
    if ending == "refused":
        assert not result.ok, f"{name} ran: {result}"
        assert result.figures == ()
    else:
        assert result.ok, result.error
    assert len(result.figures) <= 4
    for figure in result.figures:
        assert figure.width * figure.height <= MAX_PIXELS
        assert figure.data.startswith(b"\x89PNG")
    # The session goes on, and matplotlib's shared state is what it was.
    after = plots.execute(
        "plt.close('all')\nplt.rcdefaults()\n"
        "(survivor + 1, plt.get_backend(), list(plt.rcParams['figure.hooks']))")
    assert after.ok, after.error
    assert after.value_repr == "(42, 'module://cavelite.runtime.figure_backend', [])"
    drawn = plots.execute("plt.plot([1, 2])\nplt.show()")
    assert drawn.ok and [(f.width, f.height) for f in drawn.figures] == [(640, 480)]


def test_an_artist_that_never_finishes_drawing_is_cut_off(plots: Runtime, make_harm) -> None:
    harm = make_harm(plots)
    result = plots.execute("from matplotlib.artist import Artist\nclass Spin(Artist):\n"
                           "    def draw(self, renderer):\n        while True:\n            pass\n"
                           "fig = plt.figure()\nfig.add_artist(Spin())\nkept = 1")
    harm.assert_none(result)
    assert result.ok and result.figures == ()
    assert "took longer than 5 s to draw" in result.stderr
    assert plots.execute("kept").value_repr == "1"
