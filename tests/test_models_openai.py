"""OpenAIModel through the real `openai` SDK, over HTTP, against a loopback chat-completions API."""

from __future__ import annotations

import asyncio

import openai
import pytest

from cavelite import CaveLite, ModelError, Usage
from cavelite.models import Message, ModelReply, OpenAIModel

FAST = {"max_backoff_s": 0.001, "initial_backoff_s": 0.001}


def model_for(server, **options) -> OpenAIModel:
    return OpenAIModel("qwen-test", base_url=server.url, api_key="test-key", **FAST, **options)


def collect(model: OpenAIModel, system: str = "sys", messages=None) -> list:
    messages = messages or [Message("user", "hi")]

    async def run() -> list:
        try:
            return [item async for item in model.astream(system, messages)]
        finally:
            await model.aclose()

    return asyncio.run(run())


def test_streams_deltas_and_takes_usage_from_the_last_chunk(openai_api):
    openai_api.reply(
        "Streaming from a compatible server.",
        input_tokens=40,
        output_tokens=9,
        cache_read_tokens=1000,
        chunks=5,
    )
    items = collect(model_for(openai_api))
    deltas, final = items[:-1], items[-1]
    assert len(deltas) == 5
    assert "".join(deltas) == "Streaming from a compatible server."
    assert isinstance(final, ModelReply)
    assert final.stop_reason == "stop"
    # prompt_tokens (1040) includes the cached 1000: they are split apart.
    assert final.usage == Usage(input_tokens=40, output_tokens=9, cache_read_tokens=1000)


def test_request_asks_for_usage_and_sends_system_first(openai_api):
    openai_api.reply("ok")
    history = [
        Message("user", "a"),
        Message("user", "b"),
        Message("assistant", "c"),
        Message("user", "d"),
    ]
    collect(model_for(openai_api, temperature=0.1, max_tokens=99), "Be exact.", history)
    (request,) = openai_api.requests
    body = request.body
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer test-key"
    assert body["model"] == "qwen-test"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.1
    assert body["max_tokens"] == 99
    assert body["messages"] == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "d"},
    ]


def test_plain_json_when_streaming_is_off(openai_api):
    openai_api.reply("one piece", input_tokens=5, output_tokens=2)
    items = collect(model_for(openai_api, stream=False))
    assert items == ["one piece", items[-1]]
    assert items[-1].usage == Usage(input_tokens=5, output_tokens=2)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried(openai_api, status):
    openai_api.error(status, "busy", retry_after="0")
    openai_api.reply("recovered")
    assert collect(model_for(openai_api))[-1].text == "recovered"
    assert len(openai_api.requests) == 2


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (401, False), (404, False), (429, True), (500, True)]
)
def test_errors_map_to_model_error(openai_api, status, retryable):
    for _ in range(2):
        openai_api.error(status, f"status {status}")
    with pytest.raises(ModelError) as info:
        collect(model_for(openai_api, max_retries=1))
    assert info.value.status == status
    assert info.value.retryable is retryable
    assert isinstance(info.value.__cause__, openai.APIStatusError)


def test_stream_cut_after_text_is_not_silently_retried(openai_api):
    openai_api.cut("half a rep")
    with pytest.raises(ModelError) as info:
        collect(model_for(openai_api))
    assert info.value.retryable
    assert len(openai_api.requests) == 1


def test_sync_complete_across_event_loops(openai_api):
    model = model_for(openai_api)
    for text in ("first loop", "second loop"):
        openai_api.reply(text)
        assert model.complete("sys", [Message("user", "hi")]).text == text


def test_agent_through_a_compatible_endpoint(openai_api):
    openai_api.reply("```python\nwords = 'to be or not to be'.split()\nlen(words)\n```")
    openai_api.reply("There are 6 words.", input_tokens=50, output_tokens=6, cache_read_tokens=900)
    with CaveLite(model_for(openai_api)) as agent:
        reply = agent.chat("How many words?")
    assert reply.completed and reply.text == "There are 6 words."
    assert reply.usage.cache_read_tokens == 900
    second = openai_api.requests[1].body["messages"]
    assert second[0]["role"] == "system"
    assert "[value] 6" in second[-1]["content"]


def test_missing_openai_package_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openai", None)  # forces the ImportError path
    with pytest.raises(ModelError, match=r"pip install 'cavelite\[openai\]'"):
        OpenAIModel("any", base_url="http://127.0.0.1:9").complete("sys", [Message("user", "hi")])
