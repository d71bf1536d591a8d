"""`OpenAIModel`: any OpenAI-compatible chat-completions endpoint, streamed.

Works with OpenAI, DeepSeek, Qwen, Kimi, Gemini's compatible endpoint, vLLM,
llama.cpp and Ollama. The ``openai`` SDK is an optional extra
(``pip install cavelite[openai]``), imported only when a request is made.
Usage comes from the final stream chunk (``stream_options.include_usage``);
``prompt_tokens`` includes cached tokens there, so cached tokens are moved to
``cache_read_tokens`` to match `Usage`'s non-overlapping convention.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

from cavelite.errors import ModelError
from cavelite.models.base import (
    Message,
    ModelReply,
    RetryNotice,
    SDKModel,
    alternating,
    estimate_tokens,
    retrying_stream,
    run_sync,
)
from cavelite.usage import Usage

_RETRYABLE_STATUS = {408, 409, 429}
log = logging.getLogger("cavelite.models")


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise ModelError(
            "OpenAIModel needs the optional 'openai' package: pip install 'cavelite[openai]'",
            kind="setup",
        ) from exc
    return openai


class OpenAIModel(SDKModel):
    """A chat-completions model. ``options`` (temperature, top_p, seed...) go to the API as is.

    ``api_key`` defaults to ``OPENAI_API_KEY``; local servers that need no key
    get a placeholder. ``base_url`` defaults to the SDK's (``OPENAI_BASE_URL``).
    ``stream=False`` asks for whole replies, for servers that stream badly.
    With ``check_model`` (the default) the first call reads the server's
    ``/v1/models`` and fails early, with the list, if the name is not on it;
    servers without such a list are not checked.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_tokens: int | None = None,
        stream: bool = True,
        max_retries: int = 4,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout: float = 600.0,
        check_model: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(
            model, api_key=api_key, base_url=base_url, max_tokens=max_tokens, stream=stream,
            max_retries=max_retries, initial_backoff_s=initial_backoff_s,
            max_backoff_s=max_backoff_s, timeout=timeout, options=options,
        )
        self.check_model = check_model
        self._name_checked = False

    def _new_client(self) -> Any:
        openai = _import_openai()
        return openai.AsyncOpenAI(
            api_key=self.api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
            base_url=self.base_url, max_retries=0, timeout=self.timeout,
        )

    def request(self, system: str, messages: Sequence[Message]) -> dict[str, Any]:
        """The keyword arguments for ``chat.completions.create``."""
        wire = [{"role": "system", "content": system}]
        wire += [{"role": m.role, "content": m.content} for m in alternating(messages)]
        request: dict[str, Any] = {"model": self.name, "messages": wire, **self.options}
        if self.max_tokens is not None:
            request["max_tokens"] = self.max_tokens
        if self.stream:
            request["stream"] = True
            request["stream_options"] = {"include_usage": True}
        return request

    def astream(
        self, system: str, messages: Sequence[Message]
    ) -> AsyncIterator[str | RetryNotice | ModelReply]:
        """Stream one chat-completions call (model list checked once, retried): deltas, then the reply."""
        request = self.request(system, messages)
        return self._checked_stream(request)

    async def _checked_stream(self, request: dict[str, Any]) -> AsyncIterator[str | RetryNotice | ModelReply]:
        if self.check_model and not self._name_checked:
            self.check_name(await self._listed_quietly())
            self._name_checked = True
        async for item in retrying_stream(self.retry, lambda: self._attempt(request), map_error):
            yield item

    # -- the server's model list -------------------------------------------------
    async def alist_models(self) -> list[str] | None:
        """The model ids the server lists at ``/v1/models``; None if it lists none.

        Raises `ModelError` when the server cannot be reached.
        """
        openai = _import_openai()
        client = self._client_for_this_loop()
        try:
            page = await client.models.list()
        except openai.APIStatusError:
            return None  # no model list here (404, 405, 501...): nothing to check against
        except Exception as exc:
            error = map_error(exc)
            if error is None:
                raise
            raise error from exc
        listed = [item.id for item in page.data if isinstance(getattr(item, "id", None), str)]
        return listed or None

    def list_models(self) -> list[str] | None:
        """Blocking twin of `alist_models`."""
        return run_sync(self._then_close(self.alist_models()))

    def check_name(self, listed: Sequence[str] | None) -> None:
        """Raise ``ModelError(kind="unknown_model")`` if ``listed`` is a list without this model."""
        if not listed or self.name in listed:
            return
        shown = ", ".join(listed[:20]) + (f" (+{len(listed) - 20} more)" if len(listed) > 20 else "")
        raise ModelError(
            f"the server at {self.base_url or 'the default endpoint'} does not serve a model named "
            f"{self.name!r}; it lists: {shown}",
            kind="unknown_model",
        )

    async def _listed_quietly(self) -> list[str] | None:
        try:
            return await self.alist_models()
        except ModelError:
            return None  # unreachable: the call itself will say so, after its retries

    async def _then_close(self, coro: Any) -> Any:
        try:
            return await coro
        finally:
            await self.aclose()

    # -- one attempt ---------------------------------------------------------------
    async def _attempt(self, request: dict[str, Any]) -> AsyncIterator[str | ModelReply]:
        client = self._client_for_this_loop()
        if not self.stream:
            reply = await self._whole(client, request)
            if reply.text:
                yield reply.text
            yield reply
            return
        parts: list[str] = []
        usage: Any = None
        finish = None
        model = self.name
        stream = await client.chat.completions.create(**request)
        async for chunk in stream:
            model = chunk.model or model
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta is not None and choice.delta.content:
                    parts.append(choice.delta.content)
                    yield choice.delta.content
                if choice.finish_reason:
                    finish = choice.finish_reason
        if parts:
            # A stream that ends (with [DONE]) but without a finish reason is still a
            # whole reply: a cut connection raises instead.
            text = "".join(parts)
            yield ModelReply(text, _usage(usage, request, text), finish, model)
            return
        # Some servers stream badly (nothing but [DONE]); one plain call often works.
        log.info("the reply stream carried no text (finish reason %s); calling once without "
                 "streaming", finish)
        reply = await self._whole(client, {k: v for k, v in request.items()
                                           if k not in ("stream", "stream_options")})
        if not reply.text:
            raise ModelError(
                f"the server at {self.base_url or 'the default endpoint'} answered, but with no "
                f"text: its stream carried none (finish reason {finish}), nor did a call without "
                f"streaming (finish reason {reply.stop_reason}); check the model and its chat "
                "template",
                kind="empty_reply",
            )
        yield reply.text
        yield reply

    async def _whole(self, client: Any, request: dict[str, Any]) -> ModelReply:
        """One non-streamed call."""
        completion = await client.chat.completions.create(**request)
        choice = completion.choices[0] if completion.choices else None
        text = (choice.message.content if choice and choice.message else None) or ""
        finish = choice.finish_reason if choice else None
        return ModelReply(text, _usage(completion.usage, request, text), finish,
                          completion.model or self.name)


def map_error(exc: BaseException) -> ModelError | None:
    """Translate an SDK or transport error into `ModelError`; None for anything else (a bug)."""
    if isinstance(exc, ModelError):
        return exc
    openai = _import_openai()
    import httpx2

    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retryable = status in _RETRYABLE_STATUS or status >= 500
        should_retry = exc.response.headers.get("x-should-retry")
        if should_retry in ("true", "false"):
            retryable = should_retry == "true"
        return ModelError(
            f"chat-completions API error {status}: {exc.message}",
            status=status,
            retryable=retryable,
        )
    if isinstance(exc, openai.APITimeoutError):
        return ModelError(f"the chat-completions API timed out: {exc.message}", retryable=True,
                          kind="timeout")
    if isinstance(exc, openai.APIConnectionError):
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        return ModelError(f"cannot reach the chat-completions API: {exc.message}{cause}",
                          retryable=True, kind="connection")
    if isinstance(exc, httpx2.TransportError):  # a stream cut mid-body surfaces raw
        return ModelError(f"the connection to the chat-completions API broke: {exc}", retryable=True,
                          kind="connection")
    if isinstance(exc, openai.OpenAIError):
        return ModelError(f"OpenAI SDK error: {exc}", kind="bad_stream")
    return None


def _usage(usage: Any, request: dict[str, Any], text: str) -> Usage:
    """Provider usage, or an estimate when a server sends none (some local servers)."""
    if usage is None:
        prompt = sum(estimate_tokens(str(m["content"])) for m in request["messages"])
        return Usage(input_tokens=prompt, output_tokens=estimate_tokens(text))
    details = getattr(usage, "prompt_tokens_details", None)
    cached = (getattr(details, "cached_tokens", None) or 0) if details is not None else 0
    return Usage(
        input_tokens=max(0, (usage.prompt_tokens or 0) - cached),
        output_tokens=usage.completion_tokens or 0,
        cache_read_tokens=cached,
    )
