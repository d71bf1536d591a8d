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


# -- real servers' quirks ----------------------------------------------------------------------


def test_a_stream_ending_in_done_without_a_finish_reason_is_a_whole_reply(openai_api):
    from fakes.loopback import TextReply

    openai_api.push(TextReply("All of this text counts.", finish=False, chunks=4))
    items = collect(model_for(openai_api))
    assert "".join(i for i in items if isinstance(i, str)) == "All of this text counts."
    final = items[-1]
    assert isinstance(final, ModelReply) and final.text == "All of this text counts."
    assert final.stop_reason is None
    assert len(openai_api.requests) == 1  # not retried, not refused


def test_an_empty_stream_falls_back_to_one_plain_call(openai_api):
    openai_api.reply("")  # 200, a role chunk, a finish reason, [DONE]: no text at all
    openai_api.reply("the plain call answered", input_tokens=7, output_tokens=3)
    items = collect(model_for(openai_api))
    assert items[-1].text == "the plain call answered"
    assert items[-1].usage == Usage(input_tokens=7, output_tokens=3)
    streamed, plain = openai_api.requests
    assert streamed.body["stream"] is True
    assert "stream" not in plain.body and "stream_options" not in plain.body
    assert plain.body["messages"] == streamed.body["messages"]


def test_empty_both_ways_is_an_empty_reply_error_naming_the_real_cause(openai_api):
    openai_api.reply("")
    openai_api.reply("")
    with pytest.raises(ModelError) as info:
        collect(model_for(openai_api))
    assert info.value.kind == "empty_reply" and not info.value.retryable
    message = str(info.value)
    assert "answered, but with no text" in message and openai_api.url in message
    assert "cannot reach" not in message
    assert len(openai_api.requests) == 2  # one stream, one plain call, no retry loop


def test_no_stream_switch_sends_plain_requests(openai_api):
    openai_api.reply("whole")
    openai_api.reply("")
    assert collect(model_for(openai_api, stream=False))[-1].text == "whole"
    empty = collect(model_for(openai_api, stream=False))  # empty and not streamed: no fallback
    assert empty[-1].text == "" and len(openai_api.requests) == 2
    assert all("stream" not in r.body for r in openai_api.requests)


def test_retries_are_announced_with_why_and_after_how_long(openai_api, caplog):
    from cavelite.models import RetryNotice

    openai_api.error(503, "loading model", retry_after="0")
    openai_api.error(429, "slow down", retry_after="0")
    openai_api.reply("finally")
    with caplog.at_level("INFO", logger="cavelite"):
        items = collect(model_for(openai_api, max_retries=3))
    notices = [i for i in items if isinstance(i, RetryNotice)]
    assert [(n.attempt, n.max_retries, n.status, n.delay_s) for n in notices] == [(1, 3, 503, 0.0),
                                                                                    (2, 3, 429, 0.0)]
    assert "loading model" in notices[0].reason and "503" in notices[0].reason
    assert all(n.elapsed_s > 0 for n in notices)
    assert items[-1].text == "finally"
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and all(r.levelname == "INFO" for r in retries)
    assert not [r for r in caplog.records if r.levelno >= 30]  # nothing at WARNING: it worked


def test_connection_errors_say_so(openai_api):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = OpenAIModel("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, **FAST)
    with pytest.raises(ModelError) as info:
        collect(model)
    assert info.value.kind == "connection" and info.value.retryable
    assert "cannot reach" in str(info.value)


# -- the server's model list -------------------------------------------------------------------


def test_a_wrong_model_name_is_caught_before_the_call_with_the_list(openai_api):
    openai_api.models = ["qwen2.5-coder-0.5b", "llama-3.2-1b"]
    with pytest.raises(ModelError) as info:
        collect(model_for(openai_api))  # asks for "qwen-test"
    assert info.value.kind == "unknown_model"
    assert "'qwen-test'" in str(info.value) and "qwen2.5-coder-0.5b, llama-3.2-1b" in str(info.value)
    assert openai_api.requests == []  # no chat call was made
    assert [r.path for r in openai_api.model_lookups] == ["/v1/models"]


def test_a_listed_model_is_checked_once_per_model(openai_api):
    openai_api.models = ["qwen-test"]
    model = model_for(openai_api)
    for text in ("one", "two"):
        openai_api.reply(text)
        assert model.complete("sys", [Message("user", "hi")]).text == text
    assert len(openai_api.model_lookups) == 1
    assert model.list_models() == ["qwen-test"]


def test_servers_without_a_model_list_are_not_checked(openai_api):
    openai_api.reply("fine")  # models is None: GET /v1/models answers 404
    assert collect(model_for(openai_api))[-1].text == "fine"
    assert model_for(openai_api).list_models() is None
    lookups = len(openai_api.model_lookups)
    openai_api.models = ["something-else"]
    openai_api.reply("unchecked")
    assert collect(model_for(openai_api, check_model=False))[-1].text == "unchecked"
    assert len(openai_api.model_lookups) == lookups  # check_model=False: no lookup at all
