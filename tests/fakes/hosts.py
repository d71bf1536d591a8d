"""Test-only: a host in a process of its own, for attacks that may freeze, bloat or kill it.

Some attacks on the host cannot be run inside the test process: a decode
that holds the GIL for minutes freezes every thread of pytest, a segfault
ends it, a memory bomb would count against it. `run_host` starts a fresh
Python that runs ``script`` (with the checkout and ``tests/`` on its path,
so ``from cavelite import Runtime`` and ``from fakes.compromise import
PRELOAD`` work), waits for it with a timeout, and reports what became of
it. A host that is still running at the timeout is killed, and so is every
process it started (its zygote and the zygote's sessions), so nothing
outlives the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fakes.processes import descendants, wait_gone

REPO = Path(__file__).resolve().parent.parent.parent

_PREAMBLE = f"""
import sys
sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]
import json, os, textwrap, time
from fakes.compromise import MARK, PRELOAD


def peak_mb():
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmHWM')) // 1024


def reset_peak():
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # VmHWM := VmRSS


def report(**fields):
    print('REPORT ' + json.dumps(fields), flush=True)
"""


@dataclass
class HostRun:
    """What became of a host process."""

    returncode: int | None  # None: still running at the timeout (then killed)
    stdout: str
    stderr: str

    @property
    def finished(self) -> bool:
        return self.returncode is not None

    @property
    def report(self) -> dict[str, object]:
        """The fields of the last ``report(...)`` line the script printed (empty if none)."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("REPORT ")]
        return json.loads(lines[-1][len("REPORT "):]) if lines else {}


def _tree(root: int) -> set[int]:
    """``root`` and every live process below it."""
    return {root, *descendants(root)}


def run_host(script: str, *, timeout: float) -> HostRun:
    """Run ``script`` as a host process; see the module docstring."""
    # The script travels on stdin: an attack's payload may be larger than argv allows.
    proc = subprocess.Popen([sys.executable, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    try:
        out, err = proc.communicate(_PREAMBLE + script, timeout=timeout)
        return HostRun(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        pass
    # Still running: the host is stuck. Everything it started goes with it (the zygote
    # would stop its sessions once the host is gone, but a frozen host never closes it).
    tree = _tree(proc.pid)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGSTOP)  # nobody forks or takes over while the tree goes
        except OSError:
            pass
    sessions = {pid for pid in _session_members(tree)}
    for pid in tree | sessions:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    out, err = proc.communicate()
    wait_gone(tree | sessions, timeout=10)
    return HostRun(None, out, err)


def _session_members(pids: set[int]) -> set[int]:
    """Processes whose session id is one of ``pids`` (a worker's forks left its parent)."""
    members = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            if int(stat[stat.rfind(")") + 2:].split()[3]) in pids:
                members.add(int(entry))
        except (OSError, ValueError):
            continue
    return members
