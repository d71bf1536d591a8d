"""`ScriptedModel`: a model that replays replies you wrote, for tests and offline demos.

It streams like a real model (a few deltas, then a `ModelReply`) and reports
estimated usage, including a simulated prompt cache: the system prompt counts
as a cache write the first time it is seen and a cache read when it comes back
byte for byte, which is what a provider cache would do.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from cavelite.errors import ModelError
from cavelite.models.base import Message, Model, ModelReply, RetryNotice, estimate_tokens
from cavelite.usage import Usage

ScriptItem = str | BaseException
Script = Sequence[ScriptItem] | Callable[[Sequence[Message]], ScriptItem]


@dataclass(frozen=True)
class ScriptedCall:
    """What the model was shown on one call: for tests that check the prompt."""

    system: str
    messages: tuple[Message, ...]


class ScriptedModel(Model):
    """Replays ``replies`` in order, or asks a callable for each reply.

    ``replies`` is a list of strings (an exception instance in the list is
    raised at that call, to script provider failures), or a callable that
    receives the conversation (a tuple of `Message`) and returns the next
    reply. When a list runs out, the call raises `ModelError`. It takes images
    (they are kept in `calls`, for tests of ``show_figures``).
    """

    accepts_images = True

    def __init__(self, replies: Script, *, chunks: int = 3, name: str = "scripted") -> None:
        self.name = name
        self.chunks = max(1, chunks)
        self.calls: list[ScriptedCall] = []
        self._script = replies if callable(replies) else list(replies)
        self._next = 0
        self._seen_systems: set[str] = set()
        self._lock = threading.Lock()  # agents in several threads may share one script

    @property
    def remaining(self) -> int | None:
        """Replies left in a list script (None for a callable)."""
        return None if callable(self._script) else len(self._script) - self._next

    def _take(self, messages: tuple[Message, ...]) -> ScriptItem:
        if callable(self._script):
            return self._script(messages)
        with self._lock:
            if self._next >= len(self._script):
                raise ModelError(f"ScriptedModel ran out of replies after {len(self._script)} call(s)")
            item = self._script[self._next]
            self._next += 1
            return item

    async def astream(
        self, system: str, messages: Sequence[Message]
    ) -> AsyncIterator[str | RetryNotice | ModelReply]:
        """Replay the next scripted reply in ``chunks`` deltas (or raise the scripted exception)."""
        conversation = tuple(messages)
        self.calls.append(ScriptedCall(system, conversation))
        item = self._take(conversation)
        if isinstance(item, BaseException):
            raise item
        if not isinstance(item, str):
            raise ModelError(f"ScriptedModel script gave {type(item).__name__}, expected str")
        size = max(1, -(-len(item) // self.chunks))
        for start in range(0, len(item), size):
            yield item[start : start + size]
        yield ModelReply(item, self._usage(system, conversation, item), "end_turn", self.name)

    def _usage(self, system: str, messages: tuple[Message, ...], text: str) -> Usage:
        system_tokens = estimate_tokens(system)
        rest = sum(estimate_tokens(m.content) for m in messages)
        with self._lock:
            cached = system in self._seen_systems
            self._seen_systems.add(system)
        return Usage(
            input_tokens=rest,
            output_tokens=estimate_tokens(text),
            cache_read_tokens=system_tokens if cached else 0,
            cache_write_tokens=0 if cached else system_tokens,
        )
