"""Layer 4: Landlock, the kernel's file, network and scope rules for a worker.

Landlock (Linux >= 5.13, no privileges needed) makes files readable only
under the given roots and nothing writable or executable; from ABI 4 on, TCP
bind and connect are refused; from ABI 6 on, signals and abstract unix
sockets cannot reach processes outside the worker's domain (each spare
creates its own, so sessions cannot signal each other, the zygote or the
host). A ruleset cannot be widened once applied, and forks inherit it.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterable

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # same on aarch64
_READ_FILE, _READ_DIR = 1 << 2, 1 << 3
SIGNAL_SCOPE_ABI = 6


def abi(libc: ctypes.CDLL | None) -> int:
    """The kernel's Landlock ABI version (0 when it has none)."""
    if libc is None:
        return 0
    return max(int(libc.syscall(_SYS_CREATE_RULESET, None, 0, 1)), 0)  # 1 = ..._VERSION


def restrict(libc: ctypes.CDLL | None, roots: Iterable[str]) -> bool:
    """Allow reads under ``roots`` only (and nothing else this ABI can refuse)."""
    version = abi(libc)
    if libc is None or version < 1:
        return False  # no Landlock in this kernel: the audit hook still refuses opens
    fs = (1 << 13) - 1
    if version >= 2:
        fs |= 1 << 13  # REFER: no re-linking files across directories
    if version >= 3:
        fs |= 1 << 14  # TRUNCATE
    if version >= 5:
        fs |= 1 << 15  # IOCTL_DEV
    net = 0b11 if version >= 4 else 0  # BIND_TCP | CONNECT_TCP: no TCP at all
    scoped = 0b11 if version >= SIGNAL_SCOPE_ABI else 0  # abstract unix sockets and signals
    if version >= 6:
        attr = struct.pack("=QQQ", fs, net, scoped)
    elif version >= 4:
        attr = struct.pack("=QQ", fs, net)
    else:
        attr = struct.pack("=Q", fs)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(_SYS_CREATE_RULESET, buf, len(attr), 0)
    if ruleset < 0:
        return False
    try:
        for root in dict.fromkeys(roots):
            try:
                fd = os.open(root, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a root that does not exist here needs no rule
            try:
                # Read-only, and only what this kind of file can have (the kernel checks).
                access = _READ_FILE | _READ_DIR if os.path.isdir(root) else _READ_FILE
                rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)
                libc.syscall(_SYS_ADD_RULE, ruleset, 1, rule, 0)  # 1 = PATH_BENEATH
            finally:
                os.close(fd)
        return bool(libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) == 0)
    finally:
        os.close(ruleset)
