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
  environment and file-system changes, unpickling except by the runtime;
- ``compile`` of source text whose expression reaches underscore or
  interpreter-internal attributes (``typing`` evaluates string annotations
  with ``eval``: ``def f(x: "().__class__...")`` must not become a way
  around the compile-time guards).

The hook is a closure made by `install`, and nothing it decides with is a
module attribute a cell could reach and change: the read roots, the code
allowed to fork or to rebuild functions and the host socket live in its
closure, and its constants, helpers and builtins in a private copy of this
module's globals (see `_private_globals`). There is no "trusted" flag or
section: the runtime's own loaders are recognised by their code objects,
so a cell's code running under them is judged as cell code. `install` also
applies the kernel confinement (`limits.confine`), which holds even if this
hook is subverted.

A hook cannot be removed once added, and it lives in the worker only: the
host and remote tools (which run in the host) are unaffected.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
import sysconfig
import types
from collections.abc import Iterable
from typing import Any

# os.putenv/unsetenv are allowed: the worker's environment is empty and private,
# nothing it could start would see it (exec is refused here and by seccomp), and
# numpy's import sets variables for its own BLAS.
_ALWAYS = frozenset(
    """import exec marshal.loads marshal.load marshal.dumps array.__new__ id
    object.__getattr__ builtins.id time.sleep sys.getrecursionlimit""".split()
)

_REFUSED_PREFIXES = (
    "socket.", "subprocess.", "ctypes.", "os.exec", "os.spawn", "os.posix_spawn", "os.system",
    "os.forkpty", "os.kill", "os.killpg", "os.chdir", "os.chmod",
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
)

# Never allowed, not even while the runtime unpickles host data (why: these leave the
# process; dill rebuilding an injected function never needs them).
_NEVER = ("socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn",
          "os.fork", "os.kill", "os.killpg", "_posixsubprocess.", "os.pidfd",
          "signal.pthread_kill", "pty.", "webbrowser.", "urllib.", "http.")

# What to tell the model instead of an event name.
_HINTS = (
    (("open", "os.listdir", "os.scandir", "glob."),
     "files are not reachable from a cell; work on data already in the namespace or ask the "
     "user to inject it"),
    (("socket.", "urllib.", "http.", "ftplib.", "smtplib."),
     "there is no network in the cave; ask the user for a remote tool"),
    (("subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "pty."),
     "processes cannot be started from a cell; use Python and the allowed modules"),
    (("sys._getframe",),
     "frame inspection is off limits (pandas' eval/query need it: use boolean masks, "
     "df[df.a > 1], instead)"),
    (("pickle.",), "unpickling is off limits; ask the user to inject the object"),
    (("compile",), "evaluating text as code is off limits (string annotations too): "
                   "write the expression as code"),
)


class AuditRefusal(PermissionError):
    """The worker's audit hook refused an operation."""


@functools.lru_cache(maxsize=1)
def library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(p for p in sys.path if p and "site-packages" in p)
    roots.update({"/usr/share/zoneinfo", "/usr/lib/python3/dist-packages"})
    # The cavelite package itself (this file is cavelite/security/audit.py).
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return tuple(sorted({os.path.realpath(r) for r in roots if r}))


def _under(path: str, roots: Iterable[str]) -> bool:
    for root in roots:
        if path == root or path.startswith(root + os.sep):
            return True
    return False


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _read_only(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return False
    return not (isinstance(flags, int) and flags & _WRITE_FLAGS)


def _path_under(path: Any, roots: tuple[str, ...]) -> bool:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return False  # opening a raw descriptor is never needed by a cell
    return _under(os.path.realpath(path), roots)


_UNSAFE_NAMES = frozenset(["format", "format_map", "vformat", "attrgetter", "methodcaller",
                           "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "gi_frame",
                           "cr_frame", "ag_frame", "tb_frame", "tb_next", "gi_code", "co_code"])


def unsafe_source(source: Any) -> str | None:
    """Why evaluating this text would reach what cells may not (None if it is harmless).

    Used for ``compile`` of text by libraries (typing's forward references).
    """
    if isinstance(source, bytes):
        source = source.decode("utf-8", "replace")
    if not isinstance(source, str):
        return None  # an AST: the runtime's own, already checked and guarded
    if "_" not in source and "format" not in source and "getter" not in source \
            and "caller" not in source:
        return None  # the common case (forward references like "int", "Point")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        return None  # it will not compile either
    for node in ast.walk(tree):
        name = node.attr if isinstance(node, ast.Attribute) else \
            node.id if isinstance(node, ast.Name) else None
        if name and (name.startswith("_") or name in _UNSAFE_NAMES):
            return name
    return None


def _hint(event: str) -> str:
    for prefixes, hint in _HINTS:
        if event.startswith(prefixes):
            return hint
    return "this operation is off limits in the cave; use plain Python and the allowed modules"


# Modules whose own generated code (dataclass methods, namedtuples) is compiled from text.
_GENERATORS = ("/dataclasses.py", "/collections/__init__.py", "/enum.py")
# Library modules that call sys._getframe only to learn their caller's module name
# (matplotlib: the stack level of its warnings, so a warning names the cell's line).
_FRAME_READERS = ("/collections/__init__.py", "/enum.py", "/typing.py",
                  "/matplotlib/_api/__init__.py")


# What the runtime's own loaders (dill rebuilding a value the host injected, a snapshot
# being restored) do that cells may not. Allowed only when the code raising the event
# *is* one of those loaders (by code object): a cell's own __setstate__ or __reduce__
# running under a loader is still judged as cell code.
_LOADER_EVENTS = frozenset(["pickle.find_class", "code.__new__", "function.__new__",
                            "object.__setattr__"])


def _code_objects(modules: Iterable[Any]) -> frozenset[Any]:
    """Every code object defined in these modules (functions, methods, nested functions)."""
    found: set[Any] = set()

    def add(code: Any) -> None:
        if code in found:
            return
        found.add(code)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                add(const)

    for module in modules:
        for value in vars(module).values():
            members = [value]
            if isinstance(value, type) and value.__module__ == module.__name__:
                members = list(vars(value).values())
            for member in members:
                member = getattr(member, "__func__", member)
                code = getattr(member, "__code__", None)
                if isinstance(code, types.CodeType):
                    add(code)
    return frozenset(found)


def _make_hook(read_roots: tuple[str, ...], fork_code: frozenset[Any], native_code: frozenset[Any],
               loader_code: frozenset[Any], host_socket: Any) -> Any:
    """The hook. Every fact it decides with is fixed here, in its closure: no module
    attribute, flag or section a cell could reach can relax it."""
    from .decode_allowlist import SAFE_GLOBALS  # bound now: the hook must not import

    busy = [False]  # re-entrancy: the hook's own helpers may raise events
    getframe = sys._getframe
    realpath = os.path.realpath
    readlink = os.readlink

    def library_caller(suffixes: tuple[str, ...]) -> bool:
        """Whether the code that raised the event is one of these library files."""
        # frame 0 is this function, 1 `allowed`, 2 the hook, 3 whoever raised the event
        caller = getframe(3).f_code.co_filename
        return caller.endswith(suffixes) and _under(realpath(caller), read_roots)

    def allowed(event: str, args: tuple[Any, ...]) -> bool:
        if event == "compile":
            if not args or unsafe_source(args[0]) is None:
                return True
            # frame 0 is this function, 1 the hook, 2 whoever compiled the text
            if getframe(2).f_code.co_filename.endswith("/ast.py"):
                return True  # ast.parse only parses (the runtime parsing a cell's text)
            return library_caller(_GENERATORS)
        if event == "sys._getframe":
            # namedtuple, Enum and typing read their caller's module name from its frame
            # (what they get is never handed to the cell); pandas' eval would read its locals.
            return library_caller(_FRAME_READERS)
        if event == "open":
            path = args[0] if args else None
            mode = args[1] if len(args) > 1 else "r"
            flags = args[2] if len(args) > 2 else 0
            if not _read_only(mode, flags):
                return False  # no writes, ever (why: the cave has no files of its own)
            return _path_under(path, read_roots)
        if event in ("os.listdir", "os.scandir"):
            path = args[0] if args and args[0] is not None else "."
            return isinstance(path, (str, bytes)) and _under(realpath(os.fsdecode(path)), read_roots)
        if event == "os.fork":
            # The checkpoint fork is made by one runtime function; nothing else may fork.
            return getframe(2).f_code in fork_code
        if event == "socket.sendmsg":
            return host_socket is not None and bool(args) and args[0] is host_socket
        if event == "mmap.__new__":
            fileno = args[0] if args else -1
            if fileno == -1:
                return True  # anonymous memory is just memory
            try:
                return readlink(f"/proc/self/fd/{fileno}").startswith("/memfd:cavelite-buffer")
            except OSError:
                return False
        if event.startswith(_NEVER):
            return False
        if event in _LOADER_EVENTS and getframe(2).f_code in loader_code:
            return True  # the runtime's loader itself (frame 2: whoever raised the event)
        if event.startswith("ctypes.") and getframe(2).f_code in native_code:
            return True  # the runtime's own native calls (naming its processes)
        if event == "fcntl.fcntl":
            # The runtime seals and checks its memfd buffers; nothing else is needed.
            return len(args) >= 2 and args[1] in (1033, 1034)  # F_ADD_SEALS, F_GET_SEALS
        if event == "pickle.find_class":
            # Libraries unpickle their own data (pandas copies via pickle in places);
            # cells cannot name pickle, but a library door must not load arbitrary globals.
            return len(args) >= 2 and (args[0], args[1]) in SAFE_GLOBALS
        if event in ("object.__setattr__", "object.__delattr__"):
            target = args[0] if args else None
            if isinstance(target, type) and getattr(target, "__module__", "") == "builtins":
                # Builtin types are shared by everything in the process. (Library classes
                # are not refused here: libraries imported after the fork set __module__,
                # __qualname__ and __bases__ on their own classes; layer 2 closes the
                # routines that would write onto them for a cell.)
                return False
            # function.__code__ / __defaults__ / __closure__ swaps rewrite trusted functions;
            # namedtuple sets the defaults of the __new__ it generates (numpy's import does).
            if len(args) > 1 and args[1] in ("__defaults__", "__kwdefaults__"):
                return library_caller(_GENERATORS)
            return not (len(args) > 1 and args[1] in ("__code__", "__globals__"))
        return not event.startswith(_REFUSED_PREFIXES)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if busy[0] or event in _ALWAYS:
            return
        busy[0] = True
        try:
            ok = allowed(event, args)
        finally:
            busy[0] = False
        if ok:
            return
        raise AuditRefusal(f"operation not permitted in the cave: {event} ({_hint(event)})")

    return hook


def session_independent_roots() -> tuple[str, ...]:
    """The directories every worker may read, whatever its policy: the Python library."""
    return library_roots()


def install(*, extra_read_roots: Iterable[str] = (), fork_functions: Iterable[Any] = (),
            native_functions: Iterable[Any] = (), loader_modules: Iterable[Any] = (),
            host_socket: Any = None, confine: bool = True) -> None:
    """Install the hook (once per worker; it cannot be removed), then confine the process.

    ``fork_functions`` may fork (the checkpoint), ``native_functions`` may call
    ctypes (process names), and the code of ``loader_modules`` (plus dill's) may
    rebuild classes and functions while the runtime unpickles host data.
    """
    import dill._dill

    # imported now (decode imports every module of the decoder): the hook must not import later
    from . import decode, limits  # noqa: F401

    read_roots = tuple(library_roots()) + tuple(os.path.realpath(r) for r in extra_read_roots)
    if confine:
        limits.confine(read_roots)
    fork_code = frozenset(getattr(f, "__code__", f) for f in fork_functions)
    native_code = frozenset(getattr(f, "__code__", f) for f in native_functions)
    loader_code = _code_objects([dill._dill, *loader_modules])
    make_hook = types.FunctionType(_make_hook.__code__, _private_globals(), "_make_hook")
    sys.addaudithook(make_hook(read_roots, fork_code, native_code, loader_code, host_socket))


def _private_globals() -> dict[str, Any]:
    """A copy of this module's globals for the hook and its helpers, reachable from nowhere else.

    The hook's functions look their constants, helpers and builtins up here, so
    rebinding a name in this module (``audit._NEVER = ()``), in ``os``, ``ast``
    or ``builtins`` changes nothing about what the installed hook decides.
    """
    import builtins

    private = dict(globals())
    private["__builtins__"] = dict(vars(builtins))
    private["os"] = types.SimpleNamespace(
        path=types.SimpleNamespace(realpath=os.path.realpath), sep=os.sep, fsdecode=os.fsdecode,
        readlink=os.readlink)
    private["ast"] = types.SimpleNamespace(parse=ast.parse, walk=ast.walk, Attribute=ast.Attribute,
                                           Name=ast.Name)
    private["sys"] = types.SimpleNamespace(_getframe=sys._getframe)
    for name, value in list(private.items()):
        if isinstance(value, types.FunctionType) and value.__module__ == __name__:
            private[name] = types.FunctionType(value.__code__, private, value.__name__,
                                               value.__defaults__, value.__closure__)
    return private
