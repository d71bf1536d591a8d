"""Layer 4: one cgroup per session, bounding the memory and the tasks of all its processes.

``RLIMIT_AS`` bounds one process's address space. It does not see the pages a
memfd holds once written with ``write()``, nor what a fork copies: a worker
could hold gigabytes past its limit, or multiply it by forking. A memory
cgroup charges every page the session's processes hold (anonymous memory,
memfds, tmpfs, pipe buffers); a pids cgroup bounds its tasks.

Where the cgroups come from:

- **cgroup v2**, when the machine gives us a parent to create children in: the
  directory named by ``CAVELITE_CGROUP`` (a delegated cgroup, e.g. a systemd
  unit with ``Delegate=yes``, that holds no processes itself), or the zygote's
  own cgroup when it already enables ``memory`` and ``pids`` for its children
  (the root cgroup of a VM);
- otherwise the **v1 hierarchies** of a v1/v2 hybrid, each nested under the
  zygote's own cgroup there, so the host's own bounds still apply to sessions.

The zygote makes a directory of its own (``cavelite-<pid>``) under each parent
and a leaf in it for every spare. It moves itself into the leaf for the fork,
so the spare is born inside (no moment outside, no race with the sweep), and
moves back. The spare keeps a write-only descriptor on its leaf's memory
limit, opened while it could, and the worker writes its session's limit
through it before any cell runs, then closes it: the zygote never has to be
told about sessions. A leaf is removed once empty (`sweep` after every
request, `close` at zygote exit); directories of dead zygotes on start.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from .privileges import MAX_TASKS

_ROOT = "/sys/fs/cgroup"
_OWN_DIR = re.compile(r"cavelite-(\d+)$")


@dataclass(frozen=True)
class _Hierarchy:
    version: int
    controllers: frozenset[str]  # of memory and pids, the ones it provides us
    parent: str  # where the zygote's own directory goes
    home: str  # the zygote's own cgroup: where it goes back after a fork


@dataclass
class Leaf:
    """The cgroup directories of one spare (one per hierarchy)."""

    paths: tuple[str, ...]
    memory: tuple[int, str] | None  # (cgroup version, directory)
    pids: bool
    limit_fds: list[int] = field(default_factory=list)  # opened by the spare, see `hold`


def _mounts() -> Iterator[tuple[str, str, str, set[str]]]:
    """(fstype, mount point, root inside the hierarchy, super options) of cgroup mounts."""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            yield tail[0], fields[4], fields[3], set(tail[2].split(","))


def _own_cgroups() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f.read().splitlines():
                _, controllers, path = line.split(":", 2)
                for name in controllers.split(",") if controllers else [""]:
                    paths[name] = path
    except (OSError, ValueError):
        pass
    return paths


def _join(mount: str, root: str, path: str) -> str:
    if root != "/" and path.startswith(root):
        path = path[len(root):]
    return os.path.normpath(mount + "/" + path.lstrip("/"))


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _write(path: str, text: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.write(fd, text.encode())
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _v2_parent(mount: str, home: str) -> str | None:
    """A v2 directory whose children can have memory and pids controllers, or None."""
    wanted = {"memory", "pids"}
    explicit = os.environ.get("CAVELITE_CGROUP")
    for candidate in ([explicit] if explicit else []) + [home]:
        if not os.path.isdir(candidate) or not os.access(candidate, os.W_OK):
            continue
        enabled = set(_read(candidate + "/cgroup.subtree_control").split())
        if wanted <= enabled:
            return candidate
        if candidate == explicit and wanted <= set(_read(candidate + "/cgroup.controllers").split()):
            # A delegated directory without processes: enable them for its children.
            if _write(candidate + "/cgroup.subtree_control", "+memory +pids"):
                return candidate
    return None


def _hierarchies() -> list[_Hierarchy]:
    own = _own_cgroups()
    found: list[_Hierarchy] = []
    provided: set[str] = set()
    mounts = list(_mounts())
    for fstype, mount, root, _options in mounts:
        if fstype == "cgroup2" and "" in own:
            home = _join(mount, root, own[""])
            parent = _v2_parent(mount, home)
            if parent is not None:
                found.append(_Hierarchy(2, frozenset({"memory", "pids"}), parent, home))
                provided |= {"memory", "pids"}
                break
    for fstype, mount, root, options in mounts:
        if fstype != "cgroup":
            continue
        for name in ("memory", "pids"):
            if name in options and name not in provided and name in own:
                home = _join(mount, root, own[name])
                if os.path.isdir(home) and os.access(home, os.W_OK):
                    found.append(_Hierarchy(1, frozenset({name}), home, home))
                    provided.add(name)
    return found


def _remove_tree(path: str) -> None:
    """Remove a zygote directory and its empty leaves (occupied ones stay)."""
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        child = os.path.join(path, name)
        if os.path.isdir(child):
            try:
                os.rmdir(child)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


class SessionCgroups:
    """The zygote's cgroup directories and the leaves of its spares."""

    def __init__(self, hierarchies: list[_Hierarchy]):
        self.hierarchies: list[_Hierarchy] = []
        self.dirs: list[str] = []
        self.leaves: list[Leaf] = []
        self.counter = 0
        for h in hierarchies:
            _remove_stale(h.parent)
            own = os.path.join(h.parent, f"cavelite-{os.getpid()}")
            try:
                os.mkdir(own, 0o755)
            except FileExistsError:
                pass
            except OSError:
                continue
            if h.version == 2 and not _write(own + "/cgroup.subtree_control", "+memory +pids"):
                os.rmdir(own)
                continue
            self.hierarchies.append(h)
            self.dirs.append(own)

    def _new_leaf(self) -> Leaf | None:
        self.counter += 1
        paths: list[str] = []
        memory, pids = None, False
        for h, own in zip(self.hierarchies, self.dirs, strict=True):
            path = os.path.join(own, f"s{self.counter}")
            try:
                os.mkdir(path, 0o755)
            except OSError:
                for made in paths:
                    os.rmdir(made)
                return None  # a leaf in every hierarchy, or none: never a partial claim
            paths.append(path)
            if "pids" in h.controllers:
                pids = _write(path + "/pids.max", str(MAX_TASKS))
            if "memory" in h.controllers:
                memory = (h.version, path)
        return Leaf(tuple(paths), memory, pids)

    def fork(self) -> tuple[int, Leaf | None]:
        """``os.fork()`` with the child born in a fresh leaf; returns (pid, leaf in the child)."""
        leaf = self._new_leaf()
        entered: list[_Hierarchy] = []
        if leaf is not None:
            for h, path in zip(self.hierarchies, leaf.paths, strict=True):
                if _write(path + "/cgroup.procs", str(os.getpid())):
                    entered.append(h)
            if len(entered) < len(leaf.paths):
                leaf = None  # not inside all of them: say nothing rather than something false
        me = os.getpid()
        try:
            pid = os.fork()
        finally:
            if os.getpid() == me:  # the zygote goes home; the child stays in the leaf
                for h in entered:
                    _write(h.home + "/cgroup.procs", str(me))
        if pid == 0:
            return 0, leaf
        if leaf is not None:
            self.leaves.append(leaf)
        return pid, None

    def sweep(self) -> None:
        """Remove the leaves whose processes have all exited (the others refuse: EBUSY)."""
        kept = []
        for leaf in self.leaves:
            left = []
            for path in leaf.paths:
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(path)
            if left:
                kept.append(leaf)
        self.leaves = kept

    def close(self) -> None:
        self.sweep()
        for own in self.dirs:
            _remove_tree(own)


def _remove_stale(parent: str) -> None:
    """Directories left by zygotes that died without cleaning up (killed)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        match = _OWN_DIR.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
            continue  # alive (or a reused pid): not ours to touch
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        _remove_tree(os.path.join(parent, name))


_sessions: SessionCgroups | None = None
_sessions_pid = 0  # the process `_sessions` belongs to


def zygote_cgroups() -> SessionCgroups | None:
    """This zygote's cgroups, found and created on first use (None where there are none).

    Only the process that first asked owns them: in a process forked from it (a
    spare) this is None, so nothing below the zygote creates or removes cgroups.
    """
    global _sessions, _sessions_pid
    if _sessions_pid and _sessions_pid != os.getpid():
        return None
    if not _sessions_pid:
        _sessions_pid = os.getpid()
        found = _hierarchies()
        _sessions = SessionCgroups(found) if found else None
        if _sessions is not None and not _sessions.dirs:
            _sessions = None
    return _sessions


# --- in the spare and the worker -------------------------------------------------------------

LEAF: Leaf | None = None  # the leaf this process was born in (set in the child by `fork_spare`)


def fork_spare() -> int:
    """Fork a spare inside its own leaf (in the zygote); like ``os.fork()`` otherwise."""
    global LEAF
    sessions = zygote_cgroups()
    if sessions is None:
        return os.fork()
    pid, leaf = sessions.fork()
    if pid == 0:
        LEAF = leaf
    return pid


def hold_memory_limit() -> None:
    """In the spare, while it still may: open its leaf's memory limit files for writing."""
    if LEAF is None or LEAF.memory is None:
        return
    version, path = LEAF.memory
    names = ("memory.max", "memory.swap.max") if version == 2 \
        else ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
    for name in names:
        try:
            LEAF.limit_fds.append(os.open(os.path.join(path, name), os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            if name == names[0]:
                return  # the limit itself cannot be set: nothing to hold
            LEAF.limit_fds.append(-1)  # no swap accounting here: nothing to bound there


def limit_memory(limit_bytes: int | None) -> list[str]:
    """Set this session's memory limit through the held descriptors, then let them go.

    Returns what is bounded by the cgroup: ``cgroup-memory`` (when a limit was set)
    and ``cgroup-pids``.
    """
    applied: list[str] = []
    leaf = LEAF
    if leaf is None:
        return applied
    fds, leaf.limit_fds = leaf.limit_fds, []
    try:
        if limit_bytes is not None and fds:
            version = leaf.memory[0] if leaf.memory else 1
            swap = "0" if version == 2 else str(limit_bytes)  # v1: memory+swap together
            ok = _write_fd(fds[0], str(limit_bytes))
            if len(fds) > 1 and fds[1] >= 0:
                ok = _write_fd(fds[1], swap) and ok
            if ok:
                applied.append("cgroup-memory")
    finally:
        for fd in fds:
            if fd >= 0:
                os.close(fd)  # a cell must never hold a way to raise its own limit
    if leaf.pids:
        applied.append("cgroup-pids")
    return applied


def _write_fd(fd: int, text: str) -> bool:
    try:
        os.write(fd, text.encode())
        return True
    except OSError:
        return False
