"""The worker: one per `Runtime`, forked from the zygote, owning the namespace.

Atomic cells without copying the namespace: before each cell the worker
forks a *backup* that blocks on a pipe. The worker runs the cell itself (it
keeps its thread pools warm, so numpy pays no re-initialisation). On success
it tells the backup to exit ("commit"); on any failure it exits and the
backup, which holds the state from before the cell, takes over the host
socket. A kill from the host (timeout) or a crash closes the pipe the same
way, so every failure path is one path. The next backup is forked right
after a result is sent, while the host (or a model) is still thinking.
"""

from __future__ import annotations

import faulthandler
import io
import os
import pickle
import select
import signal
import socket
import sys
import weakref
from typing import Any

from ..security import audit, limits
from ..security.guards import Guard, ModuleView, set_current_guard
from ..security.transformer import is_reserved
from . import protocol
from .cell import compile_cell, run_cell
from .describe import summarize, type_name
from .remote import RemoteObject, make_function_proxy, rebuild_exception

OUTPUTS_NAME = "cell_outputs"
# Requests that change the namespace outside a cell (so the checkpoint must be renewed).
_MUTATING = frozenset(["inject", "delete", "reset", "restore"])
_HIDDEN = frozenset([OUTPUTS_NAME])


class _Reply(Exception):
    """Raised by handlers that already sent their reply (or must not send one)."""


class Worker:
    def __init__(self, sock: socket.socket, config: dict[str, Any]):
        self.sock = sock
        self.config = config
        self.policy = config["policy"]
        self.guard = Guard(self.policy)
        self.guard.remote_types = (RemoteObject,)
        set_current_guard(self.guard)
        self.atomic: bool = config["atomic"]
        self.types: dict[str, type] = {}
        self.remotes: set[str] = set()  # names bound to host objects
        self.descriptions: dict[str, str] = {}
        self.backup: tuple[int, int] | None = None
        self.depth = 0  # nesting of requests handled inside a remote call
        self.cell_counter = 0
        self.summaries: dict[str, tuple[int, str]] = {}
        self.crash_info = ""
        # Host objects handed to cells by remote calls: proxies alive per reference,
        # and references whose last proxy died (told to the host with the next reply).
        self.proxy_counts: dict[int, int] = {}
        self.released: list[int] = []
        self.ns: dict[str, Any] = {}
        self.fresh_namespace()

    # --- namespace -----------------------------------------------------------------------

    def fresh_namespace(self) -> None:
        self.ns.clear()
        self.ns.update(self.guard.namespace_globals())
        self.ns[OUTPUTS_NAME] = []
        self.summaries.clear()

    def user_names(self) -> list[str]:
        return [
            name for name, value in self.ns.items()
            if not is_reserved(name) and name not in _HIDDEN and name not in self.remotes
            and type(value) is not ModuleView
        ]

    def info(self, name: str, summary: str | None = None) -> dict[str, Any]:
        value = self.ns[name]
        if summary is None:
            summary = summarize(value)
        self.summaries[name] = (id(value), summary)
        return {"name": name, "type_name": type_name(value), "summary": summary,
                "description": self.descriptions.get(name)}

    # --- main loop -------------------------------------------------------------------------

    def serve(self) -> None:
        self.send("ready", {"pid": os.getpid(), "workdir": os.getcwd(),
                            "crash": "", "confinement": ["rlimits", "audit-hook",
                                                         *limits.CONFINEMENT]})
        while True:
            if self.atomic and self.backup is None:
                if self.fork_backup():
                    # We are the backup and the worker died: we are the worker now.
                    self.send("ready", {"pid": os.getpid(), "workdir": os.getcwd(),
                                        "crash": self.crash_info})
                    continue
            try:
                kind, fields = self.recv()
            except protocol.PeerClosed:
                self.exit(0)
            self.handle(kind, fields)

    def handle(self, kind: str, fields: dict[str, Any]) -> None:
        handler = getattr(self, f"op_{kind}", None)
        if handler is None:
            self.send("error", {"type": "ProtocolError", "message": f"unknown request {kind!r}"})
            return
        try:
            reply = handler(fields)
        except _Reply:
            return
        except Exception as exc:  # a request failed (not a cell): report, keep serving
            self.send("error", {"type": type(exc).__name__, "message": str(exc)})
            return
        self.send("done", reply)
        if kind in _MUTATING and self.depth == 0:
            # The checkpoint predates this change: retire it so the next cell's
            # rollback point includes it (a fresh one is forked at the loop top).
            self.commit()

    def send(self, kind: str, fields: dict[str, Any]) -> None:
        if kind == "done" and self.released:
            fields = dict(fields, released=self.take_released())
        body, buffers = protocol.encode((kind, fields))
        protocol.send(self.sock, body, buffers)

    def send_value(self, kind: str, fields: dict[str, Any], body: bytes, buffers: list[Any]) -> None:
        head, _ = protocol.encode((kind, fields))
        # value messages carry two parts: the control head and the value body
        # (the host splits them where the head's pickle stops).
        protocol.send(self.sock, head + body, buffers)

    def recv(self) -> tuple[str, dict[str, Any]]:
        body, buffers = protocol.recv(self.sock)
        with audit.trusted_section():
            kind, fields = pickle.loads(body)
        # Out-of-band buffers belong to the value pickled inside the message.
        fields["buffers"] = buffers
        return kind, fields

    def track_proxy(self, proxy: Any, ref: int) -> Any:
        self.proxy_counts[ref] = self.proxy_counts.get(ref, 0) + 1
        weakref.finalize(proxy, self._proxy_died, ref)
        return proxy

    def _proxy_died(self, ref: int) -> None:
        left = self.proxy_counts.get(ref, 1) - 1
        if left > 0:
            self.proxy_counts[ref] = left
        else:
            self.proxy_counts.pop(ref, None)
            self.released.append(ref)

    def take_released(self) -> list[int]:
        released, self.released = self.released, []
        return released

    def exit(self, code: int) -> None:
        self.commit()
        os._exit(code)

    # --- checkpoints ---------------------------------------------------------------------------

    def fork_backup(self) -> bool:
        """Fork the checkpoint. Returns True in the backup once it has taken over."""
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(write_end)
            faulthandler.disable()
            with audit.trusted_section():
                limits.set_process_name("cave-checkpoint")
            self.crash_info = _wait_for_parent(read_end)
            with audit.trusted_section():
                limits.set_process_name("cave-worker")
            os.close(read_end)
            self.backup = None
            return True
        os.close(read_end)
        self.backup = (pid, write_end)
        # A crash (SIGSEGV, abort) of this worker writes its traceback to the
        # backup, which reports it to the host when it takes over.
        faulthandler.enable(file=_FdFile(write_end), all_threads=False)
        self.pretouch()
        return False

    def pretouch(self) -> None:
        """Take the copy-on-write faults of a typical cell now, while the host is idle.

        After the fork every page the worker writes is copied on first write; a
        trivial cell writes a few hundred (interpreter state, compiler, pickler).
        Walking that path here moves those copies off the next cell's clock. If
        a request is already waiting, skip: it would only delay it.
        """
        if select.select([self.sock], [], [], 0)[0]:
            return
        scratch = self.guard.namespace_globals()
        compiled = compile_cell("_pretouch = [1]\n_pretouch", self.policy, "<pretouch>")
        if compiled.code is not None:
            try:
                eval(compiled.code, scratch)  # noqa: S307 - our own constant cell
            except Exception:
                pass
        protocol.encode(("done", {"ok": True, "error": None, "stdout": "", "stderr": "",
                                  "value_repr": "1", "duration_s": 0.0, "changed": [],
                                  "deleted": [], "stdout_truncated": False,
                                  "output_index": None, "rolled_back": False}))

    def commit(self) -> None:
        """The cell succeeded: the backup is no longer needed."""
        if self.backup is None:
            return
        _pid, write_end = self.backup
        self.backup = None
        faulthandler.disable()
        try:
            os.write(write_end, b"C")
        finally:
            os.close(write_end)

    # --- requests ---------------------------------------------------------------------------

    def op_exec(self, f: dict[str, Any]) -> dict[str, Any]:
        self.cell_counter += 1
        filename = f"<cell-{self.cell_counter}>"
        compiled = compile_cell(f["code"], self.policy, filename)
        if compiled.error is not None:
            return {"ok": False, "error": compiled.error, "stdout": "", "stderr": "",
                    "value_repr": None, "duration_s": 0.0, "changed": [], "deleted": [],
                    "rolled_back": False}
        atomic = self.atomic and self.depth == 0
        before = {name: id(self.ns[name]) for name in self.user_names()}
        outcome = run_cell(compiled, self.ns, hard_output_limit=self.config["hard_output_limit"],
                           max_repr_chars=self.config["max_repr_chars"])
        if outcome.ok or not atomic:
            stdout, truncated, index = self.bound_output(outcome.stdout)
            stderr, _, _ = self.bound_output(outcome.stderr, store=False)
            changed, deleted = self.diff(before)
            reply = {"ok": outcome.ok, "error": outcome.error, "stdout": stdout,
                     "stderr": stderr, "value_repr": outcome.value_repr,
                     "duration_s": outcome.duration_s, "changed": changed, "deleted": deleted,
                     "stdout_truncated": truncated, "output_index": index, "rolled_back": False}
            if atomic:
                self.send("done", reply)
                self.commit()
                raise _Reply
            return reply
        # Failure in atomic mode: report, then hand over to the backup, which
        # holds the namespace exactly as it was before this cell.
        stdout, truncated, _ = self.bound_output(outcome.stdout, store=False)
        stderr, _, _ = self.bound_output(outcome.stderr, store=False)
        self.send("done", {"ok": False, "error": outcome.error, "stdout": stdout,
                           "stderr": stderr, "value_repr": None,
                           "duration_s": outcome.duration_s, "changed": [], "deleted": [],
                           "stdout_truncated": truncated, "output_index": None,
                           "rolled_back": True})
        faulthandler.disable()
        os._exit(0)

    def bound_output(self, text: str, store: bool = True) -> tuple[str, bool, int | None]:
        budget = self.config["max_output_chars"]
        if len(text) <= budget:
            return text, False, None
        index = None
        if store:
            outputs = self.ns.get(OUTPUTS_NAME)
            if not isinstance(outputs, list):
                outputs = self.ns[OUTPUTS_NAME] = []
            outputs.append(text)
            index = len(outputs) - 1
        head = text[: budget * 2 // 3]
        tail = text[-(budget // 3):]
        cut = len(text) - len(head) - len(tail)
        where = (f"the full text is in {OUTPUTS_NAME}[{index}]; slice it, e.g. "
                 f"print({OUTPUTS_NAME}[{index}][{len(head)}:{len(head) + 2000}])"
                 if index is not None else "the cell was rolled back, so it was not kept")
        marker = f"\n... [{cut} characters cut; {where}] ...\n"
        return head + marker + tail, True, index

    def diff(self, before: dict[str, int]) -> tuple[list[dict[str, Any]], list[str]]:
        changed = []
        now = self.user_names()
        for name in now:
            value = self.ns[name]
            old = before.get(name)
            if old is None or old != id(value):
                changed.append(self.info(name))
            elif not isinstance(value, (int, float, str, bytes, bool, tuple, type(None), frozenset)):
                cached = self.summaries.get(name)
                summary = summarize(value)
                if cached is None or cached[1] != summary:
                    changed.append(self.info(name, summary))
        names = set(now)
        deleted = [name for name in before if name not in names]
        for name in deleted:
            self.summaries.pop(name, None)
        return changed, deleted

    def op_variables(self, f: dict[str, Any]) -> dict[str, Any]:
        return {"variables": [self.info(name) for name in self.user_names()]}

    def op_delete(self, f: dict[str, Any]) -> dict[str, Any]:
        name = f["name"]
        if name not in self.ns or is_reserved(name):
            raise KeyError(f"no variable named {name!r}")
        del self.ns[name]
        self.remotes.discard(name)
        self.types.pop(name, None)
        self.descriptions.pop(name, None)
        self.summaries.pop(name, None)
        return {}

    def op_reset(self, f: dict[str, Any]) -> dict[str, Any]:
        keep_remotes = {n: self.ns[n] for n in self.remotes if n in self.ns}
        keep_types = {n: self.ns[n] for n in self.types if n in self.ns}
        self.fresh_namespace()
        self.ns.update(keep_remotes)
        self.ns.update(keep_types)
        self.descriptions = {n: d for n, d in self.descriptions.items() if n in self.ns}
        return {}

    def op_inject(self, f: dict[str, Any]) -> dict[str, Any]:
        name = f["name"]
        kind = f["kind"]
        if kind in ("function", "object"):
            if kind == "function":
                value = make_function_proxy(self, f["ref"], None, f["fname"], f["doc"],
                                            f["signature"], f["is_async"])
            else:
                value = RemoteObject(f["ref"], f["type_name"], tuple(f["names"]), self)
            self.remotes.add(name)
        elif kind == "enum":
            import enum

            base = getattr(enum, f["base"])
            value = base(f["enum_name"], [tuple(m) for m in f["members"]], module="__main__")
            self.types[name] = value
            kind = "type"
        else:
            with audit.trusted_section():
                value = _loads_injected(f["payload"], f.get("buffers", []), self.types)
            if kind == "type":
                self.types[name] = value
        self.ns[name] = value
        if f.get("description"):
            self.descriptions[name] = f["description"]
        self.summaries.pop(name, None)
        return {"info": self.info(name) if kind in ("value", "type") else None}

    def op_retrieve(self, f: dict[str, Any]) -> dict[str, Any]:
        name = f["name"]
        if name not in self.ns or is_reserved(name):
            raise KeyError(f"no variable named {name!r}")
        value = self.ns[name]
        try:
            body, buffers = _encode_value(value, self.types, trusted=f.get("trusted", False))
        except CellMadeType as exc:
            raise CellMadeType(
                f"variable {name!r} holds an instance of {exc}, a class defined by a cell; "
                "retrieve(..., trusted=True) rebuilds it in the host (running cell-written code), "
                "or convert it to plain data in a cell first"
            ) from None
        except Exception as exc:
            raise TypeError(f"variable {name!r} ({type_name(value)}) cannot be copied: {exc}") from None
        self.send_value("value", {"type_name": type_name(value)}, body, buffers)
        raise _Reply

    def op_snapshot(self, f: dict[str, Any]) -> dict[str, Any]:
        import dill

        data = {}
        failed = []
        for name in self.user_names():
            value = self.ns[name]
            try:
                data[name] = dill.dumps(value, recurse=True)
            except Exception as exc:
                failed.append(f"{name} ({type_name(value)}): {exc}")
        if failed:
            raise TypeError("cannot snapshot these variables: " + "; ".join(failed))
        blob = pickle.dumps({"vars": data, "descriptions": self.descriptions,
                             "types": list(self.types)}, protocol=5)
        return {"blob": blob, "remotes": sorted(self.remotes)}

    def op_restore(self, f: dict[str, Any]) -> dict[str, Any]:
        import dill

        with audit.trusted_section():
            state = pickle.loads(f["blob"])
            restored = {name: dill.loads(raw) for name, raw in state["vars"].items()}
        self.ns.update(restored)
        for name in state.get("types", []):
            if name in self.ns:
                self.types[name] = self.ns[name]
        self.descriptions.update(state.get("descriptions", {}))
        return {"names": sorted(restored)}

    def op_shutdown(self, f: dict[str, Any]) -> dict[str, Any]:
        self.send("done", {})
        self.exit(0)
        raise _Reply

    # --- remote calls (the worker side of the channel) ----------------------------------------

    def remote(self, op: str, ref: int, name: str | None, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Any:
        try:
            body, buffers = _encode_value((args, kwargs), self.types, trusted=False)
        except Exception as exc:
            raise TypeError(f"arguments cannot be sent to the host: {exc}") from None
        self.send_value("call", {"op": op, "ref": ref, "name": name,
                                 "released": self.take_released()}, body, buffers)
        self.depth += 1
        try:
            while True:
                kind, fields = self.recv()
                if kind == "call_result":
                    break
                self.handle(kind, fields)  # a nested request from the host (re-entrancy)
        finally:
            self.depth -= 1
        if not fields["ok"]:
            raise rebuild_exception(fields["type"], fields["message"])
        with audit.trusted_section():
            return _loads_result(fields["payload"], fields.get("buffers", []), self)


class _FdFile:
    """The minimal file object faulthandler needs: a fileno()."""

    def __init__(self, fd: int):
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


def _wait_for_parent(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        chunks.append(chunk)
    data = b"".join(chunks)
    if data == b"C":
        os._exit(0)  # the cell committed; this checkpoint is not needed
    return data.decode("utf-8", "replace")


class CellMadeType(Exception):
    """A value holds a class defined by a cell: the host would have to run its code."""


class _ValuePickler(pickle.Pickler):
    """Pickles a value for the host: injected types and remote proxies by reference."""

    def __init__(self, file: io.BytesIO, types: dict[str, type], **kwargs: Any):
        super().__init__(file, protocol=5, **kwargs)
        self.type_names = {id(cls): name for name, cls in types.items()}

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, type):
            name = self.type_names.get(id(obj))
            if name is not None:
                return ("type", name)
            if obj.__module__ == "__main__":
                raise CellMadeType(obj.__qualname__)
        elif type(obj) is RemoteObject:
            return ("remote", object.__getattribute__(obj, "_cave_ref"))
        return None


def _encode_value(value: Any, types: dict[str, type], *, trusted: bool) -> tuple[bytes, list[Any]]:
    buffers: list[Any] = []
    if trusted:
        import dill

        return dill.dumps(value, protocol=5, recurse=True, buffer_callback=buffers.append), buffers
    if not types:
        # Plain data (the common case) needs no persistent ids, whose per-object Python
        # call costs 5x on large containers. Remote proxies and cell-made classes make
        # the plain pickler fail; the slow path below then names them.
        try:
            return pickle.dumps(value, protocol=5, buffer_callback=buffers.append), buffers
        except (pickle.PicklingError, TypeError, AttributeError):
            buffers.clear()
    bio = io.BytesIO()
    _ValuePickler(bio, types, buffer_callback=buffers.append).dump(value)
    return bio.getvalue(), buffers


class _ResultUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, worker: Worker, buffers: list[Any]):
        super().__init__(file, buffers=buffers)
        self.worker = worker

    def persistent_load(self, pid: Any) -> Any:
        tag = pid[0]
        if tag == "type":
            return self.worker.types[pid[1]]
        if tag == "function":
            _, ref, name, doc, sig, is_async = pid
            proxy = make_function_proxy(self.worker, ref, None, name, doc, sig, is_async)
            return self.worker.track_proxy(proxy, ref)
        if tag == "object":
            _, ref, tname, names = pid
            return self.worker.track_proxy(RemoteObject(ref, tname, tuple(names), self.worker), ref)
        raise pickle.UnpicklingError(f"unknown reference {pid!r}")


def _loads_result(payload: bytes, buffers: list[Any], worker: Worker) -> Any:
    return _ResultUnpickler(io.BytesIO(payload), worker, buffers).load()


def _loads_injected(payload: bytes, buffers: list[Any], types: dict[str, type]) -> Any:
    import dill

    class _Injected(dill.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            if pid[0] == "type" and pid[1] in types:
                return types[pid[1]]
            raise pickle.UnpicklingError(f"unknown reference {pid!r}")

    return _Injected(io.BytesIO(payload), buffers=buffers).load()


def prepare(*, landlock: bool = True, read_dirs: tuple[str, ...] = ()) -> None:
    """Config-independent setup, done by the spare before it is handed a session.

    ``read_dirs``: a policy's opted-in directories, for a spare forked for it
    (the kernel layer checks that its uid can read them; Landlock comes later).
    """
    try:
        os.setsid()  # own session: a Ctrl-C in the host's terminal does not reach cells
    except OSError:
        pass
    # Children (the checkpoints) are reaped by the kernel: no zombies, no waits.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # file-size limit -> EFBIG, not death
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    limits.set_process_name("cave-spare")
    os.chdir(limits.private_workdir())
    os.environ.clear()  # no host secrets, even in libraries that read the environment
    # A fresh fork pays a copy-on-write fault for every page it first writes;
    # take those for the common paths now, while the spare is idle, not when
    # a session is waiting for it.
    from ..security.policy import Policy

    guard = Guard(Policy.default())
    guard.namespace_globals()
    compile_cell("x = [i for i in range(2)]\nx", guard.policy, "<spare>")
    protocol.encode(("ready", {"pid": 0, "workdir": "", "crash": ""}))
    # Kernel layer (cgroup leaf, privileges, seccomp, Landlock): see security/limits.py.
    limits.confine_early([*audit.session_independent_roots(), *read_dirs], landlock_now=landlock)


def start(sock: socket.socket, config: dict[str, Any]) -> None:
    """Entry point in the worker process, after `prepare` (never returns)."""
    limits.set_process_name("cave-worker")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    worker = Worker(sock, config)
    limits.apply(memory_limit_mb=config["memory_limit_mb"],
                 max_file_bytes=config["max_file_bytes"])
    audit.install(extra_read_roots=config["policy"].readable_dirs,
                  fork_functions=[Worker.fork_backup], host_socket=sock)
    sys.setrecursionlimit(config.get("recursion_limit", 3000))
    try:
        worker.serve()
    finally:
        os._exit(0)
