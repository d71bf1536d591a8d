"""Framing: how one message travels on a socket. The one module that touches socket bytes.

A frame is a fixed header, a table of out-of-band buffers, the body (one
pickle, see `messages`) and the buffers that travel inline. Buffers of
`INLINE_LIMIT` bytes or more travel in sealed memfds whose descriptors ride
with the header (SCM_RIGHTS), so a 100 MB array costs one memcpy per side.
The same descriptors carry, after the memfds, any descriptor passed on
purpose (the zygote hands a worker its session socket this way).

Every frame from a worker is hostile until checked: sizes are bounded
before anything is allocated, a memfd must be sealed and of the announced
size, a descriptor that is not a memfd is refused, and a frame cut short is
a `ProtocolError`. When the receiving socket has ``SO_PASSCRED`` set, the
kernel tells who sent each frame (`Frame.sender`); a worker cannot lie
about that the way it could in a message field.
"""

from __future__ import annotations

import array
import fcntl
import mmap
import os
import pickle
import socket
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError

HEADER = struct.Struct("<QII")  # body length, number of out-of-band buffers, passed descriptors
ENTRY = struct.Struct("<QB")  # buffer length, transport (0 inline, 1 memfd)
INLINE_LIMIT = 256 * 1024
MAX_FDS = 253  # SCM_MAX_FD: memfds and passed descriptors of one frame together
_UCRED = struct.Struct("iII")  # pid, uid, gid
_ANCILLARY = socket.CMSG_SPACE(MAX_FDS * 4) + socket.CMSG_SPACE(_UCRED.size)
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


class PeerClosed(EOFError):
    """The other end closed the socket between two frames (the peer is gone)."""


@dataclass(frozen=True)
class FrameLimits:
    """What a receiver accepts in one frame, checked before reading or mapping anything."""

    max_body: int = 1 << 31
    max_buffer_bytes: int = 1 << 36  # all out-of-band buffers together
    max_buffers: int = 4096
    max_passed_fds: int = 0


@dataclass
class Frame:
    body: bytes
    buffers: list[memoryview] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)  # passed descriptors: the receiver closes them
    sender: int = 0  # from the kernel (SO_PASSCRED on the receiving socket), else 0


def enable_credentials(sock: socket.socket) -> None:
    """Have the kernel attach the sender's pid to every frame received on ``sock``."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)


def send(sock: socket.socket, body: bytes, buffers: Sequence[Any] = (),
         fds: Sequence[int] = ()) -> None:
    """Send one frame: header (+ descriptors), table, body, inline buffers."""
    if len(buffers) > 4096:
        raise ProtocolError(f"too many out-of-band buffers ({len(buffers)})")
    table = bytearray()
    inline: list[memoryview] = []
    memfds: list[int] = []
    try:
        for buf in buffers:
            view = buf.raw() if isinstance(buf, pickle.PickleBuffer) else memoryview(buf).cast("B")
            memfd = _to_memfd(view) if view.nbytes >= INLINE_LIMIT \
                and len(memfds) + len(fds) < MAX_FDS else -1
            if memfd >= 0:
                memfds.append(memfd)
                table += ENTRY.pack(view.nbytes, 1)
            else:
                inline.append(view)
                table += ENTRY.pack(view.nbytes, 0)
        header = HEADER.pack(len(body), len(buffers), len(fds))
        # The header carries the descriptors: a stream socket never merges
        # ancillary data across sendmsg calls, so the recvmsg of exactly one
        # header receives exactly this frame's descriptors.
        passing = [*memfds, *fds]
        if passing:
            socket.send_fds(sock, [header], passing)
            sock.sendall(bytes(table) + body)
        elif len(body) < 65536:
            sock.sendall(header + bytes(table) + body)  # one syscall, one wake-up of the peer
        else:
            sock.sendall(header + bytes(table))
            sock.sendall(body)
        for view in inline:
            sock.sendall(view)
    finally:
        for fd in memfds:
            os.close(fd)


def recv(sock: socket.socket, limits: FrameLimits = FrameLimits()) -> Frame:
    """Receive one frame, refusing anything over ``limits`` or malformed (`ProtocolError`)."""
    try:
        msg, ancdata, flags, _addr = sock.recvmsg(HEADER.size, _ANCILLARY)
    except ConnectionResetError as exc:
        raise PeerClosed("connection reset") from exc
    fds, pid = _ancillary(ancdata)
    keep: list[int] = []
    try:
        if not msg:
            raise PeerClosed("peer closed the connection")
        if flags & socket.MSG_CTRUNC:
            raise ProtocolError("a frame carried more descriptors than a frame may")
        if len(msg) < HEADER.size:
            msg += _recv_exact(sock, HEADER.size - len(msg), pid)
        body_len, nbuf, npassed = HEADER.unpack(msg)
        if body_len > limits.max_body:
            raise ProtocolError(f"refusing a frame body of {body_len} bytes "
                                f"(limit {limits.max_body})")
        if nbuf > limits.max_buffers or npassed > limits.max_passed_fds:
            raise ProtocolError(f"refusing a frame of {nbuf} buffers and {npassed} descriptors")
        table = _recv_exact(sock, ENTRY.size * nbuf, pid)
        entries = [ENTRY.unpack_from(table, i * ENTRY.size) for i in range(nbuf)]
        if sum(size for size, _ in entries) > limits.max_buffer_bytes:
            raise ProtocolError("refusing a frame whose buffers are over the transfer limit")
        if any(transport not in (0, 1) for _, transport in entries):
            raise ProtocolError("a frame announced an unknown buffer transport")
        nmem = sum(transport for _, transport in entries)
        if len(fds) != nmem + npassed:
            raise ProtocolError(f"a frame announced {nmem + npassed} descriptors and carried "
                                f"{len(fds)}")
        body = bytes(_recv_exact(sock, body_len, pid))
        buffers: list[memoryview] = []
        memfd_iter = iter(fds[:nmem])
        for size, transport in entries:
            if transport == 1:
                buffers.append(_from_memfd(next(memfd_iter), size))
            else:
                buffers.append(memoryview(_recv_exact(sock, size, pid)))
        keep = fds[nmem:]
        return Frame(body, buffers, keep, pid)
    finally:
        for fd in fds:
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass


def _ancillary(ancdata: list[tuple[int, int, bytes]]) -> tuple[list[int], int]:
    fds = array.array("i")
    pid = 0
    for level, kind, data in ancdata:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        elif kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED.size:
            pid = _UCRED.unpack_from(data)[0]
    return list(fds), pid


def _recv_exact(sock: socket.socket, size: int, sender: int = 0) -> bytearray:
    """Read exactly ``size`` bytes; with a known ``sender``, all of them must come from it.

    With SO_PASSCRED the kernel never returns bytes of two writers in one read,
    so a frame that a dying worker left unfinished, followed by its checkpoint's
    first frame, shows up here as a change of sender, before any byte of the
    checkpoint's frame is consumed.
    """
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        try:
            # Peeked, not read: the next writer's bytes stay for the next frame.
            if sender and next_sender(sock) != sender:
                raise ProtocolError("a frame's sender died in the middle of it")
            n = sock.recv_into(view[got:], min(size - got, 1 << 24))
        except (ConnectionResetError, PeerClosed):
            n = 0
        if n == 0:
            raise ProtocolError("the peer closed the connection in the middle of a frame")
        got += n
    return buf


# --- resynchronising after a takeover ---------------------------------------------------------
#
# A worker can die in the middle of reading a host frame, or of writing one. Its
# checkpoint shares the socket, so the leftovers would be read as if they were
# new frames. Two rules keep both directions aligned:
# - host -> worker: the checkpoint's `Ready` carries a fresh random nonce; the host
#   answers with SYNC + nonce, and the checkpoint drops every byte before it;
# - worker -> host: the host drops every byte whose sender (SO_PASSCRED) is the
#   dead worker before it reads the checkpoint's `Ready`.

SYNC = b"\x00cavelite-resync\x00"


def send_sync(sock: socket.socket, nonce: bytes) -> None:
    sock.sendall(SYNC + nonce)


def skip_until_sync(sock: socket.socket, nonce: bytes) -> None:
    """Drop what the host sent to the dead worker, up to and including SYNC + nonce."""
    token = SYNC + nonce
    carried = b""  # already consumed bytes that may be the start of the token
    while True:
        peeked, ancdata, _flags, _addr = sock.recvmsg(65536, _ANCILLARY, socket.MSG_PEEK)
        for fd in _ancillary(ancdata)[0]:
            os.close(fd)  # a peek installs the descriptors too
        if not peeked:
            raise PeerClosed("the host closed the connection")
        window = carried + peeked
        at = window.find(token)
        consume = at + len(token) - len(carried) if at >= 0 else len(peeked)
        _discard(sock, consume)
        if at >= 0:
            return
        carried = window[-(len(token) - 1):]


def next_sender(sock: socket.socket) -> int:
    """The sender of the next bytes waiting on ``sock`` (SO_PASSCRED), without consuming them."""
    peeked, ancdata, _flags, _addr = sock.recvmsg(1, _ANCILLARY, socket.MSG_PEEK)
    fds, pid = _ancillary(ancdata)
    for fd in fds:
        os.close(fd)
    if not peeked:
        raise PeerClosed("peer closed the connection")
    return pid


def discard_from(sock: socket.socket, sender: int) -> None:
    """Drop the bytes waiting on ``sock`` that ``sender`` wrote (one run of them)."""
    _data, ancdata, _flags, _addr = sock.recvmsg(1 << 20, _ANCILLARY)
    for fd in _ancillary(ancdata)[0]:
        os.close(fd)


def _discard(sock: socket.socket, size: int) -> None:
    while size > 0:
        data, ancdata, _flags, _addr = sock.recvmsg(min(size, 1 << 20), _ANCILLARY)
        for fd in _ancillary(ancdata)[0]:
            os.close(fd)
        if not data:
            raise PeerClosed("the peer closed the connection")
        size -= len(data)


def _to_memfd(view: memoryview) -> int:
    # Sealed so the receiver can map it without fearing later writes or a
    # shrink (which would SIGBUS the reader).
    try:
        fd = os.memfd_create("cavelite-buffer", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except PermissionError:
        return -1  # refused by the worker's seccomp where no cgroup bounds memfds: go inline
    try:
        written = 0
        while written < view.nbytes:
            written += os.write(fd, view[written:])
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _from_memfd(fd: int, size: int) -> memoryview:
    try:
        info = os.fstat(fd)
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        raise ProtocolError("a buffer descriptor is not a memfd") from None
    if not stat.S_ISREG(info.st_mode) or seals & _SEALS != _SEALS:
        raise ProtocolError("a buffer descriptor is not a sealed memfd")
    if info.st_size != size:
        raise ProtocolError("a buffer descriptor's size does not match the frame's table")
    if size == 0:
        return memoryview(b"")
    # MAP_PRIVATE: writes by this process stay private (copy-on-write), so a
    # forked checkpoint and the host keep their own copies.
    m = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    return memoryview(m)
