"""One model call of a chat, streamed, and abandoned on cancel, at its call timeout or the wall budget.

The call runs in its own task feeding a queue, so waiting on it can race the
cancel signal and the deadlines without tearing down the caller's generator.
A provider's stream is never consumed directly by the loop: a slow or stuck
model cannot hold a chat past its limits, and every way the call ends is
recorded on the `ChatRun` as a stop reason the loop reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from cavelite.chat_run import ChatRun
from cavelite.errors import ModelError
from cavelite.events import Event, ModelRetrying, StepStats, StopReason, TextDelta
from cavelite.models.base import Message, Model, ModelReply, RetryNotice
from cavelite.usage import Usage

_END = object()


async def call_model(
    model: Model,
    system: str,
    messages: Sequence[Message],
    *,
    step: int,
    run: ChatRun,
    waker: asyncio.Event,
    out: list[ModelReply],
    call_timeout: float | None,
    max_wall_s: float | None,
) -> AsyncGenerator[Event, None]:
    """Stream one model call: text deltas and retries as events, the reply appended to ``out``.

    ``waker`` is set by `CaveLite.cancel`. A call that fails or is abandoned
    still counts its time in the step stats; ``out`` then stays empty and
    ``run`` says why.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()
    messages = tuple(messages)
    began = time.monotonic()
    pump = asyncio.ensure_future(_pump(model, system, messages, queue))
    wake = asyncio.ensure_future(waker.wait())
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            wall_left = run.wall_left(max_wall_s)
            call_left = None
            if call_timeout is not None:
                call_left = call_timeout - (time.monotonic() - began)
            by_call = call_left is not None and (wall_left is None or call_left < wall_left)
            timeout = call_left if by_call else wall_left
            done, _ = await asyncio.wait(
                {getter, wake},
                timeout=None if timeout is None else max(0.0, timeout),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if getter not in done:
                getter.cancel()
                if wake in done:
                    run.stop(StopReason.CANCELLED, "cancelled while the model was replying")
                elif by_call:
                    error = ModelError(f"the model call took longer than {call_timeout:g} s "
                                       "(the agent's call_timeout) and was abandoned", kind="timeout")
                    run.stop(StopReason.MODEL_ERROR, str(error), error)
                else:
                    run.stop(StopReason.BUDGET, f"wall-time budget of {max_wall_s}s used up")
                run.stats.append(StepStats(step, Usage(), time.monotonic() - began))
                return
            item = getter.result()
            if item is _END:
                if not out:
                    error = ModelError(f"{model!r} ended its stream without a reply", kind="bad_stream")
                    run.stop(StopReason.MODEL_ERROR, str(error), error)
                return
            if isinstance(item, ModelError):
                run.stop(StopReason.MODEL_ERROR, str(item), item)
                run.stats.append(StepStats(step, Usage(), time.monotonic() - began))
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, ModelReply):
                out.append(item)
                continue
            if isinstance(item, RetryNotice):
                yield ModelRetrying(step, item.attempt, item.max_retries, item.delay_s, item.reason,
                                    item.status, item.elapsed_s)
                continue
            yield TextDelta(step, item)
    finally:
        wake.cancel()
        if not pump.done():
            pump.cancel()
        await asyncio.gather(pump, wake, return_exceptions=True)


async def _pump(model: Model, system: str, messages: Sequence[Message], queue: asyncio.Queue[Any]) -> None:
    """Feed the model's stream into ``queue``, then an error if it raised, then always the end mark."""
    try:
        async for item in model.astream(system, messages):
            queue.put_nowait(item)
    except Exception as exc:
        queue.put_nowait(exc)
    finally:
        queue.put_nowait(_END)
