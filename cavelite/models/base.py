"""The model seam: what the agent needs from any LLM provider.

A `Model` turns a system prompt and a list of plain-text `Message`s into a
stream: text deltas (``str``) as they arrive, a `RetryNotice` before each
retry of a failed attempt, then exactly one `ModelReply` with the full text
and the provider's token usage. Adapters translate their SDK's errors into
`cavelite.errors.ModelError` here, at the seam, so the agent never sees (or
imports) a provider SDK.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import logging
import random
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from cavelite.errors import CaveUsageError, ModelError
from cavelite.usage import Usage

Role = Literal["user", "assistant"]
T = TypeVar("T")
log = logging.getLogger("cavelite.models")


@dataclass(frozen=True)
class Image:
    """An image in a message: a figure a cell drew, for a model that takes images."""

    mime_type: str
    data: bytes = field(repr=False)

    def to_dict(self) -> dict[str, str]:
        """The plain JSON form: ``{"mime_type": ..., "data": <base64>}``."""
        return {"mime_type": self.mime_type, "data": base64.b64encode(self.data).decode("ascii")}

    @classmethod
    def from_dict(cls, data: Any) -> Image:
        """An `Image` from its plain JSON form; `CaveUsageError` if it is not one."""
        if not isinstance(data, dict) or set(data) != {"mime_type", "data"} or not all(
                isinstance(v, str) for v in data.values()):
            raise CaveUsageError(f"an image is a dict with 'mime_type' and base64 'data', not {data!r:.80}")
        try:
            raw = base64.b64decode(data["data"], validate=True)
        except (binascii.Error, ValueError):
            raise CaveUsageError("an image's 'data' is not base64") from None
        return cls(data["mime_type"], raw)


_MESSAGE_KEYS = {"role", "content", "images"}


@dataclass(frozen=True)
class Message:
    """One turn of the conversation: text, and the images it shows (``show_figures``)."""

    role: Role
    content: str
    images: tuple[Image, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The plain JSON form: ``{"role": ..., "content": ...}`` (and ``"images"`` if any)."""
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.images:
            data["images"] = [image.to_dict() for image in self.images]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Message:
        """A `Message` from its plain JSON form (or a `Message`); `CaveUsageError` if it is not one."""
        if isinstance(data, Message):
            return data
        if not isinstance(data, dict) or not {"role", "content"} <= set(data) <= _MESSAGE_KEYS:
            raise CaveUsageError(f"a message is a dict with exactly 'role' and 'content' (and "
                                 f"optionally 'images'), not {data!r:.80}")
        role, content = data["role"], data["content"]
        if role not in ("user", "assistant"):
            raise CaveUsageError(f"a message's role is 'user' or 'assistant', not {role!r:.40}")
        if not isinstance(content, str):
            raise CaveUsageError(f"a message's content is a str, not {type(content).__name__}")
        images = data.get("images", [])
        if not isinstance(images, list):
            raise CaveUsageError("a message's 'images' is a list")
        return cls(role, content, tuple(Image.from_dict(image) for image in images))


@dataclass(frozen=True)
class RetryNotice:
    """An adapter is about to retry a failed call; `Model.astream` yields it before waiting.

    ``attempt`` counts retries from 1, ``delay_s`` is the wait before this one,
    ``reason`` the failure being retried, ``elapsed_s`` the time the failed
    attempt took (it counts: the agent's budgets include it).
    """

    attempt: int
    max_retries: int
    delay_s: float
    reason: str
    status: int | None = None
    elapsed_s: float = 0.0



@dataclass(frozen=True)
class ModelReply:
    """The end of one model call: the whole text and what it cost."""

    text: str
    usage: Usage
    stop_reason: str | None = None
    model: str = ""


class Model(ABC):
    """A chat model. Subclass it and implement `astream`.

    ``name`` is the provider's model id. Implementations must be usable from
    several event loops one after another (the sync `CaveLite.chat` runs a
    fresh loop per call), which is why SDK clients are created per loop.
    """

    name: str = ""
    accepts_images: bool = False
    """Whether `Message.images` reach the model (``CaveLite(show_figures=True)`` needs it)."""

    @abstractmethod
    def astream(
        self, system: str, messages: Sequence[Message]
    ) -> AsyncIterator[str | RetryNotice | ModelReply]:
        """Yield text deltas (and `RetryNotice`s), then one final `ModelReply`.

        Raise `ModelError` on failure.
        """

    async def acomplete(self, system: str, messages: Sequence[Message]) -> ModelReply:
        """Run `astream` to the end and return its `ModelReply` (retry notices are dropped)."""
        final: ModelReply | None = None
        async for item in self.astream(system, messages):
            if isinstance(item, ModelReply):
                final = item
        if final is None:
            raise ModelError(f"{type(self).__name__} ended its stream without a reply")
        return final

    def complete(self, system: str, messages: Sequence[Message]) -> ModelReply:
        """Blocking twin of `acomplete`, usable even when an event loop is running."""
        return run_sync(self._complete_then_close(system, messages))

    async def _complete_then_close(self, system: str, messages: Sequence[Message]) -> ModelReply:
        try:
            return await self.acomplete(system, messages)
        finally:
            await self.aclose()  # the HTTP pool belongs to this short-lived loop

    async def aclose(self) -> None:
        """Release network resources; the model may still be used afterwards."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class SDKModel(Model):
    """Shared plumbing of the SDK-backed models: settings, one client per event loop.

    Async HTTP connection pools belong to the loop that made them, and `chat()`
    may run each call on a fresh loop, so the client is rebuilt when the loop
    changes. SDK retries are off (``max_retries=0`` in `_new_client`): our
    `RetryPolicy` retries, where it is testable.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None,
        base_url: str | None,
        max_tokens: int | None,
        stream: bool,
        max_retries: int,
        initial_backoff_s: float,
        max_backoff_s: float,
        timeout: float,
        options: dict[str, Any],
    ) -> None:
        self.name = model
        self.api_key = api_key
        self.base_url = base_url
        self.max_tokens = max_tokens
        self.stream = stream
        self.timeout = timeout
        self.options = options
        self.retry = RetryPolicy(max_retries, initial_backoff_s, max_backoff_s)
        self._client: Any = None
        self._client_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    @abstractmethod
    def _new_client(self) -> Any:
        """A new async SDK client for the running loop."""

    def _client_for_this_loop(self) -> Any:
        """An SDK client bound to the running loop (async HTTP pools cannot change loops)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is None or self._client_loop() is not loop:
            self._client = self._new_client()
            self._client_loop = weakref.ref(loop)
        return self._client

    async def aclose(self) -> None:
        """Close the SDK client and its connections; the next call opens a new one."""
        client, self._client, self._client_loop = self._client, None, None
        if client is not None:
            await client.close()


def alternating(messages: Iterable[Message]) -> list[Message]:
    """Merge consecutive same-role messages, as strict providers require alternation.

    The agent's history can hold two user messages in a row (a chat stopped
    before the model answered, then the next chat began); that is honest
    history, and merging it here keeps every provider happy.
    """
    merged: list[Message] = []
    for message in messages:
        if merged and merged[-1].role == message.role:
            merged[-1] = Message(message.role, merged[-1].content + "\n\n" + message.content,
                                 merged[-1].images + message.images)
        else:
            merged.append(message)
    return merged


@dataclass(frozen=True)
class RetryPolicy:
    """How adapters retry transient provider failures (429, 5xx, overloaded, drops).

    The delay is the server's ``retry-after`` when it sends one, otherwise
    exponential backoff with jitter; either is capped at ``max_backoff_s``, which
    is what lets tests exercise retries without waiting.
    """

    max_retries: int = 4
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_backoff_s)
        backoff = self.initial_backoff_s * 2.0**attempt
        return min(backoff * random.uniform(0.75, 1.0), self.max_backoff_s)


async def retrying_stream(
    policy: RetryPolicy,
    attempt: Callable[[], AsyncIterator[str | ModelReply]],
    map_error: Callable[[BaseException], ModelError | None],
) -> AsyncIterator[str | RetryNotice | ModelReply]:
    """Run ``attempt()`` until it succeeds, retrying failures that ``map_error`` calls retryable.

    An attempt that already yielded text is never retried: the consumer has
    seen that text, and a second attempt would not repeat it. Errors that
    ``map_error`` does not recognise (None) are bugs and propagate unchanged.
    Before each retry a `RetryNotice` says why and after how long, and the
    ``cavelite`` logger says it at INFO.
    """
    tries = 0
    while True:
        delivered = False
        started = time.monotonic()
        try:
            async for item in attempt():
                if isinstance(item, str):
                    delivered = True
                yield item
            return
        except Exception as exc:
            error = map_error(exc)
            if error is None:
                raise
            if not error.retryable or delivered or tries >= policy.max_retries:
                if error is exc:
                    raise
                raise error from exc
            delay = policy.delay(tries, retry_after_of(exc))
            tries += 1
            log.info("model call failed (%s); retry %d of %d in %.1f s", error, tries,
                     policy.max_retries, delay)
            yield RetryNotice(tries, policy.max_retries, delay, str(error), error.status,
                              time.monotonic() - started)
            await asyncio.sleep(delay)


def retry_after_of(exc: BaseException) -> float | None:
    """The server's requested delay, from ``retry-after-ms`` or ``retry-after`` on the response."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    millis = parse_retry_after(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    return parse_retry_after(headers.get("retry-after"))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``retry-after`` header value; None if absent or an HTTP date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for these APIs; fall back to backoff


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code.

    With no loop running in this thread, `asyncio.run` is enough. When one is
    running (Jupyter, or an agent called from a remote tool inside another
    agent's loop) a fresh loop in a helper thread avoids "loop already running".
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, object] = {}
    context = contextvars.copy_context()  # e.g. the runtime's "nested in my remote call" mark

    def target() -> None:
        try:
            box["value"] = context.run(asyncio.run, coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="cavelite-run-sync", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters per token) for fakes and fallbacks."""
    return (len(text) + 3) // 4
