"""Layer 4: operating-system limits applied to a worker right after the fork."""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import tempfile

PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4


try:  # loaded once, in the zygote: workers only call it
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None


def _prctl(option: int, value: int) -> bool:
    return _LIBC is not None and _LIBC.prctl(option, value, 0, 0, 0) == 0


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
    # No setuid escalation, ever (why: a cell that got a shell still cannot gain privileges).
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # Not dumpable: no core files with namespace data, no ptrace by same-uid peers.
    _prctl(PR_SET_DUMPABLE, 0)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Files may not be written at all (RLIMIT_FSIZE=0 turns writes into SIGXFSZ/EFBIG).
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = min(max_open_files, hard) if hard != resource.RLIM_INFINITY else max_open_files
    resource.setrlimit(resource.RLIMIT_NOFILE, (cap, cap))
    if memory_limit_mb is None:
        return None
    limit = address_space_in_use() + memory_limit_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


def private_workdir() -> str:
    """A fresh empty directory to run in (removed by `remove_workdir`)."""
    # Named by pid (unique among live processes): cheaper than mkdtemp's random names.
    path = os.path.join(tempfile.gettempdir(), f"cavelite-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)  # a stale one from a recycled pid
    os.mkdir(path, 0o700)
    return path


def remove_workdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
