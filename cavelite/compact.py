"""Keeping a long conversation's prompt bounded: old turns are shortened, recent ones kept whole.

Every step sends the whole history, so a 20-turn chat would otherwise grow
the prompt turn after turn. What an old turn said is mostly still true in the
runtime (its variables are in the current state block), so for turns older
than the last few: the state block goes (the newest one describes the present),
the user's request stays, cells and answers are clipped, observations keep
their first line and what changed. The newest turns are never touched, and
the function is idempotent, so compacting at the start of every chat is safe.
"""

from __future__ import annotations

from collections.abc import Sequence

from cavelite import prompt
from cavelite.models.base import Message

MAX_OLD_CELL = 400
MAX_OLD_OBSERVATION = 240
EARLIER = "[earlier turn] "


def compact(history: Sequence[Message], keep_turns: int) -> list[Message]:
    """``history`` with every turn before the last ``keep_turns`` turns shortened."""
    starts = [i for i, m in enumerate(history) if m.role == "user" and _is_turn_start(m.content)]
    if keep_turns < 1 or len(starts) <= keep_turns:
        return list(history)
    boundary = starts[-keep_turns]
    old = [_shorten(m, i in starts) for i, m in enumerate(history[:boundary])]
    return old + list(history[boundary:])


def _is_turn_start(text: str) -> bool:
    return text.startswith((prompt.STATE_HEADER, EARLIER))


def _shorten(message: Message, turn_start: bool) -> Message:
    text = message.content
    if message.role == "assistant":
        return Message("assistant", prompt.clip(text, MAX_OLD_CELL))
    if turn_start:
        if text.startswith(EARLIER):
            return message
        request = text.split("\n\n", 1)[1] if "\n\n" in text else text
        return Message("user", EARLIER + request)
    if len(text) <= MAX_OLD_OBSERVATION:
        return message
    head, _, rest = text.partition("\n")
    changed = ""
    if "[variables created or changed]" in rest:
        names = [line[2:].split(" (", 1)[0] for line in rest.split("[variables created or changed]\n", 1)[1]
                 .splitlines() if line.startswith("- ")]
        changed = prompt.clip("\n[changed] " + ", ".join(names), MAX_OLD_OBSERVATION // 3)
    room = max(0, MAX_OLD_OBSERVATION - len(head) - len(changed) - len(" [...]") - 1)
    body = rest[:room].rstrip()
    return Message("user", f"{head}\n{body} [...]{changed}")  # within the bound: compacting again keeps it
