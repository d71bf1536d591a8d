"""Layer 4: operating-system limits applied to a worker right after the fork.

Two parts. `apply` sets resource limits and process flags (address space,
file size, open files, no core dumps, no new privileges, not dumpable).
`confine` is called by the audit layer once it knows the readable
directories: it asks the kernel itself to refuse what the upper layers
refuse, so that a cell that corrupted the interpreter's memory (numpy's
raw-pointer protocols make that conceivable) still cannot leave the cave:

- Landlock (Linux >= 5.13, unprivileged): files are readable only under the
  library roots and opted-in directories, nothing is writable or executable,
  TCP bind/connect is refused (ABI >= 4), and signals and abstract unix
  sockets cannot reach processes outside the worker's domain (ABI >= 6);
- seccomp (x86_64, aarch64): no new sockets, no exec, no ptrace or
  cross-process memory access, no io_uring (it would bypass the filter),
  no namespaces, mounts, keyrings or BPF.

Both are inherited by the checkpoint forks and cannot be lifted.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import resource
import shutil
import struct
import tempfile
from collections.abc import Iterable

PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

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
    if memory_limit_mb is None:
        return None
    # The baseline is read before Landlock closes /proc to the worker (see confine_early).
    limit = (_BASELINE or address_space_in_use()) + memory_limit_mb * 1024 * 1024
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


# --- kernel confinement ---------------------------------------------------------------------

# Non-secret system files that libraries read lazily (CPU count for BLAS threads, local time).
_SYSTEM_READS = ("/proc/cpuinfo", "/sys/devices/system/cpu", "/etc/localtime", "/dev/null",
                 "/dev/urandom", "/usr/share/zoneinfo",
                 # The dynamic loader: a module imported after the fork (not preloaded)
                 # may dlopen shared libraries such as libstdc++ (public files, no secrets).
                 "/etc/ld.so.cache", "/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")

CONFINEMENT: list[str] = []  # what `confine` managed to apply in this process (for tests/docs)


def confine(read_roots: Iterable[str]) -> list[str]:
    """Apply Landlock and seccomp (where the kernel supports them); returns what was applied."""
    applied = []
    roots = [*read_roots, *_SYSTEM_READS]
    if _LANDLOCKED is not None and set(roots) <= _LANDLOCKED:
        applied.append("landlock")  # done by the spare, for exactly these directories
    elif _landlock(roots):
        applied.append("landlock")
    if _SECCOMP_ON or _seccomp():
        applied.append("seccomp")
    CONFINEMENT[:] = applied
    return applied


_SECCOMP_ON = False
_LANDLOCKED: set[str] | None = None
_BASELINE = 0


def confine_early(read_roots: Iterable[str] | None) -> None:
    """What of `confine` does not depend on the session, done by a spare before it has one.

    With ``read_roots`` (the library and import-path directories, i.e. a policy
    without extra readable directories) Landlock is applied too; the zygote
    sends sessions whose policy opts more directories in to a fresh worker.
    """
    global _SECCOMP_ON, _LANDLOCKED, _BASELINE
    _BASELINE = address_space_in_use()
    # No privilege gains from here on; seccomp filters also require it of non-root users.
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _SECCOMP_ON = _seccomp()
    if read_roots is not None:
        roots = [*read_roots, *_SYSTEM_READS]
        if _landlock(roots):
            _LANDLOCKED = set(roots)


_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LL_READ_FILE, _LL_READ_DIR = 1 << 2, 1 << 3


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0 when it has none)."""
    if _LIBC is None:
        return 0
    return max(int(_LIBC.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, 1)), 0)  # 1 = ..._VERSION


def _landlock(roots: Iterable[str]) -> bool:
    libc = _LIBC
    if libc is None:
        return False
    abi = landlock_abi()
    if abi < 1:
        return False  # no Landlock in this kernel: the audit hook still refuses opens
    fs = (1 << 13) - 1
    if abi >= 2:
        fs |= 1 << 13  # REFER: no re-linking files across directories
    if abi >= 3:
        fs |= 1 << 14  # TRUNCATE
    if abi >= 5:
        fs |= 1 << 15  # IOCTL_DEV
    net = 0b11 if abi >= 4 else 0  # BIND_TCP | CONNECT_TCP: no TCP at all
    scoped = 0b11 if abi >= 6 else 0  # abstract unix sockets and signals stay inside
    if abi >= 6:
        attr = struct.pack("=QQQ", fs, net, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", fs, net)
    else:
        attr = struct.pack("=Q", fs)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, buf, len(attr), 0)
    if ruleset < 0:
        return False
    try:
        for root in dict.fromkeys(roots):
            try:
                fd = os.open(root, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a root that does not exist here needs no rule
            try:
                is_dir = os.path.isdir(root)
                # Read-only, and only what this kind of file can have (the kernel checks).
                access = _LL_READ_FILE | _LL_READ_DIR if is_dir else _LL_READ_FILE
                rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)
                libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, 1, rule, 0)  # 1 = PATH_BENEATH
            finally:
                os.close(fd)
        return libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) == 0
    finally:
        os.close(ruleset)


# Syscalls a worker never needs (numbers per architecture). Each is refused with EPERM
# rather than killing the process, so libraries fail politely.
_SECCOMP_DENIED = {
    # socket connect accept bind listen accept4 execve execveat ptrace process_vm_readv/writev
    # io_uring_setup/enter/register bpf perf_event_open unshare setns mount userfaultfd
    # add_key request_key keyctl kexec_load init_module finit_module
    "x86_64": (0xC000003E, (41, 42, 43, 49, 50, 288, 59, 322, 101, 310, 311, 425, 426, 427,
                            321, 298, 272, 308, 165, 323, 248, 249, 250, 246, 175, 313)),
    "aarch64": (0xC00000B7, (198, 203, 202, 200, 201, 242, 221, 281, 117, 270, 271, 425, 426,
                             427, 280, 241, 97, 268, 40, 282, 217, 218, 219, 104, 105, 273)),
}
_RET_ALLOW, _RET_EPERM, _RET_KILL = 0x7FFF0000, 0x00050000 | 1, 0x80000000


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@functools.lru_cache(maxsize=1)
def seccomp_program() -> bytes | None:
    """The filter, built once (in the zygote): a worker only has to install it."""
    table = _SECCOMP_DENIED.get(platform.machine())
    if table is None:
        return None  # unknown architecture: Landlock and the audit hook still hold
    arch, numbers = table

    def op(code: int, jt: int, jf: int, k: int) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k)

    ld_w_abs, jeq_k, jge_k, ret_k = 0x20, 0x15, 0x35, 0x06
    prog = [
        op(ld_w_abs, 0, 0, 4),             # A = seccomp_data.arch
        op(jeq_k, 1, 0, arch),             # another ABI (32-bit compat): kill
        op(ret_k, 0, 0, _RET_KILL),
        op(ld_w_abs, 0, 0, 0),             # A = seccomp_data.nr
        op(jge_k, 0, 1, 0x40000000),       # x32 syscalls: refuse
        op(ret_k, 0, 0, _RET_EPERM),
    ]
    for nr in numbers:
        prog += [op(jeq_k, 0, 1, nr), op(ret_k, 0, 0, _RET_EPERM)]
    prog.append(op(ret_k, 0, 0, _RET_ALLOW))
    return b"".join(prog)


def _seccomp() -> bool:
    program = seccomp_program()
    if program is None:
        return False
    code = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(code, ctypes.c_void_p))
    return _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog))
