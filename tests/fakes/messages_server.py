"""A loopback server speaking Anthropic's Messages API (``POST /v1/messages``).

Streaming replies follow the documented SSE sequence: message_start (with input
and cache usage), content_block_start, content_block_delta..., content_block_stop,
message_delta (stop reason, output usage), message_stop. Non-streaming requests
get the plain JSON message. Errors use the API's error envelope.
"""

from __future__ import annotations

import itertools
from typing import Any

from .loopback import (
    CutStream,
    ErrorReply,
    LoopbackServer,
    TextReply,
    split_text,
    sse,
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_ids = itertools.count(1)


class MessagesServer(LoopbackServer):
    """The fake; ``url`` is what `AnthropicModel(base_url=...)` takes."""

    def paths(self) -> tuple[str, ...]:
        return ("/v1/messages",)

    def render_error(self, item: ErrorReply) -> dict[str, Any]:
        kind = item.error_type or _ERROR_TYPES.get(item.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": item.message}}

    def render_json(self, item: TextReply, body: Any) -> dict[str, Any]:
        return {
            "id": f"msg_{next(_ids)}",
            "type": "message",
            "role": "assistant",
            "model": _model(body),
            "content": [{"type": "text", "text": item.text}],
            "stop_reason": item.stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": item.input_tokens,
                "output_tokens": item.output_tokens,
                "cache_creation_input_tokens": item.cache_write_tokens,
                "cache_read_input_tokens": item.cache_read_tokens,
            },
        }

    def render_events(self, item: TextReply | CutStream, body: Any) -> list[bytes]:
        usage = item if isinstance(item, TextReply) else TextReply(item.text)
        start = {
            "type": "message_start",
            "message": {
                "id": f"msg_{next(_ids)}",
                "type": "message",
                "role": "assistant",
                "model": _model(body),
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": usage.input_tokens,
                    "output_tokens": 1,
                    "cache_creation_input_tokens": usage.cache_write_tokens,
                    "cache_read_input_tokens": usage.cache_read_tokens,
                },
            },
        }
        frames = [
            sse(start, "message_start"),
            sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
            sse({"type": "ping"}, "ping"),
        ]
        pieces = split_text(item.text, usage.chunks)
        for piece in pieces:
            delta = {"type": "text_delta", "text": piece}
            frames.append(
                sse(
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                    "content_block_delta",
                )
            )
        if isinstance(item, CutStream):
            return frames
        frames += [
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": item.stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": item.output_tokens},
                },
                "message_delta",
            ),
            sse({"type": "message_stop"}, "message_stop"),
        ]
        return frames


def _model(body: Any) -> str:
    return str(body.get("model", "fake")) if isinstance(body, dict) else "fake"
