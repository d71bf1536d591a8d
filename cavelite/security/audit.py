"""Layer 3: a PEP 578 audit hook installed in every worker before any cell runs.

Even code that got past the policy and the guards meets this hook at the
door of every file, socket, process and native-code operation. It refuses:

- ``open`` except read-only opens of the Python library itself (imports
  need them) and of directories the policy opted in;
- sockets (only the runtime's own host socket may ``sendmsg``), processes
  (``os.system``, ``exec*``, ``spawn*``, ``posix_spawn``, ``subprocess``,
  ``fork`` except the runtime's own checkpoint fork), signals to others;
- ``ctypes``, ``mmap`` (except the runtime's sealed memfd buffers),
  frame access (``sys._getframe``), tracing, ``code.__new__``,
  environment and file-system changes, unpickling except by the runtime.

A hook cannot be removed once added, and it lives in the worker only: the
host and remote tools (which run in the host) are unaffected.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
from collections.abc import Iterable
from typing import Any

_ALWAYS = frozenset(
    """import exec compile marshal.loads marshal.load marshal.dumps array.__new__ id
    object.__getattr__ builtins.id os.listdir os.scandir time.sleep
    sys.getrecursionlimit gc.get_referrers_denied""".split()
) - {"os.listdir", "os.scandir", "gc.get_referrers_denied"}

_REFUSED_PREFIXES = (
    "socket.", "subprocess.", "ctypes.", "os.exec", "os.spawn", "os.posix_spawn", "os.system",
    "os.forkpty", "os.kill", "os.killpg", "os.putenv", "os.unsetenv", "os.chdir", "os.chmod",
    "os.chown", "os.chflags", "os.mkdir", "os.mkfifo", "os.mknod", "os.remove", "os.rename",
    "os.rmdir", "os.symlink", "os.link", "os.truncate", "os.utime", "os.setxattr",
    "os.removexattr", "os.add_dll_directory", "os.startfile", "os.pidfd", "shutil.", "pty.",
    "sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.settrace",
    "sys.setprofile", "sys.monitoring", "sys.addaudithook",
    "sys.excepthook", "code.__new__", "function.__new__", "cpython.", "webbrowser.", "urllib.",
    "http.", "ftplib.", "smtplib.", "poplib.", "imaplib.", "nntplib.", "telnetlib.",
    "glob.glob", "resource.setrlimit", "resource.prlimit", "signal.pthread_kill",
    "gc.get_referrers", "gc.get_referents", "gc.get_objects", "winreg.", "msvcrt.",
    "_posixsubprocess.", "os.fork", "mmap.", "pickle.find_class", "sqlite3.", "syslog.",
    "fcntl.", "os.getxattr", "os.listxattr", "tempfile.", "shelve.", "dbm.", "zipimport.",
    "ensurepip.", "sys.set_asyncgen_hooks", "setopencodehook", "os.setpgid", "os.setsid",
    "os.walk_denied",
)


class AuditRefusal(PermissionError):
    """The worker's audit hook refused an operation."""


class _State:
    def __init__(self) -> None:
        self.in_hook = False
        self.trusted = 0  # >0 while the runtime itself unpickles host data
        self.read_roots: tuple[str, ...] = ()
        self.fork_code: frozenset[Any] = frozenset()
        self.host_socket: Any = None
        self.refusals = 0


STATE = _State()


class trusted_section:
    """Marks the runtime's own unpickling of host messages (not reachable from cells)."""

    def __enter__(self) -> None:
        STATE.trusted += 1

    def __exit__(self, *exc: object) -> None:
        STATE.trusted -= 1


@functools.lru_cache(maxsize=1)
def library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(p for p in sys.path if p and "site-packages" in p)
    roots.update({"/usr/share/zoneinfo", "/usr/lib/python3/dist-packages"})
    try:
        import cavelite

        roots.add(os.path.dirname(os.path.dirname(os.path.abspath(cavelite.__file__))) + "/cavelite")
    except Exception:
        pass
    return tuple(sorted({os.path.realpath(r) for r in roots if r}))


def _under(path: str, roots: Iterable[str]) -> bool:
    for root in roots:
        if path == root or path.startswith(root + os.sep):
            return True
    return False


def _readable(path: Any, mode: Any, flags: Any) -> bool:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return False  # opening a raw descriptor is never needed by a cell
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return False
    if isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
        return False
    real = os.path.realpath(path)
    return _under(real, STATE.read_roots)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    state = STATE
    if state.in_hook or event in _ALWAYS:
        return
    state.in_hook = True
    try:
        if _allowed(event, args, state):
            return
    finally:
        state.in_hook = False
    state.refusals += 1
    raise AuditRefusal(f"operation not permitted in the cave: {event}")


def _allowed(event: str, args: tuple[Any, ...], state: _State) -> bool:
    if state.trusted > 0 and not event.startswith(("socket.", "subprocess.", "os.system", "os.exec")):
        # The runtime is unpickling the host's own data (dill rebuilds code objects).
        return True
    if event == "open":
        return _readable(*args[:3]) if len(args) >= 3 else _readable(args[0], "r", 0)
    if event in ("os.listdir", "os.scandir"):
        path = args[0] if args else "."
        return isinstance(path, (str, bytes)) and _under(os.path.realpath(os.fsdecode(path)), state.read_roots)
    if event == "os.fork":
        # The checkpoint fork is made by one runtime function; nothing else may fork.
        caller = sys._getframe(2)
        return caller.f_code in state.fork_code
    if event == "socket.sendmsg":
        return state.host_socket is not None and args and args[0] is state.host_socket
    if event == "mmap.__new__":
        fileno = args[0] if args else -1
        if fileno == -1:
            return True  # anonymous memory is just memory
        try:
            return os.readlink(f"/proc/self/fd/{fileno}").startswith("/memfd:cavelite-buffer")
        except OSError:
            return False
    if event == "fcntl.fcntl":
        # The runtime seals and checks its memfd buffers; nothing else is needed.
        import fcntl

        return len(args) >= 2 and args[1] in (fcntl.F_GET_SEALS, fcntl.F_ADD_SEALS)
    if event == "pickle.find_class":
        return state.trusted > 0 or _safe_class(args)
    if event == "object.__setattr__" or event == "object.__delattr__":
        target = args[0] if args else None
        return not (isinstance(target, type) and getattr(target, "__module__", "") == "builtins")
    for prefix in _REFUSED_PREFIXES:
        if event.startswith(prefix):
            return False
    return True


def _safe_class(args: tuple[Any, ...]) -> bool:
    # Libraries unpickle their own data (pandas copies via pickle in places);
    # cells cannot name pickle, but a library door must not load arbitrary globals.
    from .decode import SAFE_GLOBALS

    return len(args) >= 2 and (args[0], args[1]) in SAFE_GLOBALS


def install(*, extra_read_roots: Iterable[str] = (), fork_functions: Iterable[Any] = (),
            host_socket: Any = None) -> None:
    """Install the hook (once per worker; it cannot be removed)."""
    STATE.read_roots = tuple(library_roots()) + tuple(os.path.realpath(r) for r in extra_read_roots)
    STATE.fork_code = frozenset(getattr(f, "__code__", f) for f in fork_functions)
    STATE.host_socket = host_socket
    sys.addaudithook(_hook)
