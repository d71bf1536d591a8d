"""The guards' per-cell cost in two checkouts, measured sample by sample in turn.

    git worktree add /tmp/before <commit>          # or: git archive <commit> | tar -x -C /tmp/before
    python benchmarks/guards_ab.py /tmp/before .   # before, after
    python benchmarks/guards_ab.py /tmp/before . --samples 100

The cells are runtime_bench.py's "loop-heavy", "attribute-heavy" and
"private-attribute" rows (guards alone, same process, as in that script).
Each checkout runs in its own process; the two are asked for one sample in
turn, so that a machine shared with other work slows both alike.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from pathlib import Path

CELLS = {"loop-heavy": "LOOP_CELL", "attribute-heavy": "ATTR_CELL",
         "private-attribute (self._x)": "PRIVATE_ATTR_CELL"}


def serve(root: str) -> None:
    """Child: compile the cells with this checkout's guards, then time one run per request."""
    sys.path[:0] = [root, f"{root}/benchmarks"]
    import runtime_bench

    from cavelite.runtime.cell import compile_cell
    from cavelite.security.guards import Guard
    from cavelite.security.policy import Policy

    gc.collect()
    gc.freeze()  # as runtime_bench does (the zygote freezes its preloaded objects)
    guard = Guard(Policy.default())
    sources = {name: getattr(runtime_bench, attr) for name, attr in CELLS.items()}
    guarded = {name: compile_cell(src, guard.policy, "<bench>").code for name, src in sources.items()}
    plain = {name: compile(src, "<plain>", "exec") for name, src in sources.items()}
    print("ready", flush=True)
    for line in sys.stdin:
        kind, name = line.rstrip("\n").split(" ", 1)
        code, ns = (guarded[name], guard.namespace_globals()) if kind == "guarded" else \
            (plain[name], {"__name__": "__main__"})
        gc.collect()
        started = time.perf_counter()
        exec(code, ns)  # noqa: S102 - the cells are the benchmark's own
        print(time.perf_counter() - started, flush=True)


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    trees = {"before": str(Path(args.before).resolve()), "after": str(Path(args.after).resolve())}
    children = {label: subprocess.Popen(
        [sys.executable, __file__, args.before, args.after, "--serve", root],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for label, root in trees.items()}
    for child in children.values():
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"

    def sample(label: str, kind: str, name: str) -> float:
        child = children[label]
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(f"{kind} {name}\n")
        child.stdin.flush()
        return float(child.stdout.readline())

    times: dict[tuple[str, str, str], list[float]] = {}
    for name in CELLS:
        for _ in range(args.samples):
            for label in trees:
                for kind in ("plain", "guarded"):
                    times.setdefault((label, name, kind), []).append(sample(label, kind, name))
    for child in children.values():
        assert child.stdin is not None
        child.stdin.close()
        child.wait()

    print(f"guards alone, {args.samples} samples each, interleaved\n")
    print("| cell | checkout | plain exec median | guarded median | guarded p95 | guarded / plain |")
    print("|---|---|---|---|---|---|")
    for name in CELLS:
        for label in trees:
            plain = stats(times[(label, name, "plain")])[0]
            med, p95 = stats(times[(label, name, "guarded")])
            print(f"| {name} | {label} | {plain * 1e3:.2f} ms | {med * 1e3:.2f} ms | "
                  f"{p95 * 1e3:.2f} ms | {med / plain:.2f}x |")
        ratio = stats(times[("after", name, "guarded")])[0] / stats(times[("before", name, "guarded")])[0]
        print(f"| {name} | after / before | | {ratio:.3f}x | | |")


if __name__ == "__main__":
    main()
