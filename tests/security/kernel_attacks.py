"""The kernel layer alone, attacked by a session whose interpreter is taken.

Run by tests/security/test_kernel_layer.py as ``python kernel_attacks.py JSON``.
This process plays the zygote: it forks sessions the way the zygote forks
spares (`limits.fork_spare`, each child born in a cgroup leaf of its own),
and each session applies the kernel layer the way a worker does
(`confine_early`, `apply`, `confine`) and nothing above it: no policy, no
guards, no audit hook. The attacking session then runs raw Python and
ctypes, as code that owns the interpreter would, against the host (the test
process), this zygote and a neighbour session. The zygote reports what each
attempt returned and measures the state of everyone afterwards; the test
checks that the harm did not happen.

``mode`` "nobody" first drops this zygote to uid 65534 with no capabilities:
the path of a host that is not root.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl  # noqa: F401  (imported before the zygote may drop to an unprivileged uid)
import json
import os
import resource
import select
import signal
import socket  # noqa: F401
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from cavelite.security import audit, cgroups, limits  # noqa: E402

LIBC = ctypes.CDLL(None, use_errno=True)
ROOTS = audit.session_independent_roots()
IOPRIO_WHO_PROCESS, IOPRIO_IDLE = 1, 3 << 13


def syscall(nr: int, *args: int) -> int:
    ctypes.set_errno(0)
    ret = LIBC.syscall(nr, *[ctypes.c_long(a) for a in args])
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, errno.errorcode.get(err, str(err)))
    return int(ret)


def enter_session(memory_limit_mb: int | None) -> None:
    """What a spare and then a worker apply of layer 4, in their order."""
    os.setsid()
    os.chdir(limits.private_workdir())
    limits.confine_early(ROOTS)
    limits.apply(memory_limit_mb=memory_limit_mb, max_file_bytes=1 << 30)
    limits.confine(ROOTS)


def state(pid: int) -> dict[str, object]:
    """What an attack on this process would change (read by the zygote, unconfined)."""
    with open(f"/proc/{pid}/limits") as f:
        limits_text = f.read()
    return {
        "nice": os.getpriority(os.PRIO_PROCESS, pid),
        "affinity": sorted(os.sched_getaffinity(pid)),
        "limits": limits_text,
        "ioprio": syscall(252, IOPRIO_WHO_PROCESS, pid),  # ioprio_get
        "sched": os.sched_getscheduler(pid),
    }


def attempt(results: dict[str, str], name: str, fn) -> None:  # type: ignore[no-untyped-def]
    try:
        out = fn()
        results[name] = "DONE " + repr(out)[:120]
    except OSError as exc:
        results[name] = f"refused {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    except Exception as exc:  # noqa: BLE001 - any failure is a refusal here
        results[name] = f"refused {type(exc).__name__}"


def attacks(host: int, zygote: int, neighbour: int, mode: str) -> dict[str, str]:
    results: dict[str, str] = {}
    targets = {"host": host, "zygote": zygote, "neighbour": neighbour}
    for who, pid in targets.items():
        attempt(results, f"renice_{who}", lambda pid=pid: os.setpriority(os.PRIO_PROCESS, pid, 19))
        attempt(results, f"pin_{who}", lambda pid=pid: os.sched_setaffinity(pid, {0}))
        attempt(results, f"prlimit_{who}",
                lambda pid=pid: resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, 3)))
        attempt(results, f"ioprio_{who}",
                lambda pid=pid: syscall(251, IOPRIO_WHO_PROCESS, pid, IOPRIO_IDLE))
        attempt(results, f"sched_idle_{who}",
                lambda pid=pid: os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0)))
        attempt(results, f"ptrace_{who}", lambda pid=pid: syscall(101, 16, pid, 0, 0))
        attempt(results, f"pidfd_{who}", lambda pid=pid: syscall(434, pid, 0))
    # The host gets SIGURG (ignored unless handled: the test counts it); the others SIGKILL.
    attempt(results, "kill_host", lambda: os.kill(host, signal.SIGURG))
    attempt(results, "tgkill_host", lambda: syscall(234, host, host, signal.SIGURG))
    attempt(results, "kill_zygote", lambda: os.kill(zygote, signal.SIGKILL))
    attempt(results, "kill_neighbour", lambda: os.kill(neighbour, signal.SIGKILL))
    if mode == "nobody":  # as root, a failure here would kill every process on the machine
        attempt(results, "kill_everyone", lambda: os.kill(-1, signal.SIGKILL))
    attempt(results, "renice_my_user", lambda: os.setpriority(os.PRIO_USER, 0, 19))
    attempt(results, "setown_sigio_host", lambda: fcntl.fcntl(0, 8, host))  # F_SETOWN
    attempt(results, "syslog_read", lambda: (lambda buf: (syscall(103, 3, ctypes.addressof(buf),
                                                                    4096), buf.raw[:80]))(
        ctypes.create_string_buffer(4096)))
    attempt(results, "kmsg_read", lambda: os.read(os.open("/dev/kmsg", os.O_RDONLY), 200))
    attempt(results, "regain_root", lambda: os.setresuid(0, 0, 0))
    unlimited = (ctypes.c_uint64 * 2)(2**64 - 1, 2**64 - 1)
    for name, number in (("as", resource.RLIMIT_AS), ("nproc", resource.RLIMIT_NPROC),
                         ("nofile", resource.RLIMIT_NOFILE), ("fsize", resource.RLIMIT_FSIZE)):
        attempt(results, f"raise_{name}_limit",  # prlimit64 on itself, past the hard limit
                lambda number=number: syscall(302, 0, number, ctypes.addressof(unlimited), 0))
    attempt(results, "new_user_namespace", lambda: syscall(272, 0x10000000))  # unshare
    attempt(results, "clone3", lambda: syscall(435, 0, 0))
    attempt(results, "clone_new_namespace", lambda: syscall(56, 0x10000000 | signal.SIGCHLD, 0, 0, 0, 0))
    attempt(results, "exec", lambda: os.execv("/bin/true", ["true"]))
    attempt(results, "socket", lambda: socket.socket())
    attempt(results, "shm_file", lambda: os.open("/dev/shm/cave-kernel-attack", os.O_CREAT | os.O_WRONLY))
    attempt(results, "io_uring", lambda: syscall(425, 8, ctypes.addressof(ctypes.create_string_buffer(120))))
    attempt(results, "bpf", lambda: syscall(321, 0, 0, 0))
    attempt(results, "perf_event_open", lambda: syscall(298, 0, 0, -1, -1, 0))
    attempt(results, "keyctl", lambda: syscall(250, 0, 0))
    attempt(results, "tiocsti", lambda: syscall(16, 0, (1 << 32) | 0x5412,
                                               ctypes.addressof(ctypes.c_char(b"x"))))
    attempt(results, "make_dumpable", lambda: syscall(157, 4, 1))  # PR_SET_DUMPABLE 1
    attempt(results, "host_environ", lambda: open(f"/proc/{host}/environ", "rb").read(80))
    for i, path in enumerate(cgroup_files()):
        attempt(results, f"cgroup_write_{i}:{os.path.basename(path)}",
                lambda path=path: os.write(os.open(path, os.O_WRONLY), str(os.getpid()).encode()
                                           if path.endswith("procs") else b"max"))
    return results


def cgroup_files() -> list[str]:
    """This session's limit files and the zygote's cgroup (to escape into)."""
    leaf = cgroups.LEAF
    if leaf is None:
        return []
    files = [os.path.join(p, "cgroup.procs") for p in leaf.paths]
    files += [os.path.join(os.path.dirname(os.path.dirname(p)), "cgroup.procs") for p in leaf.paths]
    if leaf.memory is not None:
        files.append(os.path.join(leaf.memory[1], "memory.limit_in_bytes"
                                  if leaf.memory[0] == 1 else "memory.max"))
    return files


def fork_bomb() -> dict[str, object]:
    """Fork until refused; every child waits for the bomb to end; report how many."""
    read_end, write_end = os.pipe()
    count, error = 0, ""
    while count < 500:  # far above the bound; a failing layer must not hurt the machine
        try:
            pid = os.fork()
        except OSError as exc:
            error = errno.errorcode.get(exc.errno or 0, "")
            break
        if pid == 0:
            os.close(write_end)
            os.read(read_end, 1)
            os._exit(0)
        count += 1
    return {"forked": count, "error": error, "release": write_end}


def memfd_bomb(chunk_mb: int) -> dict[str, object]:
    """Fill memfds (pages RLIMIT_AS does not see) until refused; report what was held."""
    held, fds, error = 0, [], ""
    chunk = b"\x01" * (chunk_mb << 20)
    while held < 64 << 30:
        try:
            fd = os.memfd_create("bomb")
            fds.append(fd)
            os.write(fd, chunk)
        except OSError as exc:
            error = errno.errorcode.get(exc.errno or 0, "")
            break
        held += len(chunk)
    return {"held_mb": held >> 20, "error": error}


def report(fd: int, data: dict[str, object]) -> None:
    os.write(fd, (json.dumps(data) + "\n").encode())


_RELEASES: list[int] = []  # the zygote's ends of lingering sessions' pipes (no child keeps one)


def session(memory_limit_mb: int | None, work, linger: bool = False):  # type: ignore[no-untyped-def]
    """Fork a session that runs ``work()`` and reports (with ``linger``, then waits until
    `release_all`); returns (pid, read end of its report, its cgroup leaf)."""
    read_end, write_end = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = limits.fork_spare()
    if pid == 0:
        os.close(read_end)
        os.close(hold_w)
        for fd in _RELEASES:
            os.close(fd)
        enter_session(memory_limit_mb)
        data = {"confinement": list(limits.CONFINEMENT), "uid": os.getuid()}
        data.update(work())
        report(write_end, data)
        if linger:
            os.read(hold_r, 1)
        os._exit(0)
    os.close(write_end)
    os.close(hold_r)
    _RELEASES.append(hold_w)
    sessions = cgroups.zygote_cgroups()
    leaf = sessions.leaves[-1] if sessions is not None and sessions.leaves else None
    return pid, read_end, leaf


def read_report(fd: int, timeout: float = 120) -> dict[str, object]:
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return {"timeout": True}
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    text = b"".join(chunks).decode()
    return json.loads(text) if text else {"died": True}


def leaf_usage(leaf: cgroups.Leaf | None) -> dict[str, int]:
    """Limits and peaks of a session's leaf (the directory outlives its processes)."""
    out: dict[str, int] = {}
    for path in leaf.paths if leaf else ():
        for key, name in (("memory_limit", "memory.limit_in_bytes"),
                          ("memory_peak", "memory.max_usage_in_bytes"),
                          ("memory_limit", "memory.max"), ("memory_peak", "memory.peak"),
                          ("pids_max", "pids.max"), ("pids_peak", "pids.peak")):
            try:
                with open(os.path.join(path, name)) as f:
                    out[key] = int(f.read())
            except (OSError, ValueError):
                pass
    return out


def main() -> None:
    args = json.loads(sys.argv[1])
    mode, host = args["mode"], args["host"]
    if mode == "nobody":
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)  # from root: every capability goes too
    out: dict[str, object] = {"zygote": os.getpid()}
    LIBC.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER, as the zygote: orphans come back here
    limits.warm_up(ROOTS)
    # A neighbour session that only waits while the attacker works (its state is compared).
    neighbour, neighbour_report, _ = session(None, lambda: {"ready": True}, linger=True)
    out["neighbour_ready"] = read_report(neighbour_report)
    before = {"zygote": state(os.getpid()), "neighbour": state(neighbour)}
    kind, zygote = args["attack"], os.getpid()
    if kind == "acts":
        _, fd, leaf = session(args.get("memory_limit_mb"),
                              lambda: {"results": attacks(host, zygote, neighbour, mode)})
        out["attacker"] = read_report(fd)
    elif kind == "fork_bomb":
        def bomb() -> dict[str, object]:
            found = fork_bomb()
            os.close(found.pop("release"))  # type: ignore[arg-type]
            return found
        _, fd, leaf = session(None, bomb)
        out["attacker"] = read_report(fd)
        probe = os.fork()  # the zygote itself can still fork after the bomb
        if probe == 0:
            os._exit(7)
        out["zygote_fork"] = os.waitstatus_to_exitcode(os.waitpid(probe, 0)[1])
    elif kind == "memfd_bomb":
        attacker, fd, leaf = session(args["memory_limit_mb"], lambda: memfd_bomb(args["chunk_mb"]),
                                     linger=True)
        out["attacker"] = read_report(fd)
        out["leaf"] = leaf_usage(leaf)
        if out["attacker"].get("died"):  # type: ignore[union-attr]
            out["attacker_exit"] = os.waitstatus_to_exitcode(os.waitpid(attacker, 0)[1])
    else:
        raise SystemExit(f"unknown attack {kind}")
    out["leaf"] = out.get("leaf") or leaf_usage(leaf)
    out["neighbour_alive"] = _alive(neighbour)
    out["after"] = {"zygote": state(os.getpid()),
                    "neighbour": state(neighbour) if out["neighbour_alive"] else None}
    out["before"] = before
    for fd in _RELEASES:
        os.close(fd)  # the lingering sessions exit
    _reap()
    sessions = cgroups.zygote_cgroups()
    if sessions is not None:
        sessions.close()
    out["cgroup_dirs_left"] = [d for d in (sessions.dirs if sessions else []) if os.path.exists(d)]
    print(json.dumps(out))


def _reap() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return waited == 0


if __name__ == "__main__":
    main()
