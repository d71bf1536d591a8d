"""Layer 4: a worker holds no privileges, and sessions are apart from each other.

On a root host a spare takes a fresh unprivileged uid (unique among live
sessions) before it is handed a session, after making its private working
directory its own. Then the kernel itself refuses what one session could do
to another, to the zygote or to the host: signals, renice, CPU pinning,
resource limits, I/O priority and ptrace of a process of another uid need
capabilities the worker no longer has; ``RLIMIT_NPROC``, counted per uid,
bounds the processes and threads of this session alone.

On a host that is not root there is no uid to switch to. The spare enters a
user namespace of its own instead (where the kernel allows unprivileged ones)
with the same uid mapped onto itself: it gains nothing (the capabilities it
gets inside are dropped at once, and seccomp refuses new namespaces), but
``RLIMIT_NPROC`` then counts this session's tasks, not every process of the
user. Signals to the host are kept inside by seccomp or Landlock instead.

If the Python installation is readable by root only (``/root/.pyenv``), an
unprivileged uid could not import a module not preloaded in the zygote, so
``CAP_DAC_READ_SEARCH`` is kept, and only it: Landlock still confines reads
to the library roots, and the calls that make it dangerous
(``open_by_handle_at``) are not on the seccomp allowlist.
``Runtime.confinement`` then says ``capabilities:dac_read_search``.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import resource
import stat
from collections.abc import Iterable

# Tasks (processes and threads) a session may hold: the worker, its checkpoint, the
# one being retired, asyncio's default thread pool (at most 32) and BLAS threads.
MAX_TASKS = 64

# Session uids lie above the ranges distributions and systemd hand out (containers
# end at 0x6FFFFFFF) and below 0x7FFE0000 (systemd's "foreign" range). They come
# from a counter every zygote of the machine shares (`_COUNTER`, root's alone), so a
# uid comes back only after 268 million sessions; where that file cannot be used,
# from the spare's pid (unique among live processes; pid_max is at most 2**22), after
# checking that no process still has it.
FIRST_SESSION_UID = 0x70000000
_SESSION_UIDS = 0x7FFE0000 - FIRST_SESSION_UID
_COUNTER_DIR = "/run/cavelite"
_COUNTER = _COUNTER_DIR + "/next-session-uid"
_PID_SPAN = 1 << 22
_SLOTS = 31

_CAP_DAC_READ_SEARCH = 2
_PR_SET_KEEPCAPS, _PR_CAPBSET_DROP, _PR_SET_SECUREBITS, _PR_CAP_AMBIENT = 8, 24, 28, 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
# NOROOT + locked (uid 0 would not regain capabilities on exec), no ambient raising + locked.
_SECUREBITS = 0x1 | 0x2 | 0x40 | 0x80
_SECBIT_KEEP_CAPS = 0x10
_CLONE_NEWUSER = 0x10000000
_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def held_capabilities(libc: ctypes.CDLL) -> tuple[int, int]:
    """(effective, permitted) capability masks of this process, as the kernel reports them."""
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    effective = data[0].effective | data[1].effective << 32
    permitted = data[0].permitted | data[1].permitted << 32
    return effective, permitted


def _set_capabilities(libc: ctypes.CDLL, keep: int) -> None:
    """Effective = permitted = ``keep`` (a mask), nothing inheritable or ambient."""
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = keep & 0xFFFFFFFF
    data[1].effective = data[1].permitted = keep >> 32
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


def _drop_bounding_set(libc: ctypes.CDLL, keep: int) -> None:
    """No capability outside ``keep`` can ever come back (needs CAP_SETPCAP, held now)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except OSError:
        last = 63
    for cap in range(last + 1):
        if not keep & (1 << cap):
            libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)


def _uid_in_use(uid: int) -> bool:
    """Whether any process runs with this uid (real, effective, saved or fs)."""
    wanted = str(uid).encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                status = f.read()
        except OSError:
            continue  # it exited meanwhile
        start = status.find(b"\nUid:")
        if start >= 0 and wanted in status[start + 5:status.find(b"\n", start + 1)].split():
            return True
    return False


def _mapped(uid: int) -> bool:
    """Whether this uid exists in our user namespace (a rootless container maps a few only)."""
    try:
        with open("/proc/self/uid_map") as f:
            ranges = [tuple(int(x) for x in line.split()) for line in f if line.strip()]
    except (OSError, ValueError):
        return False
    return any(inside <= uid < inside + count for inside, _outside, count in ranges)


def _counted_uid() -> int | None:
    """The next session uid from the machine's counter (None where there is none to use)."""
    try:
        os.makedirs(_COUNTER_DIR, mode=0o700, exist_ok=True)
        st = os.lstat(_COUNTER_DIR)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
            return None  # not a directory only root controls: do not trust its counter
        fd = os.open(_COUNTER, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # zygotes of other hosts take uids too
        text = os.pread(fd, 32, 0).strip()
        number = int(text) if text.isdigit() else 0
        os.pwrite(fd, b"%-20d\n" % (number + 1), 0)  # fixed width: no truncation needed
        return FIRST_SESSION_UID + number % _SESSION_UIDS
    except OSError:
        return None
    finally:
        os.close(fd)


def free_session_uid(pid: int) -> int | None:
    """A uid no live process has: from the machine's counter, else from this spare's pid.

    A pid can be reused while a session that started under it lives on in its
    checkpoint (which keeps the uid), hence the check and the further slots.
    None where no such uid can be taken (it is not mapped in this namespace).
    """
    counted = _counted_uid()
    if counted is not None:
        return counted if _mapped(counted) else None
    for slot in range(_SLOTS):
        uid = FIRST_SESSION_UID + slot * _PID_SPAN + pid
        if not _mapped(uid):
            return None
        if not _uid_in_use(uid):
            return uid
    return None


@functools.lru_cache(maxsize=8)
def readable_by_anyone(roots: tuple[str, ...]) -> bool:
    """Whether an unprivileged uid can read these directories (so imports work after the drop)."""
    for root in roots:
        path = os.path.realpath(root)
        if not os.path.exists(path):
            continue
        parts = path.split(os.sep)
        for depth in range(2, len(parts) + 1):
            st = os.stat(os.sep.join(parts[:depth]) or os.sep)
            if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXOTH:
                return False  # a directory on the way cannot be entered
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
    return True


def _switch_uid(libc: ctypes.CDLL, uid: int, workdir: str, keep: int) -> None:
    os.chown(workdir, uid, uid)  # the workdir (0700) is the session's own, and no one else's
    bits = _SECUREBITS | (_SECBIT_KEEP_CAPS if keep else 0)
    if libc.prctl(_PR_SET_SECUREBITS, bits, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECUREBITS failed")
    _drop_bounding_set(libc, keep)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # permitted set kept only with KEEP_CAPS; effective cleared
    _set_capabilities(libc, keep)
    libc.prctl(_PR_SET_KEEPCAPS, 0, 0, 0, 0)


def _enter_user_namespace(libc: ctypes.CDLL) -> bool:
    """A private user namespace with this process's own uid and gid mapped onto themselves."""
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(_CLONE_NEWUSER) != 0:
        return False  # not allowed here (a sysctl, AppArmor, a container's seccomp)
    try:
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")  # required before an unprivileged gid_map
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError:
        pass  # unmapped ids still work for this process; the counting is what we need
    # Inside, this process holds every capability (over this empty namespace only): drop them.
    libc.prctl(_PR_SET_SECUREBITS, _SECUREBITS, 0, 0, 0)
    _drop_bounding_set(libc, 0)
    return True


def drop(libc: ctypes.CDLL | None, *, workdir: str, read_roots: Iterable[str],
         uid: int | None = None) -> list[str]:
    """Give up every privilege a worker does not need; returns what was applied.

    Called by a spare before seccomp is installed (these calls are not on its
    allowlist). ``uid`` is the session uid to take when this process is root
    (by default a free one derived from the pid).
    """
    if libc is None:
        return []
    applied = []
    keep = 0
    session_uid = None
    if os.geteuid() == 0:
        session_uid = uid if uid is not None else free_session_uid(os.getpid())
    if session_uid is not None:
        if not readable_by_anyone(tuple(read_roots)):
            keep = 1 << _CAP_DAC_READ_SEARCH
        _switch_uid(libc, session_uid, workdir, keep)
        applied.append("private-uid")
    elif _enter_user_namespace(libc):  # not root, or root of a namespace without spare uids
        applied.append("user-namespace")
    try:
        _set_capabilities(libc, keep)  # dropping is always allowed
    except OSError:
        pass
    if "private-uid" in applied or "user-namespace" in applied:
        # Counted per uid (per user namespace): this session's tasks only.
        resource.setrlimit(resource.RLIMIT_NPROC, (MAX_TASKS, MAX_TASKS))
        applied.append("nproc")
    effective, permitted = held_capabilities(libc)
    if not effective and not permitted:
        applied.append("no-capabilities")
    elif (effective | permitted) == 1 << _CAP_DAC_READ_SEARCH:
        applied.append("capabilities:dac_read_search")
    return applied
