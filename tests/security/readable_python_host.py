"""A host run by test_kernel_layer.py from a Python every uid can read: what its sessions hold.

Prints one JSON line: the runtime's confinement, the worker's credentials, whether
cells and large transfers still work (memfds are refused without a memory cgroup,
so buffers travel inline), and what a taken worker (fakes.compromise) got when it
turned on this host, its zygote and a neighbour session.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
from fakes.compromise import PRELOAD  # noqa: E402

from cavelite import Runtime  # noqa: E402
from cavelite.runtime.zygote import Zygote  # noqa: E402


def status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return {k: fields[k] for k in ("Uid", "CapEff", "CapPrm", "NoNewPrivs", "Seccomp")}


def state(pid: int) -> dict[str, object]:
    return {"nice": os.getpriority(os.PRIO_PROCESS, pid),
            "affinity": sorted(os.sched_getaffinity(pid)),
            "limits": Path(f"/proc/{pid}/limits").read_text(),
            "sched": os.sched_getscheduler(pid)}


def main() -> None:
    raw_acts = sys.stdin.read()
    out: dict[str, object] = {"host_uid": os.getuid()}
    with Runtime(memory_limit_mb=256) as rt:
        out["confinement"] = list(rt.confinement)
        out["worker"] = status(rt.pid)
        data = np.arange(3_000_000, dtype="float64")  # 24 MB: inline both ways here
        rt.inject("data", data)
        r = rt.execute("import statistics\ndoubled = data * 2\n"
                       "statistics.mean([1, 2, 3]), float(doubled.sum())")
        out["cell"] = r.value_repr if r.ok else repr(r.error)
        out["retrieved_ok"] = bool((rt.retrieve("doubled") == data * 2).all())
        with Runtime(preload=PRELOAD, cell_timeout=60) as taken:
            targets = {"host": os.getpid(), "zygote": Zygote.shared(PRELOAD).process.pid,
                       "neighbour": rt.pid}
            before = {who: state(pid) for who, pid in targets.items()}
            result = taken.execute(raw_acts.replace("TARGETS", repr(targets)))
            out["attacks"] = json.loads(result.stdout) if result.ok else repr(result.error)
            out["unchanged"] = before == {who: state(pid) for who, pid in targets.items()}
            out["taken_confinement"] = list(taken.confinement)
        out["neighbour_ok"] = rt.execute("float(doubled.sum())").value_repr == repr(
            float((data * 2).sum()))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
