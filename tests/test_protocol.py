"""The wire format against a hostile peer, over a real socketpair.

Each test writes bytes a compromised worker could write and checks that the
receiving side refuses them with a clear `ProtocolError` (or `PeerClosed`
for a clean end), closes every descriptor it was passed, and can still read
the next well-formed frame a new sender writes (the host stays usable).
"""

from __future__ import annotations

import fcntl
import os
import pickle
import socket
import struct
from collections.abc import Iterator

import numpy as np
import pytest

from cavelite import ProtocolError
from cavelite.runtime import messages, protocol, wire
from cavelite.runtime.messages import CellReply, Done, Limits, Variables
from cavelite.runtime.results import VariableInfo


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    host, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    protocol.enable_credentials(host)
    host.settimeout(10)
    yield host, worker
    host.close()
    worker.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def frame(body: bytes, table: bytes = b"", nbuf: int = 0, npassed: int = 0) -> bytes:
    return protocol.HEADER.pack(len(body), nbuf, npassed) + table + body


def still_usable(host: socket.socket, worker: socket.socket) -> None:
    """After a refusal, a well-formed frame written next is read as it should be."""
    body, _ = wire.encode(Done())
    protocol.send(worker, body)
    got = protocol.recv(host)
    assert wire.decode(got.body, accept=messages.WORKER_KINDS)[0] == Done()
    assert got.sender == os.getpid()


def test_a_frame_round_trips_with_buffers_inline_and_in_memfds(pair) -> None:
    host, worker = pair
    small, big = np.arange(10.0), np.arange(1_000_000.0)
    body, buffers = wire.encode(messages.Value("x", pickle.dumps(
        (small, big), protocol=5, buffer_callback=(out := []).append)))
    protocol.send(worker, body, [*buffers, *out])
    got = protocol.recv(host)
    value, _ = wire.decode(got.body, accept=messages.WORKER_KINDS)
    a, b = pickle.loads(value.payload, buffers=got.buffers)
    assert np.array_equal(a, small) and np.array_equal(b, big)


def test_an_oversized_body_is_refused_before_it_is_read(pair) -> None:
    host, worker = pair
    worker.sendall(protocol.HEADER.pack(1 << 40, 0, 0))
    with pytest.raises(ProtocolError, match="refusing a frame body"):
        protocol.recv(host, protocol.FrameLimits(max_body=1 << 20))


def test_buffers_over_the_transfer_limit_are_refused_before_they_are_read(pair) -> None:
    host, worker = pair
    table = protocol.ENTRY.pack(1 << 30, 0) * 4
    worker.sendall(frame(b"x", table, nbuf=4))
    with pytest.raises(ProtocolError, match="over the transfer limit"):
        protocol.recv(host, protocol.FrameLimits(max_buffer_bytes=1 << 31))


def test_too_many_buffers_or_descriptors_are_refused(pair) -> None:
    host, worker = pair
    worker.sendall(protocol.HEADER.pack(1, 100_000, 0))
    with pytest.raises(ProtocolError, match="buffers"):
        protocol.recv(host)


def test_a_memfd_announced_but_not_sent_is_refused(pair) -> None:
    host, worker = pair
    worker.sendall(frame(b"x", protocol.ENTRY.pack(4096, 1), nbuf=1))
    with pytest.raises(ProtocolError, match="announced 1 descriptors and carried 0"):
        protocol.recv(host)


def test_a_descriptor_nobody_announced_is_closed_and_refused(pair) -> None:
    host, worker = pair
    before = open_fds()
    fd = os.memfd_create("stray")
    socket.send_fds(worker, [protocol.HEADER.pack(1, 0, 0)], [fd])
    worker.sendall(b"x")
    os.close(fd)
    with pytest.raises(ProtocolError, match="announced 0 descriptors and carried 1"):
        protocol.recv(host)
    assert open_fds() <= before


def _memfd(size: int, seal: bool) -> int:
    fd = os.memfd_create("cavelite-buffer", os.MFD_ALLOW_SEALING)
    os.write(fd, b"\0" * size)
    if seal:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                    | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd


@pytest.mark.parametrize("make_fd, size, match", [
    (lambda: _memfd(4096, seal=False), 4096, "not a sealed memfd"),
    (lambda: _memfd(4096, seal=True), 8192, "size does not match"),
    (lambda: os.open("/dev/null", os.O_RDONLY), 0, "not a memfd"),
    (lambda: socket.socket().detach(), 16, "not a"),
], ids=["unsealed", "size_mismatch", "not_a_memfd", "a_socket"])
def test_a_bad_memfd_is_refused(pair, make_fd, size: int, match: str) -> None:
    host, worker = pair
    before = open_fds()
    fd = make_fd()
    socket.send_fds(worker, [protocol.HEADER.pack(1, 1, 0)], [fd])
    worker.sendall(protocol.ENTRY.pack(size, 1) + b"x")
    os.close(fd)
    with pytest.raises(ProtocolError, match=match):
        protocol.recv(host)
    assert open_fds() <= before


def test_a_truncated_frame_is_a_protocol_error(pair) -> None:
    host, worker = pair
    worker.sendall(protocol.HEADER.pack(100, 0, 0) + b"only part")
    worker.close()
    with pytest.raises(ProtocolError, match="middle of a frame"):
        protocol.recv(host)


def test_a_clean_close_between_frames_is_peer_closed(pair) -> None:
    host, worker = pair
    worker.close()
    with pytest.raises(protocol.PeerClosed):
        protocol.recv(host)


def test_a_frame_finished_by_another_process_is_refused(pair) -> None:
    host, worker = pair
    worker.sendall(protocol.HEADER.pack(10, 0, 0) + b"12345")  # half a frame from this process
    child = os.fork()
    if child == 0:
        worker.sendall(b"67890")  # the rest, from another process
        os._exit(0)
    os.waitpid(child, 0)
    with pytest.raises(ProtocolError, match="died in the middle"):
        protocol.recv(host)
    assert protocol.next_sender(host) == child  # the other writer's bytes were not consumed


@pytest.mark.parametrize("body, match", [
    (pickle.dumps(("no_such_kind", (), ())), "unexpected message kind"),
    (pickle.dumps(("done", (1,), ())), "with 1 fields"),
    (pickle.dumps(("done", (), ("x",))), "released"),
    (pickle.dumps(["done", (), ()]), "triple"),
    (pickle.dumps(("cell", (True, np.str_("x")) + (None,) * 9, ())), "undecodable"),
    (b"\x80\x05garbage", "undecodable"),
    (pickle.dumps(("variable_list", ((("v", 1, "", None),),), ())), "expected str"),
    (pickle.dumps(("variable_list", ((("v", "t" * 5000, "", None),),), ())), "limit"),
    (pickle.dumps(("cell", (True, "", "", None, ("exception", "E", "m", "", None, ()), float("nan"),
                            (), (), False, None, False, ()), ())), "non-finite"),
    (pickle.dumps(("failure", ("no_such_code", "m"), ())), "unknown ErrorCode"),
], ids=["unknown_kind", "missing_field", "bad_releases", "not_a_triple", "numpy_str",
        "garbage", "wrong_type", "oversized_name", "nan", "unknown_error_code"])
def test_a_malformed_message_is_refused(pair, body: bytes, match: str) -> None:
    host, worker = pair
    protocol.send(worker, body)
    got = protocol.recv(host)
    with pytest.raises(ProtocolError, match=match):
        wire.decode(got.body, accept=messages.WORKER_KINDS, limits=Limits(name=1000))
    still_usable(host, worker)


def test_the_worker_coerces_what_a_cell_left_in_its_reply() -> None:
    class S(str):
        pass

    reply = CellReply(True, S("out") * 10, "", np.str_("7"), None, 1, (
        VariableInfo(S("v"), np.str_("T"), "s" * 10_000, None),), (S("gone"),), False, None, False)
    limits = Limits(output=20, summary=100)
    body, _ = wire.encode(reply, coerce=True, limits=limits)
    decoded, _ = wire.decode(body, accept=messages.WORKER_KINDS, limits=limits)
    assert type(decoded.stdout) is str and len(decoded.stdout) <= 20
    assert type(decoded.value_repr) is str and decoded.value_repr == "7"
    assert type(decoded.changed[0].name) is str and len(decoded.changed[0].summary) <= 100
    assert decoded.duration_s == 1.0 and decoded.deleted == ("gone",)


def test_a_host_request_is_taken_by_shape_in_the_worker() -> None:
    body, _ = wire.encode(messages.Exec("x = 1"))
    assert wire.decode_request(body, accept=messages.HOST_KINDS) == messages.Exec("x = 1")
    with pytest.raises(ProtocolError):
        wire.decode_request(body, accept=(messages.Shutdown,))


def test_variables_of_many_entries_are_bounded() -> None:
    many = Variables(tuple(VariableInfo(f"v{i}", "int", "1", None) for i in range(50)))
    body, _ = wire.encode(many)
    with pytest.raises(ProtocolError, match="list of 50 entries"):
        wire.decode(body, accept=messages.WORKER_KINDS, limits=Limits(items=10))


def test_struct_sizes_are_what_the_docs_say() -> None:
    assert protocol.HEADER.size == struct.calcsize("<QII") == 16
