"""Counting the cave's processes from a test (workers and checkpoints, not spares)."""

from __future__ import annotations

import os


def descendants(root: int | None = None) -> dict[int, str]:
    """Every live process below ``root`` (default: this one), with its command name."""
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
    found: dict[int, str] = {}
    todo = [os.getpid() if root is None else root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                try:
                    with open(f"/proc/{child}/comm") as f:
                        found[child] = f.read().strip()
                except OSError:
                    continue
                todo.append(child)
    return found


def worker_pids() -> set[int]:
    """Live cave processes serving a session: workers and their checkpoints (not spares)."""
    return {pid for pid, name in descendants().items() if name in ("cave-worker", "cave-checkpoint")}


def wait_gone(pids: set[int], timeout: float = 5.0) -> set[int]:
    """Block until these processes have exited (pidfd readiness, no polling); returns survivors."""
    import select
    import time

    deadline = time.monotonic() + timeout
    left = set()
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # already gone
        try:
            remaining = max(deadline - time.monotonic(), 0)
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                left.add(pid)
        finally:
            os.close(fd)
    return left
