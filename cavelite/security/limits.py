"""Layer 4: what the kernel enforces on a worker, whatever runs inside it.

The upper layers refuse by inspecting Python; this one asks the kernel, so
that a cell that corrupted the interpreter's memory (numpy's raw-pointer
protocols make that conceivable) still cannot leave its session. In the
order a worker meets them:

- `confine_early`, in the spare before it has a session: its cgroup leaf
  (`cgroups`, memory and tasks of all the session's processes), no
  privileges (`privileges`: a private uid on a root host, a private user
  namespace otherwise; no capabilities; ``RLIMIT_NPROC``), no new
  privileges, the seccomp allowlist (`seccomp`) and Landlock (`landlock`);
- `apply`, when the session's limits are known: address space, file size,
  open files, no core dumps, not dumpable, and the cgroup's memory limit;
- `confine`, from the audit layer once it knows the readable directories:
  Landlock for a policy with opted-in directories.

Everything is inherited by the checkpoint forks and none of it can be lifted.
`CONFINEMENT` names what was applied (``Runtime.confinement``).
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import tempfile
from collections.abc import Iterable

from . import cgroups, landlock, privileges, seccomp

PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4

try:  # loaded once, in the zygote: workers only call it (ctypes is refused in cells)
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None


def _prctl(option: int, value: int, arg3: object = 0) -> bool:
    return _LIBC is not None and _LIBC.prctl(option, value, arg3, 0, 0) == 0


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process (the zygote), not to init."""
    if _LIBC is not None:
        _LIBC.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def set_process_name(name: str) -> None:
    """Name this process in ps/top (/proc/PID/comm): cave-spare, cave-worker, cave-checkpoint."""
    if _LIBC is not None:
        _LIBC.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def address_space_in_use() -> int:
    """Current virtual memory size of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def apply(*, memory_limit_mb: int | None, max_file_bytes: int = 0, max_open_files: int = 256) -> int | None:
    """Apply limits to this process; returns the address-space cap in bytes (or None).

    The memory limit is *additional* address space over what the worker uses at
    start (numpy and pandas reserve a lot of virtual memory that is never touched),
    so ``memory_limit_mb`` means roughly "memory a cell may allocate".
    """
    # No setuid escalation, ever (why: a cell that got a shell still cannot gain privileges;
    # also the precondition for unprivileged seccomp and Landlock).
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # Not dumpable: no core files with namespace data, no ptrace by same-uid peers.
    _prctl(PR_SET_DUMPABLE, 0)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # File size cap (why: the runtime's memfd buffers are the only files a worker writes).
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = min(max_open_files, hard) if hard != resource.RLIM_INFINITY else max_open_files
    resource.setrlimit(resource.RLIMIT_NOFILE, (cap, cap))
    # All the session's processes together (checkpoint copies, memfds included): see
    # `cgroup_memory_bytes`. Set through a descriptor the spare opened; closed here.
    _note(cgroups.limit_memory(None if memory_limit_mb is None
                               else cgroup_memory_bytes(memory_limit_mb)))
    if memory_limit_mb is None:
        return None
    # The baseline is read before Landlock closes /proc to the worker (see confine_early).
    limit = (_BASELINE or address_space_in_use()) + memory_limit_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


def cgroup_memory_bytes(memory_limit_mb: int) -> int:
    """The memory cgroup's limit for a session whose cells may allocate ``memory_limit_mb``.

    Twice the cells' allowance: a cell that rewrites a namespace in place makes
    the worker's copy while the checkpoint keeps the original, and a retrieve
    writes a value's buffers to a memfd while the value itself is held. Plus
    room for the interpreter's own pages (copied from the zygote on write).
    """
    return 2 * memory_limit_mb * 1024 * 1024 + _CGROUP_HEADROOM


def private_workdir() -> str:
    """A fresh empty directory to run in (removed by `remove_workdir`)."""
    # Named by pid (unique among live processes): cheaper than mkdtemp's random names.
    path = os.path.join(tempfile.gettempdir(), f"cavelite-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)  # a stale one from a recycled pid
    os.mkdir(path, 0o700)
    return path


def remove_workdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)



# --- kernel confinement ---------------------------------------------------------------------

# Non-secret system files that libraries read lazily (CPU count for BLAS threads, local time).
_SYSTEM_READS = ("/proc/cpuinfo", "/sys/devices/system/cpu", "/etc/localtime", "/dev/null",
                 "/dev/urandom", "/usr/share/zoneinfo",
                 # The dynamic loader: a module imported after the fork (not preloaded)
                 # may dlopen shared libraries such as libstdc++ (public files, no secrets).
                 "/etc/ld.so.cache", "/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")
_CGROUP_HEADROOM = 256 * 1024 * 1024

# What this process applied, in order (``Runtime.confinement`` reports it).
CONFINEMENT: list[str] = []
_SECCOMP_ON = False
_LANDLOCKED: set[str] | None = None
_BASELINE = 0


def _note(applied: Iterable[str]) -> None:
    CONFINEMENT.extend(name for name in applied if name not in CONFINEMENT)


def warm_up(read_roots: Iterable[str]) -> None:
    """In the zygote: find its cgroups, and build what every spare would build for itself."""
    for signals in (False, True):
        seccomp.program(signals=signals, memfd=cgroups.zygote_cgroups() is not None)
    privileges.readable_by_anyone(tuple([*read_roots, *_SYSTEM_READS]))


def fork_spare() -> int:
    """``os.fork()`` for the zygote's spares: each is born in a cgroup leaf of its own."""
    return cgroups.fork_spare()


def sweep() -> None:
    """In the zygote, after each request and at exit: remove the leaves of ended sessions."""
    sessions = cgroups.zygote_cgroups()
    if sessions is not None:
        sessions.sweep()


def close() -> None:
    """In the zygote, once every worker is gone: remove its cgroup directories."""
    sessions = cgroups.zygote_cgroups()
    if sessions is not None:
        sessions.close()


def confine_early(read_roots: Iterable[str], *, landlock_now: bool = True) -> None:
    """What does not depend on the session, done by a spare before it has one.

    ``read_roots``: the directories the worker will read (library and import
    path, plus a policy's opted-in ones when the spare is forked for it). With
    ``landlock_now`` Landlock is applied here too; a spare forked for a policy
    with opted-in directories gets it in `confine`.
    """
    global _SECCOMP_ON, _LANDLOCKED, _BASELINE
    _BASELINE = address_space_in_use()
    roots = [*read_roots, *_SYSTEM_READS]
    cgroups.hold_memory_limit()  # while this process may still open its leaf's files
    dropped = privileges.drop(_LIBC, workdir=os.getcwd(), read_roots=tuple(roots))
    # No privilege gains from here on; seccomp filters also require it of non-root users.
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if landlock_now and landlock.restrict(_LIBC, roots):
        _LANDLOCKED = set(roots)
        _note(["landlock"])
    # Signals are allowed where the kernel keeps them inside the session: another uid
    # cannot be signalled without capabilities, and Landlock scopes them to its domain.
    scoped = landlock.abi(_LIBC) >= landlock.SIGNAL_SCOPE_ABI and (_LANDLOCKED is not None
                                                                    or not landlock_now)
    memfd = cgroups.LEAF is not None and cgroups.LEAF.memory is not None
    _SECCOMP_ON = seccomp.install(_LIBC, signals="private-uid" in dropped or scoped, memfd=memfd)
    if _SECCOMP_ON:
        _note(["seccomp"])
    _note(dropped)


def confine(read_roots: Iterable[str]) -> list[str]:
    """Landlock and seccomp where not applied yet (they are, in a spare); returns all applied."""
    global _SECCOMP_ON, _LANDLOCKED
    roots = [*read_roots, *_SYSTEM_READS]
    if _LANDLOCKED is None or not set(roots) <= _LANDLOCKED:
        if landlock.restrict(_LIBC, roots):
            _LANDLOCKED = set(roots)
            _note(["landlock"])
    if not _SECCOMP_ON:
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        scoped = _LANDLOCKED is not None and landlock.abi(_LIBC) >= landlock.SIGNAL_SCOPE_ABI
        _SECCOMP_ON = seccomp.install(_LIBC, signals=scoped, memfd=False)
        if _SECCOMP_ON:
            _note(["seccomp"])
    return list(CONFINEMENT)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0 when it has none)."""
    return landlock.abi(_LIBC)
