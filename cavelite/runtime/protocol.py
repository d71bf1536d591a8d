"""Host <-> worker messages and their framing: the one seam that touches sockets.

A message is ``(kind, fields)`` pickled with protocol 5; large buffers
(numpy/pandas data) travel out of band so they are never copied into the
pickle stream. Buffers under `INLINE_LIMIT` follow the body on the socket;
bigger ones are written to a sealed memfd whose descriptor rides along with
the header (SCM_RIGHTS), so a 100 MB array costs one memcpy per side.

Who decodes what:
- the worker decodes host bytes with plain `pickle` (the worker *is* the sandbox);
- the host decodes worker bytes only through `cavelite.security.decode`, a
  restricted unpickler (promise 4: the host never trusts worker bytes).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import pickle
import socket
import struct
from typing import Any

HEADER = struct.Struct("<QI")  # body length, number of out-of-band buffers
ENTRY = struct.Struct("<QB")  # buffer length, transport (0 inline, 1 memfd)
INLINE_LIMIT = 256 * 1024
MAX_BUFFERS = 4096
MAX_FDS = 253  # SCM_MAX_FD
# A body this large is refused before reading it: the bulk of any value goes
# through out-of-band buffers, so a huge body means a confused or hostile peer.
MAX_BODY = 1 << 31
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


class PeerClosed(EOFError):
    """The other end of the socket is gone."""


def encode(obj: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """Pickle ``obj`` with protocol 5, returning the body and its out-of-band buffers."""
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return body, buffers


def send(sock: socket.socket, body: bytes, buffers: list[pickle.PickleBuffer] = ()) -> None:  # type: ignore[assignment]
    """Send one framed message: header (+fds), body, inline buffers."""
    if len(buffers) > MAX_BUFFERS:
        raise ValueError(f"too many out-of-band buffers ({len(buffers)})")
    table = bytearray()
    inline: list[memoryview] = []
    fds: list[int] = []
    try:
        for buf in buffers:
            view = buf.raw() if isinstance(buf, pickle.PickleBuffer) else memoryview(buf).cast("B")
            fd = _to_memfd(view) if view.nbytes >= INLINE_LIMIT and len(fds) < MAX_FDS else -1
            if fd >= 0:
                fds.append(fd)
                table += ENTRY.pack(view.nbytes, 1)
            else:
                inline.append(view)
                table += ENTRY.pack(view.nbytes, 0)
        header = HEADER.pack(len(body), len(buffers))
        # The header carries the descriptors: a stream socket never merges
        # ancillary data across sendmsg calls, so recvmsg of exactly one
        # header receives exactly this message's fds.
        if fds:
            socket.send_fds(sock, [header], fds)
        else:
            sock.sendall(header)
        if len(body) < 65536:
            sock.sendall(bytes(table) + body)  # one syscall for the common small message
        else:
            sock.sendall(table)
            sock.sendall(body)
        for view in inline:
            sock.sendall(view)
    finally:
        for fd in fds:
            os.close(fd)


def recv(sock: socket.socket) -> tuple[bytes, list[memoryview]]:
    """Receive one framed message: returns the body and its buffers."""
    try:
        msg, fds, _flags, _addr = socket.recv_fds(sock, HEADER.size, MAX_FDS)
    except ConnectionResetError as exc:
        raise PeerClosed("connection reset") from exc
    try:
        if not msg:
            raise PeerClosed("peer closed the connection")
        if len(msg) < HEADER.size:
            msg += _recv_exact(sock, HEADER.size - len(msg))
        body_len, nbuf = HEADER.unpack(msg)
        if body_len > MAX_BODY or nbuf > MAX_BUFFERS:
            raise ValueError(f"refusing a message of {body_len} bytes with {nbuf} buffers")
        table = _recv_exact(sock, ENTRY.size * nbuf)
        body = bytes(_recv_exact(sock, body_len))
        buffers: list[memoryview] = []
        fd_iter = iter(fds)
        for i in range(nbuf):
            size, transport = ENTRY.unpack_from(table, i * ENTRY.size)
            if transport == 1:
                fd = next(fd_iter, None)
                if fd is None:
                    raise ValueError("message announced a memfd buffer but carried no descriptor")
                buffers.append(_from_memfd(fd, size))
            else:
                buffers.append(memoryview(_recv_exact(sock, size)))
        return body, buffers
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


def _recv_exact(sock: socket.socket, size: int) -> bytearray:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], min(size - got, 1 << 24))
        if n == 0:
            raise PeerClosed("peer closed the connection mid-message")
        got += n
    return buf


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
    seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    if seals & _SEALS != _SEALS:
        raise ValueError("buffer descriptor is not a sealed memfd")
    if os.fstat(fd).st_size != size:
        raise ValueError("buffer descriptor size does not match the header")
    if size == 0:
        return memoryview(b"")
    # MAP_PRIVATE: writes by this process stay private (copy-on-write), so a
    # forked checkpoint and the host keep their own copies.
    m = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    return memoryview(m)
