"""What preloading matplotlib costs: one run prints a table, both preload sets measured in it.

    python benchmarks/figures_bench.py            # or: make bench
    python benchmarks/figures_bench.py --quick

For numpy+pandas and numpy+pandas+matplotlib, in the same run: the zygote's
start (matplotlib builds its font list in the zygote's own directory each
time), a session on a warm zygote, a trivial atomic cell, the unique memory
of an idle session, and, with matplotlib, a cell that draws a line chart
(the cell, and the cell with its figure rendered to PNG and checked).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runtime_bench import children_of, fmt_s, stats, uss_bytes  # noqa: E402

from cavelite import Runtime  # noqa: E402
from cavelite.runtime.zygote import Zygote  # noqa: E402

BASE = ("numpy", "pandas")
WITH_MPL = ("numpy", "pandas", "matplotlib")
PLOT = "fig, ax = plt.subplots()\nax.plot(range(100), [i % 7 for i in range(100)])\nax.set_title('t')"
ROWS: list[tuple[str, str, str, str]] = []


def add(name: str, base: list[float], mpl: list[float]) -> None:
    b, m = stats(base)[0], stats(mpl)[0]
    ROWS.append((name, fmt_s(b), fmt_s(m), f"{m / b:.2f}x"))


def close_zygotes() -> None:
    for zygote in list(Zygote._instances.values()):
        zygote.close()
    Zygote._instances.clear()


def zygote_start(preload: tuple[str, ...], n: int) -> list[float]:
    out = []
    for _ in range(n):
        close_zygotes()
        t = time.perf_counter()
        Runtime(preload=preload).close()
        out.append(time.perf_counter() - t)
    return out


def session_ready(n: int) -> dict[tuple[str, ...], list[float]]:
    """Both preload sets, alternating sample by sample (so a change in load hits both)."""
    out: dict[tuple[str, ...], list[float]] = {BASE: [], WITH_MPL: []}
    for preload in out:
        Runtime(preload=preload).close()
    for _ in range(n):
        for preload, samples in out.items():
            t = time.perf_counter()
            rt = Runtime(preload=preload)
            samples.append(time.perf_counter() - t)
            rt.close()
    return out


def trivial_cells(n: int, pause: float) -> dict[tuple[str, ...], list[float]]:
    """A trivial atomic cell on each, alternating; ``pause`` before each (the model thinking)."""
    out: dict[tuple[str, ...], list[float]] = {BASE: [], WITH_MPL: []}
    runtimes = {preload: Runtime(preload=preload) for preload in out}
    try:
        for rt in runtimes.values():
            rt.execute("x = 0")
        for _ in range(n):
            for preload, rt in runtimes.items():
                if pause:
                    time.sleep(pause)
                t = time.perf_counter()
                rt.execute("x = 1")
                out[preload].append(time.perf_counter() - t)
    finally:
        for rt in runtimes.values():
            rt.close()
    return out


def idle_memory(preload: tuple[str, ...]) -> list[float]:
    sessions = [Runtime(preload=preload) for _ in range(4)]
    try:
        for rt in sessions:
            rt.execute("x = 1")
        time.sleep(0.2)  # the post-cell checkpoints finish forking
        return [(uss_bytes(rt.pid) + sum(uss_bytes(c) for c in children_of(rt.pid))) / 1e6
                for rt in sessions]
    finally:
        for rt in sessions:
            rt.close()


def plot_cells(n: int) -> tuple[list[float], list[float]]:
    with Runtime(preload=WITH_MPL) as rt:
        rt.execute("import matplotlib.pyplot as plt")
        cell, total = [], []
        for _ in range(n):
            time.sleep(0.025)
            t = time.perf_counter()
            result = rt.execute(PLOT)
            total.append(time.perf_counter() - t)
            assert result.ok and len(result.figures) == 1, result
            cell.append(result.duration_s)
    return cell, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    n = 10 if parser.parse_args().quick else 40
    print(f"cavelite figures benchmark — python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    starts = {p: zygote_start(p, max(3, n // 8)) for p in (BASE, WITH_MPL)}
    add("zygote start + first session", starts[BASE], starts[WITH_MPL])
    ready = session_ready(n)
    add("session ready, warm zygote", ready[BASE], ready[WITH_MPL])
    cells = trivial_cells(n * 2, 0.025)
    add("trivial atomic cell, 25 ms apart", cells[BASE], cells[WITH_MPL])
    cells = trivial_cells(n * 2, 0.0)
    add("trivial atomic cell, back-to-back (waits for the fork)", cells[BASE], cells[WITH_MPL])
    memory = {p: idle_memory(p) for p in (BASE, WITH_MPL)}
    b, m = statistics.median(memory[BASE]), statistics.median(memory[WITH_MPL])
    ROWS.append(("unique memory per idle session", f"{b:.1f} MB", f"{m:.1f} MB", f"{m / b:.2f}x"))
    cell, total = plot_cells(n)
    ROWS.append(("line chart cell: the cell itself", "", fmt_s(stats(cell)[0]), ""))
    ROWS.append(("line chart cell: round trip with its PNG", "", fmt_s(stats(total)[0]),
                 f"p95 {fmt_s(stats(total)[1])}"))
    header = ("measure (median)", "numpy+pandas", "+ matplotlib", "ratio")
    widths = [max(len(r[i]) for r in [header, *ROWS]) for i in range(4)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in ROWS:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    close_zygotes()


if __name__ == "__main__":
    main()
