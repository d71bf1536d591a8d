"""`AnthropicModel`: Claude through the official `anthropic` SDK, streamed.

Prompt caching: the system prompt goes as a text block with
``cache_control: ephemeral``, and so does the newest message, so each step
reads the conversation prefix from the cache and writes only what is new.
Retries: the SDK's own retries are off (``max_retries=0``) and this adapter
retries 408/409/429/5xx/529 and dropped connections itself, honouring
``retry-after``, with a cap (``max_backoff_s``) that also keeps tests fast. A
stream that breaks after text was already delivered is not retried (the text
cannot be taken back); it surfaces as a retryable `ModelError`.
"""

from __future__ import annotations

import base64
import inspect
from collections.abc import AsyncIterator, Sequence
from typing import Any

from cavelite.errors import ModelError
from cavelite.models.base import (
    Message,
    ModelReply,
    RetryNotice,
    SDKModel,
    alternating,
    retrying_stream,
)
from cavelite.usage import Usage

_RETRYABLE_STATUS = {408, 409, 429}


class AnthropicModel(SDKModel):
    """A Claude model. ``options`` (temperature, top_p, stop_sequences...) go to the API as is.

    ``api_key``/``base_url`` default, like the SDK, to ``ANTHROPIC_API_KEY`` and
    ``ANTHROPIC_BASE_URL``. ``stream=False`` asks for one JSON reply instead of SSE.
    Images in messages (figures, ``CaveLite(show_figures=True)``) go as image blocks.
    """

    accepts_images = True

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int = 4096,
        stream: bool = True,
        cache: bool = True,
        max_retries: int = 4,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout: float = 600.0,
        **options: Any,
    ) -> None:
        super().__init__(
            model, api_key=api_key, base_url=base_url, max_tokens=max_tokens, stream=stream,
            max_retries=max_retries, initial_backoff_s=initial_backoff_s,
            max_backoff_s=max_backoff_s, timeout=timeout, options=options,
        )
        self.cache = cache

    def _new_client(self) -> Any:
        import anthropic  # imported here: importing cavelite stays fast

        return anthropic.AsyncAnthropic(
            api_key=self.api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout
        )

    def request(self, system: str, messages: Sequence[Message]) -> dict[str, Any]:
        """The keyword arguments for ``messages.create``/``messages.stream``."""
        system_block: dict[str, Any] = {"type": "text", "text": system}
        if self.cache:
            system_block["cache_control"] = {"type": "ephemeral"}
        wire: list[dict[str, Any]] = []
        for message in alternating(messages):
            # The API refuses empty text blocks; an empty reply must not poison the history.
            blocks: list[dict[str, Any]] = [{"type": "text", "text": message.content or "(empty)"}]
            blocks += [{"type": "image", "source": {
                "type": "base64", "media_type": image.mime_type,
                "data": base64.b64encode(image.data).decode("ascii")}} for image in message.images]
            wire.append({"role": message.role, "content": blocks})
        if self.cache and wire:
            wire[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
        return {
            "model": self.name,
            "max_tokens": self.max_tokens,
            "system": [system_block],
            "messages": wire,
            **self.options,
        }

    def astream(
        self, system: str, messages: Sequence[Message]
    ) -> AsyncIterator[str | RetryNotice | ModelReply]:
        """Stream one Messages-API call (retried as described above): text deltas, then the reply."""
        request = self.request(system, messages)
        return retrying_stream(self.retry, lambda: self._attempt(request), map_error)

    async def _attempt(self, request: dict[str, Any]) -> AsyncIterator[str | ModelReply]:
        client = self._client_for_this_loop()
        if self.stream:
            request = _fit_to(client.messages.stream, request)
            async with client.messages.stream(**request) as stream:
                async for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield event.delta.text
                message = await stream.get_final_message()
        else:
            message = await client.messages.create(**_fit_to(client.messages.create, request))
            if _text_of(message):
                yield _text_of(message)
        if message.stop_reason is None:
            raise ModelError("the reply stream ended before message_stop", retryable=True,
                             kind="bad_stream")
        yield ModelReply(_text_of(message), _usage_of(message), message.stop_reason, message.model)


def map_error(exc: BaseException) -> ModelError | None:
    """Translate an SDK or transport error into `ModelError`; None for anything else (a bug)."""
    if isinstance(exc, ModelError):
        return exc
    import anthropic
    import httpx2

    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        kind = exc.type or "error"
        detail = exc.api_message or exc.message
        retryable = status in _RETRYABLE_STATUS or status >= 500
        should_retry = exc.response.headers.get("x-should-retry")
        if should_retry in ("true", "false"):
            retryable = should_retry == "true"
        message = f"Anthropic API error {status} ({kind}): {detail}"
        return ModelError(message, status=status, retryable=retryable)
    if isinstance(exc, anthropic.APITimeoutError):
        return ModelError(f"the Anthropic API timed out: {exc.message}", retryable=True, kind="timeout")
    if isinstance(exc, anthropic.APIConnectionError):
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        return ModelError(f"cannot reach the Anthropic API: {exc.message}{cause}", retryable=True,
                          kind="connection")
    if isinstance(exc, httpx2.TransportError):  # a stream cut mid-body surfaces raw
        return ModelError(f"the connection to the Anthropic API broke: {exc}", retryable=True,
                          kind="connection")
    if isinstance(exc, anthropic.AnthropicError):
        return ModelError(f"Anthropic SDK error: {exc}", kind="bad_stream")
    return None


def _fit_to(method: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Move options the SDK method has no parameter for (``temperature`` in recent
    SDKs, new API fields in old ones) into ``extra_body``, so they still reach the API."""
    accepted = set(inspect.signature(method).parameters)
    fitted = {key: value for key, value in request.items() if key in accepted}
    extra = {key: value for key, value in request.items() if key not in accepted}
    if extra:
        fitted["extra_body"] = {**extra, **fitted.get("extra_body", {})}
    return fitted


def _text_of(message: Any) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def _usage_of(message: Any) -> Usage:
    usage = message.usage
    return Usage(
        input_tokens=usage.input_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        cache_read_tokens=getattr(usage, "cache_read_input_tokens", None) or 0,
        cache_write_tokens=getattr(usage, "cache_creation_input_tokens", None) or 0,
    )
