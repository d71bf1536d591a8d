"""What tracing costs a chat: one run prints a table, the three cases measured in it.

    python benchmarks/telemetry_bench.py [--quick]

Cases: opentelemetry absent (the hooks are `NO_TRACE`'s no-ops), the API
installed with no tracer provider (non-recording spans), and the SDK with an
in-memory exporter (every span recorded). For each: the hooks of one step
(a model call and a cell), and a whole ten-step chat against a scripted model
and a real runtime.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runtime_bench import fmt_s, stats  # noqa: E402

from cavelite import CaveLite, Runtime, telemetry  # noqa: E402
from cavelite.events import Reply, StopReason  # noqa: E402
from cavelite.models import ScriptedModel  # noqa: E402
from cavelite.models.base import ModelReply  # noqa: E402
from cavelite.runtime.results import CellResult  # noqa: E402
from cavelite.usage import Usage  # noqa: E402

STEPS = 10
REPLY = ModelReply("x", Usage(10, 2), "end_turn", "scripted")
RESULT = CellResult(ok=True, duration_s=0.001)
DONE = Reply("ok", StopReason.COMPLETED, STEPS, Usage(), (), (), 0.0)


def hooks(n: int) -> list[float]:
    model = ScriptedModel([])
    out = []
    for _ in range(n):
        t = time.perf_counter()
        trace = telemetry.chat_trace(model)
        for step in range(STEPS):
            span = trace.model_call(step)
            trace.model_done(span, REPLY, None)
            span = trace.cell(step, "x = 1")
            trace.cell_done(span, RESULT)
        trace.end(DONE)
        out.append((time.perf_counter() - t) / STEPS)
    return out


def chats(runtime: Runtime, n: int) -> list[float]:
    script = ["```python\nx = 1\n```"] * (STEPS - 1) + ["done"]
    out = []
    for _ in range(n):
        with CaveLite(ScriptedModel(script), runtime=runtime, max_steps=STEPS) as agent:
            t = time.perf_counter()
            agent.chat("go")
            out.append((time.perf_counter() - t) / STEPS)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    n = 20 if parser.parse_args().quick else 100
    rows = []
    with Runtime(preload=("numpy",)) as runtime:
        chats(runtime, 3)  # warm
        telemetry._TRACER[:] = [None]  # as if opentelemetry were not installed
        absent = hooks(n * 10), chats(runtime, n)
        telemetry._TRACER.clear()  # the API, no provider yet
        bare = hooks(n * 10), chats(runtime, n)
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        recorded = hooks(n * 10), chats(runtime, n)
    base_hooks, base_chat = stats(absent[0])[0], stats(absent[1])[0]
    for name, (hook, chat) in (("opentelemetry not installed", absent), ("API, no provider", bare),
                               ("SDK, in-memory exporter", recorded)):
        rows.append((name, fmt_s(stats(hook)[0]), fmt_s(stats(chat)[0]),
                     f"{(stats(chat)[0] - base_chat) * 1e6:+.0f} µs ({stats(chat)[0] / base_chat:.2f}x)"))
    print(f"cavelite telemetry benchmark — python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    header = ("case (median, per step)", "hooks alone", "chat step (model + cell)", "vs not installed")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    print(f"\nhooks alone, not installed: {fmt_s(base_hooks)} per step")


if __name__ == "__main__":
    main()
