"""Runtime benchmark: one run prints a table of medians and p95s on this machine.

    python benchmarks/runtime_bench.py            # or: make bench
    python benchmarks/runtime_bench.py --quick    # fewer repetitions

Comparisons are measured in the same run: plain ``exec`` in this process for
cell bodies, and a Jupyter kernel (``jupyter_client``) for session start and a
trivial cell when the ``bench`` extra is installed.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from cavelite import Runtime
from cavelite.runtime.zygote import Zygote

ROWS: list[tuple[str, str, str, str, str]] = []


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return statistics.median(ordered), p95


def fmt_s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def row(name: str, samples: list[float], target: str = "", comparison: str = "", ratio: str = "") -> None:
    med, p95 = stats(samples)
    ROWS.append((name, fmt_s(med), fmt_s(p95), target, comparison + (f" ({ratio})" if ratio else "")))


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


LOOP_CELL = """
total = 0
for i in range(300_000):
    total += i * i % 7
"""

ATTR_CELL = """
class P:
    def __init__(self, x, y):
        self.x = x
        self.y = y
    def norm(self):
        return self.x * self.x + self.y * self.y
pts = [P(i, i + 1) for i in range(50_000)]
acc = 0
for p in pts:
    acc += p.x * p.y + p.norm()
"""

PRIVATE_ATTR_CELL = """
class Account:
    def __init__(self, balance):
        self._balance = balance
        self._history = []
    def deposit(self, amount):
        self._balance += amount
        self._history.append(amount)
        return self._balance
accounts = [Account(i) for i in range(20_000)]
total = 0
for a in accounts:
    total += a.deposit(5) + a._balance
"""

NUMPY_CELL = "import numpy as np\nm = np.ones((300, 300))\nfor _ in range(5):\n    r = m @ m"


def plain_exec(code: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        ns: dict[str, object] = {"__name__": "__main__"}
        compiled = compile(code, "<plain>", "exec")
        gc.collect()  # start each run from the same heap, as the worker's cells roughly do
        t = time.perf_counter()
        exec(compiled, ns)  # noqa: S102 - the comparison baseline
        out.append(time.perf_counter() - t)
    return out


def cell_time(rt: Runtime, code: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        r = rt.execute(code)
        assert r.ok, r.error
        out.append(r.duration_s)
    return out


def uss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        total = 0
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1]) * 1024
        return total


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                out.append(int(entry))
    return out


def bench_sessions(n: int) -> None:
    preload = ("numpy", "pandas")
    cold = []
    for _ in range(max(3, n // 10)):
        for z in list(Zygote._instances.values()):
            z.close()
        Zygote._instances.clear()
        t = time.perf_counter()
        rt = Runtime(preload=preload)
        cold.append(time.perf_counter() - t)
        rt.close()
    warm = []
    for _ in range(n):
        t = time.perf_counter()
        rt = Runtime(preload=preload)
        warm.append(time.perf_counter() - t)
        rt.close()
    jupyter = jupyter_start(max(3, n // 10))
    comp = f"Jupyter {fmt_s(stats(jupyter)[0])}" if jupyter else "Jupyter: not installed"
    ratio = f"{stats(jupyter)[0] / stats(warm)[0]:.0f}x faster" if jupyter else ""
    row("session ready, warm zygote (numpy+pandas)", warm, "<= 3 ms", comp, ratio)
    row("session ready incl. zygote start", cold, "", comp,
        f"{stats(jupyter)[0] / stats(cold)[0]:.1f}x faster" if jupyter else "")


def jupyter_start(n: int) -> list[float]:
    try:
        from jupyter_client.manager import start_new_kernel
    except ImportError:
        return []
    out = []
    for _ in range(n):
        t = time.perf_counter()
        km, kc = start_new_kernel(kernel_name="python3")
        out.append(time.perf_counter() - t)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return out


def jupyter_cell(n: int) -> list[float]:
    try:
        from jupyter_client.manager import start_new_kernel
    except ImportError:
        return []
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        kc.execute_interactive("x = 0", timeout=30)
        out = []
        for _ in range(n):
            t = time.perf_counter()
            kc.execute_interactive("x = 1", timeout=30, output_hook=lambda msg: None)
            out.append(time.perf_counter() - t)
        return out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def bench_cells(n: int) -> None:
    jup = jupyter_cell(n // 2)
    comp = f"Jupyter {fmt_s(stats(jup)[0])}" if jup else "Jupyter: not installed"
    for atomic, target in ((False, "<= 0.3 ms"), (True, "<= 2 ms")):
        mode = "atomic" if atomic else "non-atomic"
        with Runtime(atomic=atomic) as rt:
            rt.execute("x = 0")
            back_to_back = timed(lambda rt=rt: rt.execute("x = 1"), n)
            spaced = []
            for _ in range(n // 2):
                # The agent case: the model thinks between cells, so the next
                # checkpoint is forked and warm when the cell arrives. (Idle CPUs
                # also wake up slower: this costs non-atomic cells a little.)
                time.sleep(0.025)
                t = time.perf_counter()
                rt.execute("x = 1")
                spaced.append(time.perf_counter() - t)
        for label, samples in (("back-to-back", back_to_back), ("25 ms apart", spaced)):
            ratio = f"{stats(jup)[0] / stats(samples)[0]:.0f}x faster" if jup else ""
            row(f"trivial cell round trip, {mode}, {label}", samples, target, comp, ratio)


def guarded_exec(code: str, n: int) -> list[float]:
    """The cell compiled and guarded exactly as in a worker, but run here: the guards' cost alone."""
    from cavelite.runtime.cell import compile_cell
    from cavelite.security.guards import Guard
    from cavelite.security.policy import Policy

    guard = Guard(Policy.default())
    compiled = compile_cell(code, guard.policy, "<bench>")
    assert compiled.code is not None, compiled.error
    out = []
    for _ in range(n):
        ns = guard.namespace_globals()
        gc.collect()
        t = time.perf_counter()
        exec(compiled.code, ns)  # noqa: S102
        out.append(time.perf_counter() - t)
    return out


def bench_guards(n: int) -> None:
    cells = (("loop-heavy cell", LOOP_CELL), ("attribute-heavy cell", ATTR_CELL),
             ("private-attribute cell (self._x)", PRIVATE_ATTR_CELL))
    for name, code in cells:
        plain = plain_exec(code, n)
        guarded = guarded_exec(code, n)
        ratio = stats(guarded)[0] / stats(plain)[0]
        row(f"{name}: guards alone (same process)", guarded, "<= 1.5x plain",
            f"plain exec {fmt_s(stats(plain)[0])}", f"{ratio:.2f}x")
    with Runtime() as rt:
        for name, code in cells:
            plain = plain_exec(code, n)
            cave = cell_time(rt, code, n)
            ratio = stats(cave)[0] / stats(plain)[0]
            row(f"{name}: in the worker, atomic (+ copy-on-write after the checkpoint fork)",
                cave, "", f"plain exec {fmt_s(stats(plain)[0])}", f"{ratio:.2f}x")


def bench_numpy_atomic(n: int) -> None:
    res = {}
    for atomic in (False, True):
        with Runtime(atomic=atomic) as rt:
            rt.execute(NUMPY_CELL)
            res[atomic] = timed(lambda rt=rt: rt.execute(NUMPY_CELL), n)
    ratio = stats(res[True])[0] / stats(res[False])[0]
    row("numpy matmul cell, atomic", res[True], "", f"non-atomic {fmt_s(stats(res[False])[0])}",
        f"{ratio:.2f}x")


def bench_remote(n: int) -> None:
    with Runtime() as rt:
        rt.inject("noop", lambda v=None: v)
        calls = 2000
        samples = []
        for _ in range(max(3, n // 20)):
            r = rt.execute(f"for i in range({calls}):\n    noop(i)")
            assert r.ok
            samples.append(r.duration_s / calls)
        row("remote call round trip (per call, in a loop)", samples)


def bench_transfer(n: int) -> None:
    rows = 100 * 1024 * 1024 // 8 // 4
    frame = pd.DataFrame({f"c{i}": np.random.rand(rows) for i in range(4)})
    mb = frame.memory_usage(index=False).sum() / 1e6
    with Runtime(memory_limit_mb=4096) as rt:
        inject, retrieve = [], []
        for _ in range(max(3, n // 20)):
            t = time.perf_counter()
            rt.inject("big", frame)
            inject.append(time.perf_counter() - t)
            t = time.perf_counter()
            back = rt.retrieve("big")
            retrieve.append(time.perf_counter() - t)
            del back
            gc.collect()
        for name, samples in (("inject", inject), ("retrieve", retrieve)):
            med = stats(samples)[0]
            ROWS.append((f"{name} {mb:.0f} MB numeric DataFrame", fmt_s(med), fmt_s(stats(samples)[1]),
                         ">= 1 GB/s", f"{mb / med / 1000:.2f} GB/s", ))


def bench_memory() -> None:
    sessions = [Runtime() for _ in range(5)]
    try:
        for rt in sessions:
            rt.execute("x = 1")
        time.sleep(0.2)  # let the post-cell checkpoints finish forking
        per = []
        for rt in sessions:
            total = uss_bytes(rt.pid) + sum(uss_bytes(c) for c in children_of(rt.pid))
            per.append(total / 1e6)
        med = statistics.median(per)
        ROWS.append(("unique memory per idle session (worker + checkpoint)", f"{med:.1f} MB",
                     f"{max(per):.1f} MB", "<= 10 MB", ""))
    finally:
        for rt in sessions:
            rt.close()


def bench_timeout_recovery(n: int) -> None:
    with Runtime() as rt:
        rt.execute("x = 1")
        samples = []
        for _ in range(max(3, n // 20)):
            r = rt.execute("while True:\n    pass", timeout=0.05)
            assert r.error.kind == "timeout"
            samples.append(r.duration_s - 0.05)
        row("recovery after a timeout (kill + checkpoint takeover)", samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 20 if args.quick else 100
    # Like the zygote: preloaded objects are frozen, so the cyclic GC in plain
    # exec does not walk numpy/pandas internals that the worker's GC never sees.
    gc.collect()
    gc.freeze()
    print(f"cavelite runtime benchmark — python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    bench_sessions(n // 2)
    bench_cells(n * 3)
    bench_guards(max(5, n // 10))
    bench_numpy_atomic(max(10, n // 5))
    bench_remote(n)
    bench_timeout_recovery(n)
    bench_transfer(n)
    bench_memory()
    widths = [max(len(r[i]) for r in ROWS + [("measure", "median", "p95", "target", "comparison")])
              for i in range(5)]
    header = ("measure", "median", "p95", "target", "comparison (same run)")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in ROWS:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


if __name__ == "__main__":
    main()
