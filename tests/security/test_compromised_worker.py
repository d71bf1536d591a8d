"""Assume layer 2 has fallen: arbitrary Python runs in the worker. The host must not care.

Each test runs raw Python inside a real worker (see `fakes/compromise.py`, a
test-only module preloaded into its own zygote) and tries one thing a
compromised worker would try against the host: forged or oversized
messages, claims about processes and directories, replies that never come,
mutations of host objects through the decoder. Each then checks the harm,
not the exception: the victim process lives, the victim directory exists,
the host object is unchanged, the host answers, the session's variables
survived, and a neighbouring session did not notice.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.compromise import MARK, PRELOAD

from cavelite import ProtocolError, RequestTimeoutError, Runtime


@dataclass
class Victims:
    """Things outside the session that a forged message might name."""

    process: subprocess.Popen[bytes]
    directory: Path

    def unharmed(self) -> None:
        assert self.process.poll() is None, "the host killed a process a worker named"
        assert self.directory.is_dir() and (self.directory / "keep").exists(), \
            "the host removed a directory a worker named"


@pytest.fixture(scope="module")
def victims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victims]:
    directory = tmp_path_factory.mktemp("victim")
    (directory / "keep").write_text("precious")
    # Blocks on its stdin until the fixture ends: a live process no test waits for.
    process = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    yield Victims(process, directory)
    process.stdin.close()  # type: ignore[union-attr]
    process.wait()


@pytest.fixture(scope="module")
def taken() -> Iterator[Runtime]:
    runtime = Runtime(preload=PRELOAD, cell_timeout=10, request_timeout=1.5)
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def neighbour() -> Iterator[Runtime]:
    runtime = Runtime(cell_timeout=10)
    runtime.execute("mine = 'untouched'")
    yield runtime
    runtime.close()


def raw(code: str) -> str:
    return MARK + textwrap.dedent(code)


def attack(code: str) -> str:
    """Raw code that ends in an error, so the worker keeps the checkpoint from before it.

    (An attack that then let its cell commit would only discard its own session's
    rollback point; the tests check what the host does, so they keep it.)
    """
    return raw(code) + "\nraise RuntimeError('patched')\n"


class Account:
    """A host object the session uses by proxy."""

    def __init__(self) -> None:
        self.balance = 100

    def deposit(self, amount: int) -> int:
        self.balance += amount
        return self.balance


@pytest.fixture
def session(taken: Runtime, neighbour: Runtime, victims: Victims) -> Iterator[Runtime]:
    """The taken runtime with a known variable; afterwards, everything must be intact."""
    assert taken.execute("precious = [1, 2, 3]").ok
    yield taken
    victims.unharmed()
    assert taken.execute("precious").value_repr == "[1, 2, 3]", "the session's state was lost"
    assert taken.execute("1 + 1").value_repr == "2"
    assert neighbour.execute("mine").value_repr == "'untouched'"


def _assert_refused_as_crash(result) -> None:
    assert not result.ok and result.error.kind == "crash", result.error
    assert result.rolled_back, "the session was wiped instead of rolled back"


# --- the host never obeys a pid or a path from a message ------------------------------------

def test_an_old_style_ready_naming_a_victim_is_refused(session: Runtime, victims: Victims) -> None:
    result = session.execute(attack(f"""
        send_frame(pickle.dumps(("ready", {{"pid": {victims.process.pid},
                                              "workdir": {str(victims.directory)!r},
                                              "crash": ""}})))
    """))
    _assert_refused_as_crash(result)
    assert result.error.type == "ProtocolError"


def test_a_ready_from_the_worker_itself_is_not_a_takeover(session: Runtime) -> None:
    old = session.pid
    result = session.execute(attack("send(messages.Ready('', ('forged',)))"))
    _assert_refused_as_crash(result)
    assert session.pid != old and "forged" not in session.confinement


def test_a_message_from_another_process_is_refused(session: Runtime) -> None:
    result = session.execute(attack("""
        from cavelite.runtime import checkpoint
        child = checkpoint._fork()  # the one fork the audit hook allows, re-entered
        if child == 0:
            send(messages.Done())
            os._exit(0)
        try:
            os.waitpid(child, 0)  # children are reaped by the kernel: this waits, then fails
        except ChildProcessError:
            pass
    """))
    _assert_refused_as_crash(result)


# --- every field is bounded and plain ------------------------------------------------------------

@pytest.mark.parametrize("forged", [
    "messages.CellReply(True, 'x' * 50_000_000, '', None, None, 0.0, (), (), False, None, False)",
    "messages.CellReply(True, '', '', None, None, 0.0, (messages.VariableInfo('v', 'T' * 10_000_000, "
    "'', None),), (), False, None, False)",
    "messages.CellReply(True, '', '', None, messages.CellError('exception', 'E', 'm' * 30_000_000), "
    "0.0, (), (), False, None, False)",
], ids=["stdout", "type_name", "error_message"])
def test_oversized_fields_are_refused(session: Runtime, forged: str) -> None:
    result = session.execute(attack(f"send({forged})"))
    _assert_refused_as_crash(result)
    assert "limit" in result.error.message


@pytest.mark.parametrize("body", [
    "pickle.dumps(('cell', (True, __import__('numpy').str_('x')) + (None,) * 9, ()))",
    "pickle.dumps(('no_such_kind', (), ()))",
    "pickle.dumps(('done', (1, 2, 3), ()))",
    "pickle.dumps(('done', (), ('not-an-int',)))",
    "b'not a pickle at all'",
], ids=["numpy_str_field", "unknown_kind", "extra_fields", "bad_releases", "garbage"])
def test_malformed_messages_are_refused(session: Runtime, body: str) -> None:
    result = session.execute(attack(f"send_frame({body})"))
    _assert_refused_as_crash(result)
    assert result.error.type == "ProtocolError"


def _png(width: int, height: int, *, crc_ok: bool = True) -> bytes:
    """A minimal PNG (signature, IHDR, one IDAT, IEND) of that size."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes, ok: bool = True) -> bytes:
        crc = zlib.crc32(kind + data) ^ (0 if ok else 1)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 8)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr, crc_ok) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


@pytest.mark.parametrize(("figures", "expected"), [
    ([("image/png", 1, 1, b"GIF89a" + b"\x00" * 40)], "no PNG signature"),
    ([("image/png", 640, 480, _png(2, 2))], "disagrees with its width and height"),
    ([("image/png", 2, 2, _png(2, 2, crc_ok=False))], "checksum"),
    ([("image/png", 100_000, 100_000, _png(100_000, 100_000))], "pixels"),
    ([("text/html", 2, 2, _png(2, 2))], "unexpected value"),
    ([("image/png", 2, 2, _png(2, 2) + b"\x00" * 6_000_000)], "limit"),
    ([("image/png", 2, 2, _png(2, 2))] * 9, "limit"),
], ids=["not_png", "header_lies", "bad_checksum", "huge_sides", "not_an_image", "oversized", "too_many"])
def test_forged_figures_are_refused(session: Runtime, figures: list, expected: str) -> None:
    fields = (True, "", "", None, None, 0.0, (), (), False, None, False, tuple(figures))
    result = session.execute(attack(f"send_frame(pickle.dumps(('cell', {fields!r}, ())))"))
    _assert_refused_as_crash(result)
    assert result.error.type == "ProtocolError" and expected in result.error.message, result.error
    assert result.figures == ()


def test_a_descriptor_that_is_not_a_sealed_memfd_is_refused(session: Runtime) -> None:
    result = session.execute(attack("""
        import struct
        from cavelite.runtime import protocol as p
        body, _ = wire.encode(messages.Done())
        header = p.HEADER.pack(len(body), 1, 0)
        table = p.ENTRY.pack(4096, 1)  # "a memfd of 4096 bytes", but the fd is the socket
        import socket
        socket.send_fds(worker.sock, [header], [worker.sock.fileno()])
        worker.sock.sendall(table + body)
    """))
    _assert_refused_as_crash(result)


# --- the decoder never modifies a host object --------------------------------------------------

def _build_on_reference(field: str, value: int) -> str:
    """Raw code: a remote call whose argument pickle BUILDs onto the account's reference."""
    return raw(f"""
        ref = worker.space.ns['account']._cave_ref
        def piece(obj):
            return pickle.dumps(obj, protocol=2)[2:-1]
        body = (b"\\x80\\x05" + piece(("remote", ref)) + b"Q" + b"}}" + piece({field!r})
                + piece({value}) + b"s" + b"b" + b"\\x85" + b"}}" + b"\\x86" + b".")
        send(messages.Call("call", ref, "deposit", body))
        reply, _ = worker.recv()
        print(reply.ok, reply.error_type, reply.message)
    """)


def test_a_forged_call_cannot_set_attributes_of_a_host_object(session: Runtime) -> None:
    account = Account()
    session.inject("account", account, remote=True)
    result = session.execute(_build_on_reference("balance", 10**9))
    assert result.ok, result.error
    assert result.stdout.startswith("False"), result.stdout
    assert "did not create" in result.stdout or "modify a host object" in result.stdout
    assert account.balance == 100
    assert session.execute("account.deposit(1)").value_repr == "101"


# --- every request has a deadline ---------------------------------------------------------------

SPIN = "def spin(*args):\n    while True:\n        pass\n"
# Raw code that ends in an error: the checkpoint from before it stays (a cell that fails
# without a rollback changed nothing, as far as the worker knows), so after a takeover
# the session is served as it was before the patch.
KEEP_CHECKPOINT = "\nraise RuntimeError('patched')\n"

REQUESTS = {
    "variables": ("ListVariables", lambda rt: rt.variables()),
    "retrieve": ("Retrieve", lambda rt: rt.retrieve("precious")),
    "delete": ("Delete", lambda rt: rt.delete("precious")),
    "inject": ("InjectValue", lambda rt: rt.inject("more", [4])),
    "snapshot": ("TakeSnapshot", lambda rt: rt.snapshot()),
}


def _patch(session: Runtime, code: str) -> None:
    patched = session.execute(raw(code + KEEP_CHECKPOINT))
    assert patched.error is not None and "patched" in patched.error.message, patched.error


@pytest.mark.parametrize("name", list(REQUESTS))
def test_a_request_the_worker_never_answers_times_out(session: Runtime, name: str) -> None:
    kind, call = REQUESTS[name]
    _patch(session, SPIN + f"worker._handlers[messages.{kind}] = spin\n")
    with pytest.raises(RequestTimeoutError) as caught:
        call(session)
    assert not caught.value.variables_lost
    assert "checkpoint took over" in str(caught.value)


def test_a_cell_reply_that_never_comes_is_a_cell_timeout(session: Runtime) -> None:
    _patch(session, SPIN + "worker._handlers[messages.Exec] = spin\n")
    stuck = session.execute("1 + 1", timeout=1.0)
    assert stuck.error.kind == "timeout" and stuck.rolled_back


def test_a_reply_of_the_wrong_kind_is_refused(session: Runtime) -> None:
    _patch(session, "worker._handlers[messages.ListVariables] = lambda *a: messages.Done()\n")
    with pytest.raises(ProtocolError):
        session.variables()


# --- what the session shares with its neighbours -------------------------------------------------

@pytest.fixture(scope="module")
def other_taken() -> Iterator[Runtime]:
    runtime = Runtime(preload=PRELOAD, cell_timeout=10)
    yield runtime
    runtime.close()


LOOP_PROBE = raw("""
    from cavelite.runtime import cell
    loop = cell._LOOP
    print(type(loop._selector).__name__, os.fstat(loop._ssock.fileno()).st_ino)
""")


def test_sessions_share_no_event_loop(session: Runtime, other_taken: Runtime) -> None:
    mine, theirs = (rt.execute(LOOP_PROBE).stdout.split() for rt in (session, other_taken))
    assert mine[0] == theirs[0] == "SelectSelector"  # no epoll instance to share or inherit
    assert mine[1] != theirs[1], "two sessions share the event loop's self-pipe"
    broken = session.execute(raw("""
        from cavelite.runtime import cell
        cell._LOOP._ssock.close()
        cell._LOOP._csock.close()
    """))
    assert broken.ok, broken.error
    woken = other_taken.execute("import asyncio\n"
                                "await asyncio.gather(*(asyncio.sleep(0.01) for _ in range(3)))\n3")
    assert woken.value_repr == "3", woken.error
    with Runtime() as newcomer:
        assert newcomer.execute("import asyncio\nawait asyncio.sleep(0)\n1").value_repr == "1"
    session.reset()  # this session broke its own loop: a fresh worker has a new one
    assert session.execute("import asyncio\nawait asyncio.sleep(0)\n2").value_repr == "2"
    session.execute("precious = [1, 2, 3]")


FD_PROBE = raw("""
    import stat
    held = []
    for fd in range(256):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if not stat.S_ISCHR(st.st_mode):  # /dev/null is stateless; the rest must be our own
            held.append((stat.S_IFMT(st.st_mode), st.st_ino))
    print(held)
""")


def test_no_kernel_object_is_shared_with_another_session(session: Runtime,
                                                         other_taken: Runtime) -> None:
    mine, theirs = (set(eval(rt.execute(FD_PROBE).stdout)) for rt in (session, other_taken))  # noqa: S307
    assert mine and theirs
    assert not mine & theirs, f"descriptors shared between sessions: {mine & theirs}"
