"""Cluster benchmark: sessions on a real Ray cluster on this machine, with 1 and then 3 nodes.

    python benchmarks/cluster_bench.py            # or: make bench-cluster
    python benchmarks/cluster_bench.py --quick    # fewer repetitions

Prints one table: a trivial cell's round trip through the cluster against a
local `Runtime` (measured in the same run, same machine), session open time
(fresh, and waking from a snapshot, against a local `Runtime()`), and how many
sessions a node keeps awake under a fixed memory cap. Every row is measured
with one node and again after two more nodes joined. All nodes share this
machine's cores, so more nodes add capacity and failure domains, not speed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

# Before Ray is imported: this machine's nodes resolve to 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import cavelite.cluster as cc  # noqa: E402
from cavelite import Runtime  # noqa: E402

NODE = dict(num_cpus=1, node_ip_address="127.0.0.1", object_store_memory=100 * 2**20)
MEMORY_CAP_MB = 200.0
ROWS: list[tuple[str, str, str, str, str]] = []


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def fmt_s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def row(name: str, nodes: int, samples: list[float], comparison: list[float] | None = None,
        label: str = "") -> None:
    med, p95 = stats(samples)
    versus = ""
    if comparison:
        cmed, _ = stats(comparison)
        versus = f"{label} {fmt_s(cmed)} ({med / cmed:.2f}x)"
    ROWS.append((name, str(nodes), fmt_s(med), fmt_s(p95), versus))


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench(space: str, nodes: int, n: int, local: dict[str, list[float]]) -> None:
    sessions = cc.connect(space=space, idle_s=None)
    warm = sessions.open(f"{space}-warm")  # every node's zygote is started by its host
    warm.execute("1")
    for label, atomic in (("atomic", True), ("non-atomic", False)):
        rt = sessions.open(f"{space}-{label}", atomic=atomic)
        rt.execute("1")
        samples = timed(lambda: rt.execute("1"), n)  # noqa: B023 - used right here
        row(f"trivial cell round trip, {label}", nodes, samples,
            local[label], "local Runtime")
    durable = sessions.open(f"{space}-durable", durable="cell")
    durable.execute("x = 0")
    row("trivial state-changing cell, durable=\"cell\" (snapshot committed before the reply)",
        nodes, timed(lambda: durable.execute("x += 1"), n), local["atomic"], "local Runtime")

    count = iter(range(10**6))
    opened: list[cc.ClusterRuntime] = []

    def open_fresh() -> None:
        opened.append(sessions.open(f"{space}-fresh-{next(count)}"))

    row("session open, fresh (placed on the least-loaded node)", nodes,
        timed(open_fresh, max(5, n // 10)), local["open"], "local Runtime()")
    for rt in opened:
        rt.close()

    sleeper = sessions.open(f"{space}-sleeper")
    sleeper.execute("import pandas as pd\ndf = pd.DataFrame({'a': range(10_000)})")
    wakes = []
    for _ in range(max(5, n // 10)):
        sessions.sleep(sleeper.session_id)
        t = time.perf_counter()
        sleeper.execute("1")
        wakes.append(time.perf_counter() - t)
    row("session wake from snapshot (10k-row frame) + first cell", nodes, wakes, local["open"],
        "local Runtime()")
    sessions.shutdown()

    capped = cc.connect(space=f"{space}-capped", idle_s=None, max_memory_mb=MEMORY_CAP_MB)
    handles = []
    for i in range(12 * nodes):
        rt = capped.open(f"{space}-capped-{i}")
        rt.execute("import numpy as np\nblock = np.ones(1_000_000)")  # 8 MB of its own
        handles.append(rt)
    time.sleep(2.5)  # the hosts check their caps every second (a benchmark may wait; tests do not)
    loads = capped.load()
    awake = sum(load["sessions"] for load in loads)
    memory = sum(load["memory_mb"] for load in loads)
    ROWS.append((f"awake sessions per node under max_memory_mb={MEMORY_CAP_MB:.0f} (8 MB array each; "
                 f"{len(handles)} opened, the rest asleep)", str(nodes), f"{awake / len(loads):.1f}",
                 "", f"{memory / max(awake, 1):.1f} MB per awake session (PSS)"))
    capped.shutdown()


def local_baseline(n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for label, atomic in (("atomic", True), ("non-atomic", False)):
        with Runtime(atomic=atomic) as rt:
            rt.execute("1")
            out[label] = timed(lambda: rt.execute("1"), n)  # noqa: B023 - used right here
    Runtime().close()  # the zygote is warm
    opened: list[Runtime] = []
    out["open"] = timed(lambda: opened.append(Runtime()), max(5, n // 10))
    for rt in opened:
        rt.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    n = 30 if parser.parse_args().quick else 150
    print(f"cavelite cluster benchmark — python {sys.version.split()[0]}, ray {ray.__version__}, "
          f"{os.cpu_count()} cores shared by every node\n")
    cluster = Cluster(initialize_head=True, head_node_args=dict(NODE, include_dashboard=False))
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        local = local_baseline(n)
        bench("one", 1, n, local)
        for _ in range(2):
            cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        local = local_baseline(n)  # again: three nodes' processes now share the cores
        bench("three", 3, n, local)
    finally:
        ray.shutdown()
        cluster.shutdown()
    header = ("measure", "nodes", "median", "p95", "comparison (same run)")
    widths = [max(len(r[i]) for r in [*ROWS, header]) for i in range(5)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in ROWS:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


if __name__ == "__main__":
    main()
