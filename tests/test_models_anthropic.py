"""AnthropicModel through the real `anthropic` SDK, over HTTP, against a loopback Messages API."""

from __future__ import annotations

import asyncio

import anthropic
import pytest

from cavelite import CaveLite, ModelError, StopReason, Usage
from cavelite.models import AnthropicModel, Message, ModelReply
from cavelite.models.base import RetryPolicy

FAST = {"max_backoff_s": 0.001, "initial_backoff_s": 0.001}


def model_for(server, **options) -> AnthropicModel:
    return AnthropicModel("claude-test", api_key="test-key", base_url=server.url, **FAST, **options)


def collect(model: AnthropicModel, system: str = "sys", messages=None) -> list:
    messages = messages or [Message("user", "hi")]

    async def run() -> list:
        try:
            return [item async for item in model.astream(system, messages)]
        finally:
            await model.aclose()

    return asyncio.run(run())


def test_streams_text_deltas_then_a_reply_with_usage_and_cache_counts(messages_api):
    messages_api.reply(
        "Hello from the fake.",
        input_tokens=21,
        output_tokens=7,
        cache_read_tokens=1200,
        cache_write_tokens=300,
        chunks=4,
    )
    items = collect(model_for(messages_api))
    deltas, final = items[:-1], items[-1]
    assert len(deltas) == 4 and all(isinstance(d, str) for d in deltas)
    assert "".join(deltas) == "Hello from the fake."
    assert isinstance(final, ModelReply)
    assert final.text == "Hello from the fake."
    assert final.stop_reason == "end_turn"
    assert final.usage == Usage(
        input_tokens=21, output_tokens=7, cache_read_tokens=1200, cache_write_tokens=300
    )


def test_request_caches_the_system_prompt_and_the_newest_message(messages_api):
    messages_api.reply("ok")
    model = model_for(messages_api, temperature=0.2, max_tokens=321)
    history = [
        Message("user", "first"),
        Message("assistant", "answer"),
        Message("user", "second"),
        Message("user", "third"),  # consecutive user turns are merged for the API
    ]
    collect(model, "You are careful.", history)
    (request,) = messages_api.requests
    body = request.body
    assert request.path == "/v1/messages"
    assert body["model"] == "claude-test"
    assert body["stream"] is True
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 321
    assert body["system"] == [
        {"type": "text", "text": "You are careful.", "cache_control": {"type": "ephemeral"}}
    ]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    last = body["messages"][-1]["content"][-1]
    assert last["text"] == "second\n\nthird"
    assert last["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in body["messages"][0]["content"][0]
    assert "test-key" in (request.headers.get("x-api-key", "") + request.headers.get("authorization", ""))


def test_an_empty_reply_in_the_history_is_sent_as_a_placeholder(messages_api):
    messages_api.reply("ok")
    history = [Message("user", "hi"), Message("assistant", ""), Message("user", "again")]
    collect(model_for(messages_api), "sys", history)
    sent = messages_api.requests[0].body["messages"]
    assert sent[1]["content"][0]["text"] == "(empty)"


def test_plain_json_replies_when_streaming_is_off(messages_api):
    messages_api.reply("A whole reply at once.", input_tokens=3, output_tokens=4)
    items = collect(model_for(messages_api, stream=False))
    assert items[0] == "A whole reply at once."
    assert items[-1].usage == Usage(input_tokens=3, output_tokens=4)
    assert "stream" not in messages_api.requests[0].body


def test_sync_complete_helper(messages_api):
    messages_api.reply("sync works")
    reply = model_for(messages_api).complete("sys", [Message("user", "hi")])
    assert reply.text == "sync works"


def test_429_with_retry_after_is_retried(messages_api):
    messages_api.error(429, "slow down", retry_after="0")
    messages_api.reply("after the wait")
    items = collect(model_for(messages_api))
    assert items[-1].text == "after the wait"
    assert len(messages_api.requests) == 2


@pytest.mark.parametrize("status", [500, 503, 529])
def test_server_errors_and_overload_are_retried(messages_api, status):
    messages_api.error(status, "try again")
    messages_api.error(status, "try again")
    messages_api.reply("third time lucky")
    items = collect(model_for(messages_api))
    assert items[-1].text == "third time lucky"
    assert len(messages_api.requests) == 3


def test_overloaded_until_retries_run_out(messages_api):
    for _ in range(3):
        messages_api.error(529, "Overloaded")
    with pytest.raises(ModelError) as info:
        collect(model_for(messages_api, max_retries=2))
    assert info.value.status == 529
    assert info.value.retryable
    assert "overloaded_error" in str(info.value)
    assert isinstance(info.value.__cause__, anthropic.APIStatusError)
    assert len(messages_api.requests) == 3
    assert messages_api.pending == 0


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (413, False),
        (429, True),
        (500, True),
        (529, True),
    ],
)
def test_every_status_maps_to_model_error(messages_api, status, retryable):
    messages_api.push(*[])  # nothing queued besides the errors below
    for _ in range(3):
        messages_api.error(status, f"status {status}")
    with pytest.raises(ModelError) as info:
        collect(model_for(messages_api, max_retries=1))
    assert info.value.status == status
    assert info.value.retryable is retryable
    assert isinstance(info.value.__cause__, anthropic.APIStatusError)
    assert len(messages_api.requests) == (2 if retryable else 1)


def test_server_can_forbid_retries(messages_api):
    messages_api.error(500, "do not retry", headers={"x-should-retry": "false"})
    with pytest.raises(ModelError) as info:
        collect(model_for(messages_api))
    assert not info.value.retryable
    assert len(messages_api.requests) == 1


def test_stream_cut_after_text_is_a_retryable_error_not_a_silent_retry(messages_api):
    messages_api.cut("I will now comp")
    messages_api.reply("never requested")
    seen: list = []

    async def run() -> None:
        model = model_for(messages_api)
        try:
            async for item in model.astream("sys", [Message("user", "hi")]):
                seen.append(item)
        finally:
            await model.aclose()

    with pytest.raises(ModelError) as info:
        asyncio.run(run())
    assert info.value.retryable
    assert "".join(seen) == "I will now comp"
    assert len(messages_api.requests) == 1


def test_stream_cut_before_any_text_is_retried(messages_api):
    messages_api.cut("")
    messages_api.reply("second attempt")
    items = collect(model_for(messages_api))
    assert items[-1].text == "second attempt"
    assert len(messages_api.requests) == 2


def test_unreachable_server_is_a_retryable_model_error(messages_api):
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = AnthropicModel(
        "claude-test", api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=1, **FAST
    )
    with pytest.raises(ModelError) as info:
        collect(model)
    assert info.value.retryable
    assert info.value.status is None


def test_environment_supplies_key_and_base_url(messages_api, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", messages_api.url)
    messages_api.reply("from env")
    items = collect(AnthropicModel("claude-test", **FAST))
    assert items[-1].text == "from env"
    headers = messages_api.requests[0].headers
    assert "env-key" in headers.get("x-api-key", "") + headers.get("authorization", "")


def test_one_model_serves_several_event_loops(messages_api):
    model = model_for(messages_api)
    for text in ("loop one", "loop two"):
        messages_api.reply(text)
        assert model.complete("sys", [Message("user", "hi")]).text == text


def test_retry_policy_honours_retry_after_within_the_cap():
    policy = RetryPolicy(max_retries=3, initial_backoff_s=0.5, max_backoff_s=10.0)
    assert policy.delay(0, retry_after=4.0) == 4.0
    assert policy.delay(0, retry_after=120.0) == 10.0
    assert 0.375 <= policy.delay(0, retry_after=None) <= 0.5
    assert policy.delay(10, retry_after=None) == 10.0


# -- the agent over the real SDK ---------------------------------------------------------------


def test_agent_through_the_sdk_keeps_the_system_prompt_byte_stable(messages_api):
    messages_api.reply(
        "```python\ntotal = sum(range(10))\ntotal\n```",
        input_tokens=500,
        output_tokens=20,
        cache_write_tokens=1000,
    )
    messages_api.error(529, "Overloaded")  # retried transparently mid-chat
    messages_api.reply("The total is 45.", input_tokens=60, output_tokens=8, cache_read_tokens=1000)
    messages_api.reply("Still 45.", input_tokens=70, output_tokens=3, cache_read_tokens=1100)
    # check_completion off: "Sure?" is answered without code, which the guard would query once
    with CaveLite(model_for(messages_api), instructions="Be exact.", check_completion=False) as agent:
        reply = agent.chat("Add the numbers 0 to 9.")
        later = agent.chat("Sure?")
        assert agent.retrieve("total") == 45

    assert reply.stop_reason is StopReason.COMPLETED
    assert reply.text == "The total is 45."
    assert reply.usage == Usage(
        input_tokens=560, output_tokens=28, cache_read_tokens=1000, cache_write_tokens=1000
    )
    assert later.completed and later.steps == 1
    first, _, second, third = messages_api.requests
    assert first.body["system"][0]["text"].startswith("Be exact.")
    assert first.body["system"] == second.body["system"] == third.body["system"]
    observation = second.body["messages"][-1]["content"][0]["text"]
    assert "[value] 45" in observation and "total (int): 45" in observation
    # Earlier turns are sent unchanged, so the cached prefix stays valid.
    assert (
        second.body["messages"][0]["content"][0]["text"] == (first.body["messages"][0]["content"][0]["text"])
    )
    assert len(third.body["messages"]) == 5


def test_agent_stops_with_model_error_and_keeps_the_runtime(messages_api):
    messages_api.reply("```python\nkept = [1, 2, 3]\n```")
    messages_api.error(401, "invalid x-api-key")
    with CaveLite(model_for(messages_api)) as agent:
        reply = agent.chat("store a list")
        assert reply.stop_reason is StopReason.MODEL_ERROR
        assert "401" in reply.detail and "invalid x-api-key" in reply.detail
        assert agent.retrieve("kept") == [1, 2, 3]


def test_retry_after_header_is_read_from_the_sdk_error(messages_api):
    from cavelite.models.base import retry_after_of

    messages_api.error(429, "slow down", retry_after="7")
    messages_api.error(429, "slow down", headers={"retry-after-ms": "1500", "retry-after": "9"})
    for expected in (7.0, 1.5):
        with pytest.raises(ModelError) as info:
            collect(model_for(messages_api, max_retries=0))
        assert retry_after_of(info.value.__cause__) == expected
