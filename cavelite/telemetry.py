"""OpenTelemetry traces of a chat, after the GenAI semantic conventions (``cavelite[otel]``).

With ``opentelemetry-api`` installed and a tracer provider configured, each
chat emits:

- ``invoke_agent cavelite`` (the chat): the model, the stop reason
  (``cavelite.stop_reason``), the steps and the chat's token usage;
- ``chat {model}`` per model call: ``gen_ai.request.model``,
  ``gen_ai.response.model``, ``gen_ai.usage.*`` tokens (cache reads and writes
  too), ``gen_ai.response.finish_reasons``, and the error on a failed call;
- ``execute_tool python`` per cell: ``cavelite.cell.outcome`` (ok, or the
  error kind), ``cavelite.cell.duration_s``, ``cavelite.cell.rolled_back``,
  ``error.type``, the number of figures; the code itself
  (``gen_ai.tool.call.arguments``) only when the user opts in, with the
  conventions' ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.

Without opentelemetry nothing is imported and every hook is a no-op method
of `NO_TRACE`; with it but no provider configured, spans are the API's
non-recording ones and no attribute is computed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cavelite.events import Reply
    from cavelite.models.base import Model, ModelReply
    from cavelite.runtime.results import CellResult

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_TRACER: list[Any] = []  # [the tracer, or None when opentelemetry is not installed]


def _tracer() -> Any:
    if not _TRACER:
        try:
            from opentelemetry import trace
        except ImportError:
            _TRACER.append(None)
        else:
            from cavelite import __version__

            # A proxy until a provider is set, then the provider's own: set it any time.
            _TRACER.append(trace.get_tracer("cavelite", __version__))
    return _TRACER[0]


def _provider(model: Model) -> str:
    name = type(model).__name__
    return {"AnthropicModel": "anthropic", "OpenAIModel": "openai"}.get(name, name.lower())


class NoTrace:
    """The hooks when there is nothing to trace to: each does nothing."""

    def model_call(self, step: int) -> Any:
        return None

    def model_done(self, span: Any, reply: ModelReply | None, error: Exception | None) -> None:
        return None

    def cell(self, step: int, code: str) -> Any:
        return None

    def cell_done(self, span: Any, result: CellResult | None, error: BaseException | None = None) -> None:
        return None

    def end(self, reply: Reply) -> None:
        return None


NO_TRACE = NoTrace()


class ChatTrace(NoTrace):
    """The spans of one chat: the agent span and, under it, model calls and cells."""

    def __init__(self, tracer: Any, model: Model) -> None:
        from opentelemetry import trace

        self._trace = trace
        self._tracer = tracer
        self._model = model.name
        self._provider = _provider(model)
        self._span = tracer.start_span(
            "invoke_agent cavelite", kind=trace.SpanKind.INTERNAL,
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "cavelite",
                        "gen_ai.provider.name": self._provider, "gen_ai.request.model": self._model})
        self._context = trace.set_span_in_context(self._span)
        self._capture = os.environ.get(CAPTURE_ENV, "").lower() == "true"
        self._ended = False

    def model_call(self, step: int) -> Any:
        return self._tracer.start_span(
            f"chat {self._model}", context=self._context, kind=self._trace.SpanKind.CLIENT,
            attributes={"gen_ai.operation.name": "chat", "gen_ai.provider.name": self._provider,
                        "gen_ai.request.model": self._model, "cavelite.step": step})

    def model_done(self, span: Any, reply: ModelReply | None, error: Exception | None) -> None:
        if span.is_recording():
            if reply is not None:
                usage = reply.usage
                span.set_attributes({
                    "gen_ai.response.model": reply.model or self._model,
                    "gen_ai.usage.input_tokens": usage.input_tokens,
                    "gen_ai.usage.output_tokens": usage.output_tokens,
                    "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
                    "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
                    "gen_ai.response.finish_reasons": [reply.stop_reason or "unknown"],
                })
            elif error is not None:
                self._failed(span, getattr(error, "kind", None) or type(error).__name__, str(error))
        span.end()

    def cell(self, step: int, code: str) -> Any:
        attributes: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "python",
                                      "gen_ai.tool.type": "function", "cavelite.step": step}
        if self._capture:
            attributes["gen_ai.tool.call.arguments"] = code
        return self._tracer.start_span("execute_tool python", context=self._context,
                                       kind=self._trace.SpanKind.INTERNAL, attributes=attributes)

    def cell_done(self, span: Any, result: CellResult | None, error: BaseException | None = None) -> None:
        if span.is_recording():
            if result is not None:
                failure = result.error
                span.set_attributes({
                    "cavelite.cell.outcome": "ok" if failure is None else failure.kind,
                    "cavelite.cell.duration_s": result.duration_s,
                    "cavelite.cell.rolled_back": result.rolled_back,
                    "cavelite.cell.figures": len(result.figures),
                })
                if failure is not None:
                    self._failed(span, failure.type, f"{failure.kind}: {failure.message}"[:500])
            elif error is not None:
                self._failed(span, type(error).__name__, str(error))
        span.end()

    def end(self, reply: Reply) -> None:
        if self._ended:
            return
        self._ended = True
        span = self._span
        if span.is_recording():
            span.set_attributes({
                "cavelite.stop_reason": reply.stop_reason.value,
                "cavelite.steps": reply.steps,
                "gen_ai.usage.input_tokens": reply.usage.input_tokens,
                "gen_ai.usage.output_tokens": reply.usage.output_tokens,
            })
            if reply.stop_reason.value in ("model_error", "runtime_error"):
                self._failed(span, reply.stop_reason.value, reply.detail)
        span.end()

    def _failed(self, span: Any, kind: str, message: str) -> None:
        span.set_attribute("error.type", kind)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, message))


def chat_trace(model: Model) -> NoTrace:
    """The hooks for one chat: `ChatTrace` when opentelemetry is installed, else `NO_TRACE`."""
    tracer = _tracer()
    return NO_TRACE if tracer is None else ChatTrace(tracer, model)
