"""Layer 4: the seccomp allowlist, the system calls a worker may make.

Everything not listed is refused with EPERM (libraries fail politely; the
process lives on), and a call made under another ABI (32-bit compat) kills.
The list was built from evidence: every system call the workers made
(after the filter is installed) while the whole test suite and the
benchmarks ran under ``strace -f``, plus what CPython, numpy, pandas and
asyncio are known to need on paths the suite does not take (threads,
``epoll_ctl``, a socketpair for an event loop). Where a call could reach
another process or widen the worker's own bounds, its arguments are
checked too:

- ``prlimit64`` and ``sched_setaffinity`` only on the caller itself (pid 0):
  a worker cannot lower the host's limits or pin it to a CPU;
- ``setpriority``, ``ioprio_set``, ``sched_setscheduler``, ``syslog``,
  ``ptrace``, ``process_vm_*``, ``pidfd_*`` are not listed at all;
- ``clone`` without namespace flags and without ``CLONE_PARENT``; ``clone3``
  (whose flags sit in memory a filter cannot read) answers ENOSYS, so glibc
  falls back to ``clone``; ``fork``/``vfork``/``execve`` are not listed;
- ``openat``/``open`` only without write, create, truncate or O_TMPFILE flags
  (Landlock refuses them too; this also holds where Landlock is missing);
- ``ioctl`` only the terminal and non-blocking queries Python makes (the
  request is compared on its low 32 bits, as the kernel reads it, so
  ``TIOCSTI`` with high bits set is refused too); ``fcntl`` without
  ``F_SETOWN``/``F_SETSIG`` (which would aim SIGIO at another process);
  ``prctl`` only naming the process and flags that restrict it;
- ``socketpair`` only ``AF_UNIX``; ``socket``, ``connect``, ``bind`` are not listed;
- ``kill``/``tgkill``/``tkill``/``rt_(tg)sigqueueinfo`` only when something
  else keeps signals inside the session (a private uid, or Landlock's signal
  scope): the kernel then refuses signals to anyone else, and the worker can
  still ``abort()`` itself; otherwise they are refused;
- ``memfd_create`` only when a memory cgroup bounds the pages a memfd holds
  (RLIMIT_AS does not see them), and never with ``MFD_HUGETLB`` (hugetlb
  pages are not charged to the memory cgroup). Without it the runtime sends
  large buffers inline instead.

Many allowed calls never look at their arguments: the kernel then caches
"allow" for them per syscall number (its constant-action bitmap), so the
filter costs nothing on the hot paths (read, write, recvmsg, mmap, futex).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import platform
import struct

# name: (x86_64, aarch64); None where the architecture has no such call
# (aarch64 has only the *at / p* forms).
_NR: dict[str, tuple[int | None, int | None]] = {
    # file descriptors and I/O on them
    "read": (0, 63), "write": (1, 64), "readv": (19, 65), "writev": (20, 66),
    "pread64": (17, 67), "pwrite64": (18, 68), "preadv": (295, 69), "pwritev": (296, 70),
    "lseek": (8, 62), "close": (3, 57), "close_range": (436, 436), "dup": (32, 23),
    "dup2": (33, None), "dup3": (292, 24), "pipe": (22, None), "pipe2": (293, 59),
    # reading files (opens are checked below)
    "newfstatat": (262, 79), "fstat": (5, 80), "stat": (4, None), "lstat": (6, None),
    "statx": (332, 291), "access": (21, None), "faccessat": (269, 48),
    "faccessat2": (439, 439), "readlink": (89, None), "readlinkat": (267, 78),
    "getdents64": (217, 61), "getcwd": (79, 17),
    # waiting for descriptors (the host socket, asyncio)
    "poll": (7, None), "ppoll": (271, 73), "select": (23, None), "pselect6": (270, 72),
    "epoll_create1": (291, 20), "epoll_ctl": (233, 21), "epoll_wait": (232, None),
    "epoll_pwait": (281, 22), "epoll_pwait2": (441, 441),
    # the sockets the worker already holds
    "sendmsg": (46, 211), "recvmsg": (47, 212), "sendto": (44, 206), "recvfrom": (45, 207),
    "shutdown": (48, 210), "getsockname": (51, 204), "getpeername": (52, 205),
    "getsockopt": (55, 209), "setsockopt": (54, 208),
    # threads and scheduling of the caller
    "futex": (202, 98), "set_robust_list": (273, 99), "rseq": (334, 293),
    "set_tid_address": (218, 96), "sched_yield": (24, 124), "sched_getaffinity": (204, 123),
    "getcpu": (309, 168),
    # memory of the caller
    "brk": (12, 214), "mmap": (9, 222), "munmap": (11, 215), "mprotect": (10, 226),
    "mremap": (25, 216), "madvise": (28, 233), "mbind": (237, 235),
    "get_mempolicy": (239, 236), "set_mempolicy": (238, 237),
    # signal handling of the caller (sending is below)
    "rt_sigaction": (13, 134), "rt_sigprocmask": (14, 135), "rt_sigreturn": (15, 139),
    "sigaltstack": (131, 132), "rt_sigpending": (127, 136), "rt_sigsuspend": (130, 133),
    "rt_sigtimedwait": (128, 137), "restart_syscall": (219, 128),
    # time
    "clock_gettime": (228, 113), "clock_getres": (229, 114), "clock_nanosleep": (230, 115),
    "nanosleep": (35, 101), "gettimeofday": (96, 169), "time": (201, None),
    "setitimer": (38, 103), "getitimer": (36, 102),  # SIGALRM to the caller (namespace deadlines)
    # reading about the caller and the machine
    "getpid": (39, 172), "gettid": (186, 178), "getppid": (110, 173), "getuid": (102, 174),
    "geteuid": (107, 175), "getgid": (104, 176), "getegid": (108, 177),
    "getresuid": (118, 148), "getresgid": (120, 150), "getgroups": (115, 158),
    "uname": (63, 160), "sysinfo": (99, 179), "getrusage": (98, 165), "times": (100, 153),
    "getrandom": (318, 278),
    # ending, and reaping the caller's own children (the checkpoints)
    "exit": (60, 93), "exit_group": (231, 94), "wait4": (61, 260), "waitid": (247, 95),
    # Landlock only ever restricts the caller (a policy's extra directories are applied late)
    "landlock_create_ruleset": (444, 444), "landlock_add_rule": (445, 445),
    "landlock_restrict_self": (446, 446),
    "arch_prctl": (158, None),  # x86_64 thread-pointer setup of the caller
    # checked below
    "openat": (257, 56), "open": (2, None), "openat2": (437, 437), "ioctl": (16, 29),
    "fcntl": (72, 25), "prctl": (157, 167), "prlimit64": (302, 261),
    "sched_setaffinity": (203, 122), "clone": (56, 220), "clone3": (435, 435),
    "socketpair": (53, 199), "memfd_create": (319, 279),
    "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138), "rt_tgsigqueueinfo": (297, 240),
}

_CHECKED = frozenset(["openat", "open", "openat2", "ioctl", "fcntl", "prctl", "prlimit64",
                      "sched_setaffinity", "clone", "clone3", "socketpair", "memfd_create"])
_SIGNALS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")

_ARCH = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}  # column in _NR, AUDIT_ARCH_*

# Flags that make an open write, create or truncate (the same values on both architectures).
_WRITE_OPEN = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20000000  # WRONLY RDWR CREAT TRUNC APPEND TMPFILE
# TCGETS TIOCGWINSZ FIONREAD FIONBIO FIONCLEX FIOCLEX: isatty, terminal size, setblocking.
_IOCTLS = (0x5401, 0x5413, 0x541B, 0x5421, 0x5450, 0x5451)
# F_DUPFD F_GETFD F_SETFD F_GETFL F_SETFL F_DUPFD_CLOEXEC F_ADD_SEALS F_GET_SEALS
_FCNTLS = (0, 1, 2, 3, 4, 1030, 1033, 1034)
# PR_GET_DUMPABLE PR_SET_NAME PR_GET_NAME PR_SET_NO_NEW_PRIVS PR_GET_NO_NEW_PRIVS PR_SET_VMA
# (PR_SET_DUMPABLE is allowed with 0 only: a worker may not make itself dumpable again).
_PRCTLS = (3, 15, 16, 38, 39, 0x53564D41)
_PR_SET_DUMPABLE = 4
# CLONE_NEWNS NEWCGROUP NEWUTS NEWIPC NEWUSER NEWPID NEWNET, and CLONE_PARENT.
_CLONE_REFUSED = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000 | 0x00008000
_MFD_ALLOWED = 0x1 | 0x2 | 0x8 | 0x10  # CLOEXEC ALLOW_SEALING NOEXEC_SEAL EXEC (no HUGETLB)
_AF_UNIX = 1

_ALLOW = 0x7FFF0000
_KILL = 0x80000000


def _errno(code: int) -> int:
    return 0x00050000 | code


# classic BPF opcodes
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06


def _op(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _load_arg(index: int) -> bytes:
    # seccomp_data: nr (4), arch (4), instruction pointer (8), then six 8-byte arguments.
    # The low 32 bits (little endian: the first word) are what the kernel reads of an
    # int, pid_t or unsigned int argument; high bits set by a caller are ignored there too.
    return _op(_LD_W_ABS, 0, 0, 16 + 8 * index)


def _one_of(index: int, values: tuple[int, ...], refusal: int = _errno(errno.EPERM)) -> list[bytes]:
    code = [_load_arg(index)]
    for value in values:
        code += [_op(_JEQ, 0, 1, value), _op(_RET, 0, 0, _ALLOW)]
    return [*code, _op(_RET, 0, 0, refusal)]


def _bits_clear(index: int, mask: int, refusal: int = _errno(errno.EPERM)) -> list[bytes]:
    return [_load_arg(index), _op(_JSET, 0, 1, mask), _op(_RET, 0, 0, refusal),
            _op(_RET, 0, 0, _ALLOW)]


def _prctl_rule() -> list[bytes]:
    code = [_load_arg(0)]
    for option in _PRCTLS:
        code += [_op(_JEQ, 0, 1, option), _op(_RET, 0, 0, _ALLOW)]
    return [*code,
            _op(_JEQ, 0, 3, _PR_SET_DUMPABLE),  # another option: refused (the last return)
            _load_arg(1),
            _op(_JEQ, 0, 1, 0),                 # PR_SET_DUMPABLE, 0: allowed
            _op(_RET, 0, 0, _ALLOW),
            _op(_RET, 0, 0, _errno(errno.EPERM))]


def _rules(column: int, *, signals: bool, memfd: bool) -> dict[int, list[bytes]]:
    """The checked calls: syscall number -> the code that decides it."""
    def nr(name: str) -> int | None:
        return _NR[name][column]

    eacces, eperm = _errno(errno.EACCES), _errno(errno.EPERM)
    rules: dict[int | None, list[bytes]] = {
        nr("openat"): _bits_clear(2, _WRITE_OPEN, eacces),
        nr("open"): _bits_clear(1, _WRITE_OPEN, eacces),
        nr("openat2"): [_op(_RET, 0, 0, _errno(errno.ENOSYS))],  # flags in memory: use openat
        nr("ioctl"): _one_of(1, _IOCTLS),
        nr("fcntl"): _one_of(1, _FCNTLS),
        nr("prctl"): _prctl_rule(),
        nr("prlimit64"): _one_of(0, (0,)),
        nr("sched_setaffinity"): _one_of(0, (0,)),
        nr("clone"): _bits_clear(0, _CLONE_REFUSED),
        nr("clone3"): [_op(_RET, 0, 0, _errno(errno.ENOSYS))],  # glibc falls back to clone
        nr("socketpair"): _one_of(0, (_AF_UNIX,)),
        nr("memfd_create"): _bits_clear(1, ~_MFD_ALLOWED & 0xFFFFFFFF) if memfd
        else [_op(_RET, 0, 0, eperm)],
    }
    for name in _SIGNALS:
        rules[nr(name)] = [_op(_RET, 0, 0, _ALLOW if signals else eperm)]
    return {k: v for k, v in rules.items() if k is not None}


@functools.lru_cache(maxsize=4)
def program(*, signals: bool, memfd: bool) -> bytes | None:
    """The filter for this architecture (None where it has no table).

    ``signals``: whether the kill family is allowed (only when a private uid or
    Landlock's signal scope keeps signals in the session); ``memfd``: whether
    ``memfd_create`` is (only when a memory cgroup bounds what memfds hold).
    """
    arch = _ARCH.get(platform.machine())
    if arch is None:
        return None
    column, audit_arch = arch
    code = [
        _op(_LD_W_ABS, 0, 0, 4),              # A = seccomp_data.arch
        _op(_JEQ, 1, 0, audit_arch),          # another ABI (32-bit compat): kill
        _op(_RET, 0, 0, _KILL),
        _op(_LD_W_ABS, 0, 0, 0),              # A = seccomp_data.nr
        _op(_JGE, 0, 1, 0x40000000),          # x32 numbers: refuse
        _op(_RET, 0, 0, _errno(errno.EPERM)),
    ]
    # The checked calls first: each block is skipped unless its number matches (A still
    # holds the number then); a block loads arguments and ends in returns on every path.
    for number, block in _rules(column, signals=signals, memfd=memfd).items():
        code += [_op(_JEQ, 0, len(block), number), *block]
    for name, numbers in _NR.items():
        plain = numbers[column]
        if plain is None or name in _CHECKED or name in _SIGNALS:
            continue
        code += [_op(_JEQ, 0, 1, plain), _op(_RET, 0, 0, _ALLOW)]
    code.append(_op(_RET, 0, 0, _errno(errno.EPERM)))
    return b"".join(code)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


def install(libc: ctypes.CDLL | None, *, signals: bool, memfd: bool) -> bool:
    """Install the filter on this process (and so on every process it forks)."""
    code = program(signals=signals, memfd=memfd)
    if code is None or libc is None:
        return False
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    return bool(libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0)
