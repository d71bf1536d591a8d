"""Counting the cave's processes from a test (workers and checkpoints, not spares)."""

from __future__ import annotations

import os


def _descendants() -> set[int]:
    """Pids of every live process below this one (workers are grandchildren via the zygote)."""
    me = os.getpid()
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [me]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def worker_pids() -> set[int]:
    """Live cave processes serving a session: workers and their checkpoints (not spares)."""
    found = set()
    for pid in _descendants():
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() in ("cave-worker", "cave-checkpoint"):
                    found.add(pid)
        except OSError:
            continue
    return found
