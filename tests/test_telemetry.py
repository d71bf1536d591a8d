"""OpenTelemetry spans of a chat (GenAI semantic conventions), read from the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cavelite import CaveLite, Runtime, StopReason
from cavelite.models import AnthropicModel, ScriptedModel
from cavelite.telemetry import CAPTURE_ENV

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider() -> Iterator[None]:
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # set before (a docs sample): listen to it too
        current.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    else:
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(tracer_provider)  # once per process: the API allows no other
    yield
    _EXPORTER.clear()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    _EXPORTER.clear()
    return _EXPORTER


@pytest.fixture(scope="module")
def shared() -> Iterator[Runtime]:
    runtime = Runtime(preload=("numpy", "pandas"), cell_timeout=20)
    yield runtime
    runtime.close()


def by_name(exporter: InMemorySpanExporter) -> dict[str, list]:
    found: dict[str, list] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def test_a_chat_is_an_agent_span_with_model_calls_and_cells_under_it(spans, shared) -> None:
    model = ScriptedModel(["```python\ntotal = 40 + 2\n```", "```python\n1 / 0\n```", "It is 42."])
    with CaveLite(model, runtime=shared) as agent:
        reply = agent.chat("What is it?")
    assert reply.stop_reason is StopReason.COMPLETED
    found = by_name(spans)
    [chat] = found["invoke_agent cavelite"]
    calls = found["chat scripted"]
    ok_cell, bad_cell = found["execute_tool python"]
    assert len(calls) == 3
    for child in (*calls, ok_cell, bad_cell):
        assert child.parent.span_id == chat.context.span_id
        assert child.context.trace_id == chat.context.trace_id
    assert chat.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert chat.attributes["cavelite.stop_reason"] == "completed" and chat.attributes["cavelite.steps"] == 3
    assert chat.attributes["gen_ai.usage.input_tokens"] == reply.usage.input_tokens
    assert chat.status.status_code is StatusCode.UNSET
    first = calls[0]
    assert first.kind is SpanKind.CLIENT and first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.request.model"] == "scripted"
    step_usage = reply.step_stats[0].usage
    assert first.attributes["gen_ai.usage.input_tokens"] == step_usage.input_tokens > 0
    assert first.attributes["gen_ai.usage.output_tokens"] == step_usage.output_tokens
    assert ok_cell.attributes["cavelite.cell.outcome"] == "ok"
    assert ok_cell.attributes["cavelite.cell.rolled_back"] is False
    assert ok_cell.attributes["gen_ai.tool.name"] == "python"
    assert bad_cell.attributes["cavelite.cell.outcome"] == "exception"
    assert bad_cell.attributes["error.type"] == "ZeroDivisionError"
    assert bad_cell.attributes["cavelite.cell.rolled_back"] is True
    assert bad_cell.status.status_code is StatusCode.ERROR
    # The code is not recorded unless the user opts in.
    assert "gen_ai.tool.call.arguments" not in ok_cell.attributes


def test_the_code_is_recorded_when_the_user_opts_in(spans, shared, monkeypatch) -> None:
    monkeypatch.setenv(CAPTURE_ENV, "true")
    with CaveLite(ScriptedModel(["```python\nx = 'traced'\n```", "done"]), runtime=shared) as agent:
        agent.chat("go")
    [cell] = by_name(spans)["execute_tool python"]
    assert cell.attributes["gen_ai.tool.call.arguments"] == "x = 'traced'"


def test_claude_calls_carry_the_usage_the_api_reported(spans, shared, messages_api) -> None:
    messages_api.reply("```python\nn = 1\n```", input_tokens=21, output_tokens=7, cache_read_tokens=1200,
                       cache_write_tokens=300)
    messages_api.reply("One.", input_tokens=30, output_tokens=2)
    model = AnthropicModel("claude-test", api_key="k", base_url=messages_api.url, max_backoff_s=0.001)
    with CaveLite(model, runtime=shared) as agent:
        agent.chat("count")
    found = by_name(spans)
    first, second = found["chat claude-test"]
    assert first.attributes["gen_ai.provider.name"] == "anthropic"
    assert (first.attributes["gen_ai.usage.input_tokens"], first.attributes["gen_ai.usage.output_tokens"],
            first.attributes["gen_ai.usage.cache_read.input_tokens"],
            first.attributes["gen_ai.usage.cache_creation.input_tokens"]) == (21, 7, 1200, 300)
    assert first.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert second.attributes["gen_ai.usage.input_tokens"] == 30
    [chat] = found["invoke_agent cavelite"]
    assert chat.attributes["gen_ai.usage.input_tokens"] == 51


def test_a_model_error_marks_the_call_and_the_chat(spans, shared, messages_api) -> None:
    messages_api.error(400, "bad request")
    model = AnthropicModel("claude-test", api_key="k", base_url=messages_api.url, max_backoff_s=0.001)
    with CaveLite(model, runtime=shared) as agent:
        reply = agent.chat("hi")
    assert reply.stop_reason is StopReason.MODEL_ERROR
    found = by_name(spans)
    [call] = found["chat claude-test"]
    [chat] = found["invoke_agent cavelite"]
    assert call.status.status_code is StatusCode.ERROR and "400" in call.status.description
    assert chat.attributes["cavelite.stop_reason"] == "model_error"
    assert chat.status.status_code is StatusCode.ERROR
    assert shared.execute("1 + 1").value_repr == "2"


def test_without_opentelemetry_nothing_is_imported_and_chats_work() -> None:
    script = textwrap.dedent("""
        import sys

        class NoOtel:
            def find_spec(self, name, path, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError("not installed")

        sys.meta_path.insert(0, NoOtel())
        from cavelite import CaveLite, Runtime, telemetry
        from cavelite.models import ScriptedModel

        with Runtime(preload=("numpy",)) as rt, CaveLite(
                ScriptedModel(["```python\\nx = 1\\n```", "ok"]), runtime=rt) as agent:
            reply = agent.chat("go")
        assert reply.completed and reply.cells[0].result.ok
        assert telemetry.chat_trace(agent.model) is telemetry.NO_TRACE
        assert not [m for m in sys.modules if m.startswith("opentelemetry")]
        print("no-otel-ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no-otel-ok"
