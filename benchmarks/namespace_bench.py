"""Costs that grow with what the namespace holds (plain Python containers, not arrays).

    python benchmarks/namespace_bench.py

Prints medians for: inject and retrieve of a 1M-float list (plain pickling, no
per-object callbacks), and a trivial cell while the namespace holds a
1M-entry dict and a 1M-item list (the per-cell change detection summarises
every container).
"""

from __future__ import annotations

import statistics
import time

from cavelite import Runtime


def main() -> None:
    big = [float(i) for i in range(1_000_000)]
    with Runtime() as rt:
        inject, retrieve = [], []
        for _ in range(5):
            t = time.perf_counter()
            rt.inject("big", big)
            inject.append(time.perf_counter() - t)
            t = time.perf_counter()
            rt.retrieve("big")
            retrieve.append(time.perf_counter() - t)
    print(f"inject 1M-float list:   median {statistics.median(inject) * 1e3:.0f} ms")
    print(f"retrieve 1M-float list: median {statistics.median(retrieve) * 1e3:.0f} ms")
    with Runtime(atomic=False) as rt:
        rt.execute("d = {i: float(i) for i in range(1_000_000)}\nl = list(range(1_000_000))")
        cells = []
        for _ in range(50):
            t = time.perf_counter()
            rt.execute("x = 1")
            cells.append(time.perf_counter() - t)
    print(f"trivial cell, namespace holds a 1M dict + list: median {statistics.median(cells) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
