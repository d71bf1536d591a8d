"""In the zygote: ending every process of a session, and only processes of its own.

A session is more than the process serving it: the checkpoint waiting on its
pipe, and whatever a taken worker forked. Ending one (the host closed or
reset it, or the host is gone) kills them all, found in one of two ways, and
never by a number alone:

- **its cgroup leaf** (`security/cgroups.py`), where the machine gives us
  one: ``cgroup.kill`` on cgroup v2; on v1, the pids listed in the leaf's
  ``cgroup.procs``, each opened as a pidfd and signalled through it only if
  the leaf still lists that pid once it is open (so a pid that was recycled
  outside the leaf in between is left alone);
- **its session id** otherwise: every process with that session id, opened
  as a pidfd, while a process known to be ours keeps the id taken. The
  spare that became the session's worker made itself a session leader, and
  a worker cannot call ``setsid``, so every process of the session keeps its
  id; its topmost processes are children of the zygote (the worker, and
  checkpoints orphaned to the zygote, the child subreaper). While one of
  those is alive the kernel cannot hand the id to anyone else, so a process
  seen with that id while it lives belongs to the session. Once none is
  alive the session has no process left, and nothing is killed: a stranger
  that later got the recycled pid (a login shell, a daemon) is safe.

Each pass signals what it found; passes repeat until one finds nothing new
(a process with SIGKILL pending cannot complete a fork, so this ends).
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..security import cgroups

_PASSES = 100


@dataclass(frozen=True)
class _Stat:
    state: str
    ppid: int
    sid: int
    start: int  # start time (clock ticks after boot): with the pid, who a process is


def _stat(pid: int) -> _Stat | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
        fields = text[text.rfind(")") + 2:].split()
        return _Stat(fields[0], int(fields[1]), int(fields[3]), int(fields[19]))
    except (OSError, ValueError, IndexError):
        return None


def _alive(pidfd: int) -> bool:
    return not select.select([pidfd], [], [], 0)[0]


Opened = list[tuple[int, int, _Stat]]  # (pid, pidfd, what /proc said once the pidfd was open)


def _kill_passes(scan: Callable[[], Iterable[int]],
                 confirm: Callable[[Opened], Opened]) -> int:
    """Kill, by pidfd, what ``scan`` lists and ``confirm`` keeps, until a pass finds nothing new."""
    killed: set[tuple[int, int]] = set()
    for _ in range(_PASSES):
        opened: Opened = []
        chosen: Opened = []
        try:
            for pid in scan():
                try:
                    fd = os.pidfd_open(pid)
                except OSError:
                    continue  # already gone
                st = _stat(pid)  # read with the pidfd open: if it names another process,
                # ours is dead and signalling it below does nothing
                if st is None or st.state in "ZX" or (pid, st.start) in killed:
                    os.close(fd)
                    continue
                opened.append((pid, fd, st))
            chosen = confirm(opened) if opened else []
            for pid, fd, st in chosen:
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except OSError:
                    pass
                killed.add((pid, st.start))
        finally:
            for _pid, fd, _st in opened:
                os.close(fd)
        if not chosen:
            break
    return len(killed)


def _procs(path: str) -> set[int]:
    try:
        with open(path) as f:
            return {int(line) for line in f.read().split()}
    except (OSError, ValueError):
        return set()


def kill_leaf(leaf: cgroups.Leaf) -> int:
    """Kill every process in a session's cgroup leaf."""
    if cgroups.kill_v2(leaf):
        return 1
    procs = os.path.join(leaf.paths[0], "cgroup.procs")

    def confirm(opened: Opened) -> Opened:
        listed = _procs(procs)  # read with every pidfd open: a listed pid is the leaf's
        return [o for o in opened if o[0] in listed]

    return _kill_passes(lambda: _procs(procs), confirm)


def _processes_of(sid: int) -> Iterable[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st.sid == sid:
                yield int(entry)


def kill_session_id(sid: int, leader: int) -> int:
    """Kill every process of session ``sid`` (see the module docstring); ``leader``: a pidfd
    of the session's first worker, held by the zygote since it forked it (or -1)."""
    me = os.getpid()

    def confirm(opened: Opened) -> Opened:
        ours = [o for o in opened if o[2].sid == sid]
        # A live process of ours in the session: the leader, or a child of the zygote.
        # Checked after every /proc read above: it lived through them all, so the
        # session id was ours while they were read.
        pins = [fd for _pid, fd, st in ours if st.ppid == me]
        if leader >= 0:
            pins.append(leader)
        return ours if any(_alive(fd) for fd in pins) else []

    return _kill_passes(lambda: list(_processes_of(sid)), confirm)


class Sessions:
    """The sessions this zygote handed out and has not ended: pid -> a pidfd of it, its leaf."""

    def __init__(self) -> None:
        self._leaders: dict[int, int] = {}
        self._leaves: dict[int, cgroups.Leaf | None] = {}

    def handed_out(self, pid: int) -> None:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            fd = -1  # it died already: its session id and leaf still say what was its
        if fd >= 0:
            st = _stat(pid)
            if st is None or st.ppid != os.getpid():  # not our child (recycled): not ours
                os.close(fd)
                fd = -1
        self._leaders[pid] = fd
        self._leaves[pid] = cgroups.leaf_of(pid)

    def end(self, pid: int) -> None:
        """End the session handed out as ``pid`` (nothing if it is not one of ours)."""
        if pid not in self._leaders:
            return
        fd, leaf = self._leaders.pop(pid), self._leaves.pop(pid)
        try:
            if leaf is not None:
                kill_leaf(leaf)
            else:
                kill_session_id(pid, fd)
        finally:
            if fd >= 0:
                os.close(fd)

    def end_all(self) -> None:
        for pid in list(self._leaders):
            self.end(pid)

    def close_in_child(self) -> None:
        """In a freshly forked spare: it must hold none of these pidfds."""
        for fd in self._leaders.values():
            if fd >= 0:
                os.close(fd)
        self._leaders.clear()
        self._leaves.clear()
