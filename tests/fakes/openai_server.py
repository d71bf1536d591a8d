"""A loopback server speaking the OpenAI-compatible chat-completions API.

``POST /v1/chat/completions``: JSON replies, or ``data:`` SSE chunks ending in
``[DONE]``; with ``stream_options.include_usage`` the last chunk before
``[DONE]`` carries usage (``prompt_tokens`` includes cached tokens, reported in
``prompt_tokens_details.cached_tokens``), as OpenAI does. ``GET /v1/models``
lists ``server.models`` (404 while it is None, as on servers that list nothing).

Quirks of real servers, scripted: ``TextReply(finish=False)`` ends the stream
with ``[DONE]`` but no finish reason (some llama.cpp builds); ``TextReply("")``
is a 200 stream that carries no text at all.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from .loopback import (
    CutStream,
    ErrorReply,
    LoopbackServer,
    TextReply,
    split_text,
    sse,
)

_ids = itertools.count(1)


class OpenAIServer(LoopbackServer):
    """The fake; ``url`` (ending in ``/v1``) is what `OpenAIModel(base_url=...)` takes."""

    @property
    def url(self) -> str:
        return self.origin + "/v1"

    def paths(self) -> tuple[str, ...]:
        return ("/v1/chat/completions",)

    def render_error(self, item: ErrorReply) -> dict[str, Any]:
        kind = item.error_type or ("rate_limit_exceeded" if item.status == 429 else "server_error")
        return {"error": {"message": item.message, "type": kind, "code": kind}}

    def render_json(self, item: TextReply, body: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant",
                                   "content": (item.text or None) if item.tool_calls else item.text}
        if item.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{next(_ids)}", "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                for c in item.tool_calls
            ]
        return {
            "id": f"chatcmpl-{next(_ids)}",
            "object": "chat.completion",
            "created": 0,
            "model": _model(body),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": ("tool_calls" if item.tool_calls else "stop") if item.finish
                    else None,
                }
            ],
            "usage": _usage(item),
        }

    def render_events(self, item: TextReply | CutStream, body: Any) -> list[bytes]:
        ident, model = f"chatcmpl-{next(_ids)}", _model(body)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return sse(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [choice],
                }
            )

        frames = [chunk({"role": "assistant", "content": ""})]
        chunks = item.chunks if isinstance(item, TextReply) else 3
        frames += [chunk({"content": piece}) for piece in split_text(item.text, chunks)]
        if isinstance(item, CutStream):
            return frames
        if item.finish:
            frames.append(chunk({}, "stop"))
        options = body.get("stream_options") if isinstance(body, dict) else None
        if isinstance(options, dict) and options.get("include_usage"):
            frames.append(
                sse(
                    {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": model,
                        "choices": [],
                        "usage": _usage(item),
                    }
                )
            )
        frames.append(sse("[DONE]"))
        return frames


def _usage(item: TextReply) -> dict[str, Any]:
    prompt = item.input_tokens + item.cache_read_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": item.output_tokens,
        "total_tokens": prompt + item.output_tokens,
        "prompt_tokens_details": {"cached_tokens": item.cache_read_tokens},
    }


def _model(body: Any) -> str:
    return str(body.get("model", "fake")) if isinstance(body, dict) else "fake"
