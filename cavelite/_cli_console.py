"""The CLI's one console: text it prints can never drive the user's terminal.

Everything the CLI shows passes through a `TerminalConsole`: cell output,
values, errors, variable summaries, the model's text, and cavelite's own
lines. rich's `Text` drops only a few control characters (BEL, BS, VT, FF,
CR) and keeps ESC, so a cell that prints ``ESC ] 52 ; ...`` would set the
user's clipboard, retitle the window or clear the screen and draw a fake
answer. Here every C0 and C1 control character except newline and tab in
the *text* of what is rendered is replaced by a visible stand-in before it
reaches the terminal: the Unicode control pictures for C0 and DEL (ESC shows
as ``␛``, CR as ``␍``), ``\\x9b``-style escapes for C1. The escape sequences
rich writes itself (colours, the live view's cursor moves) are separate
segments and are untouched.

It is done once, on the segments rich is about to write, because the text
comes in through many renderables (`Text`, `Syntax`, `Markdown`, tables,
the live view, exception messages); any renderable added later is covered.
The ``--json`` record needs no stand-ins: JSON escapes C0 itself, and
`json_text` escapes C1 as well.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Span, Text

# C0 except \t and \n, DEL, and C1 (U+0080-U+009F: CSI, OSC, DCS... on terminals that honour
# them in UTF-8).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _stand_in(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ ... ␟ (␛ for ESC, ␍ for CR)
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"\\x{code:02x}"


def visible_controls(text: str) -> str:
    """``text`` with every control character but newline and tab made visible (and inert)."""
    return _CONTROLS.sub(_stand_in, text) if _CONTROLS.search(text) else text


def _visible_text(text: Text) -> Text:
    """A copy of ``text`` with its controls made visible, its styles kept on the same characters."""
    plain = text.plain
    if not _CONTROLS.search(plain):
        return text
    starts, pieces, at = [], [], 0
    for char in plain:
        starts.append(at)
        piece = _stand_in_char(char) if _CONTROLS.match(char) else char
        pieces.append(piece)
        at += len(piece)
    starts.append(at)
    shown = text.copy()
    shown.plain = "".join(pieces)
    shown.spans = [Span(starts[span.start], starts[span.end], span.style) for span in text.spans
                   if span.end <= len(plain)]
    return shown


def _stand_in_char(char: str) -> str:
    return _stand_in(_CONTROLS.match(char))  # type: ignore[arg-type]


class TerminalConsole(Console):
    """A rich `Console` whose rendered text holds no control character but ``\\n`` and ``\\t``."""

    def render(self, renderable: RenderableType,
               options: ConsoleOptions | None = None) -> Iterable[Segment]:
        # Text and strings are made visible before they are laid out (so wrapping counts the
        # stand-ins); the segments are checked again for what other renderables produce.
        if isinstance(renderable, Text):
            renderable = _visible_text(renderable)
        elif isinstance(renderable, str):
            renderable = visible_controls(renderable)
        for segment in super().render(renderable, options):
            # rich's own control segments (cursor moves, bells it chose) carry `control`.
            if segment.control is None and _CONTROLS.search(segment.text):
                yield Segment(visible_controls(segment.text), segment.style)
            else:
                yield segment


def json_text(record: Any) -> str:
    """``record`` as indented JSON that is safe on a terminal: C0, DEL and C1 escaped."""
    text = json.dumps(record, indent=2, ensure_ascii=False)
    # json escapes C0 itself; DEL and C1 pass through with ensure_ascii=False.
    return re.sub("[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text)
