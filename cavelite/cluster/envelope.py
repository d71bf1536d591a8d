"""A session's snapshot as a host stores it: its change count and remote objects, then the snapshot.

The header is JSON, like `Snapshot`'s own: nothing here is ever unpickled.
The remote objects are kept as the `Descriptor`s their stand-ins were built
from, so a session woken on another node gets the same stand-ins back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from ..runtime import Snapshot
from .remotes import ClientRef, Descriptor

Remotes = dict[str, tuple[Descriptor, str | None]]  # name -> (descriptor, description)


def store_key(sid: str, epoch: int, seq: int) -> str:
    return f"{hashlib.sha256(sid.encode()).hexdigest()[:24]}-{epoch}-{seq}"


def encode_snapshot(seq: int, remotes: Remotes, snapshot: Snapshot) -> bytes:
    header = json.dumps({"seq": seq, "remotes": {n: [asdict(d), text] for n, (d, text)
                                                 in remotes.items()}}).encode()
    return len(header).to_bytes(4, "little") + header + snapshot.to_bytes()


def decode_snapshot(data: bytes) -> tuple[int, Remotes, Snapshot]:
    size = int.from_bytes(data[:4], "little")
    header = json.loads(data[4:4 + size])
    remotes = {n: (_descriptor(d), text) for n, (d, text) in header["remotes"].items()}
    return int(header["seq"]), remotes, Snapshot.from_bytes(data[4 + size:])


def _descriptor(d: dict[str, Any]) -> Descriptor:
    return Descriptor(
        ClientRef(**d["target"]), d["function"], d["name"], d["doc"],
        None if d["signature"] is None else tuple(tuple(p) for p in d["signature"]),  # type: ignore[misc]
        d["returns"], d["is_async"], tuple(d["attributes"]),
        tuple(_descriptor(m) for m in d["methods"]))
