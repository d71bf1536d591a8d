"""ScriptedModel and the model seam: the offline fake users test their own agents with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from cavelite import ModelError, Usage
from cavelite.models import Message, Model, ModelReply, ScriptedModel
from cavelite.models.base import alternating, run_sync


def stream(model: Model, system: str, messages: Sequence[Message]) -> list:
    async def run() -> list:
        return [item async for item in model.astream(system, messages)]

    return asyncio.run(run())


def test_replays_replies_in_a_few_chunks_with_estimated_usage():
    model = ScriptedModel(["a reply of some length", "second"], chunks=3)
    items = stream(model, "system prompt", [Message("user", "hello there")])
    deltas, final = items[:-1], items[-1]
    assert len(deltas) == 3 and "".join(deltas) == "a reply of some length"
    assert isinstance(final, ModelReply) and final.text == "a reply of some length"
    assert final.usage.output_tokens == len("a reply of some length") // 4 + 1
    assert final.usage.input_tokens == 3
    assert model.remaining == 1


def test_simulated_cache_rewards_a_stable_system_prompt():
    model = ScriptedModel(["one", "two", "three"])
    first = model.complete("the same system", [Message("user", "hi")])
    second = model.complete("the same system", [Message("user", "hi")])
    changed = model.complete("a different system", [Message("user", "hi")])
    assert first.usage.cache_write_tokens > 0 and first.usage.cache_read_tokens == 0
    assert second.usage.cache_read_tokens == first.usage.cache_write_tokens
    assert changed.usage.cache_read_tokens == 0


def test_callable_script_sees_the_conversation():
    seen: list[tuple[Message, ...]] = []

    def script(messages):
        seen.append(messages)
        return f"you said {len(messages)} thing(s)"

    model = ScriptedModel(script)
    reply = model.complete("sys", [Message("user", "a"), Message("assistant", "b"), Message("user", "c")])
    assert reply.text == "you said 3 thing(s)"
    assert seen[0][-1] == Message("user", "c")
    assert model.calls[0].system == "sys" and model.remaining is None


def test_scripted_exceptions_and_running_out():
    model = ScriptedModel([ModelError("rate limited", status=429, retryable=True)])
    with pytest.raises(ModelError, match="rate limited"):
        model.complete("sys", [Message("user", "hi")])
    with pytest.raises(ModelError, match="ran out of replies after 1 call"):
        model.complete("sys", [Message("user", "hi")])


def test_alternating_merges_consecutive_turns():
    merged = alternating(
        [
            Message("user", "a"),
            Message("user", "b"),
            Message("assistant", "c"),
            Message("assistant", "d"),
            Message("user", "e"),
        ]
    )
    assert merged == [Message("user", "a\n\nb"), Message("assistant", "c\n\nd"), Message("user", "e")]


def test_a_custom_model_needs_only_astream():
    class Echo(Model):
        name = "echo"

        async def astream(self, system: str, messages: Sequence[Message]) -> AsyncIterator[str | ModelReply]:
            yield messages[-1].content
            yield ModelReply(messages[-1].content, Usage(1, 1))

    assert Echo().complete("sys", [Message("user", "ping")]).text == "ping"
    assert repr(Echo()) == "Echo('echo')"


def test_sync_helpers_work_inside_a_running_loop():
    model = ScriptedModel(["from a nested loop"])

    async def main() -> str:
        return model.complete("sys", [Message("user", "hi")]).text

    assert asyncio.run(main()) == "from a nested loop"

    async def boom() -> None:
        raise ValueError("propagates")

    async def outer() -> None:
        run_sync(boom())

    with pytest.raises(ValueError, match="propagates"):
        asyncio.run(outer())
