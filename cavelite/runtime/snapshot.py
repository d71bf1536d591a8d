"""`Snapshot`: a parked namespace, as bytes the host stores and never unpickles."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import CaveUsageError


@dataclass(frozen=True)
class Snapshot:
    """A parked namespace. The host stores it as opaque bytes and never unpickles it."""

    blob: bytes
    remotes: tuple[str, ...] = ()
    descriptions: tuple[tuple[str, str], ...] = ()  # of the remote objects, by name

    # The format's version is in the magic. 3: the worker's blob carries each cell's source
    # (its functions are compiled again on restore, never loaded); older blobs cannot restore.
    _MAGIC = b"CAVESNAP3"
    _OLDER = (b"CAVESNAP1", b"CAVESNAP2")

    def to_bytes(self) -> bytes:
        """The snapshot as bytes to store anywhere (a JSON header, then the worker's blob)."""
        # The host-side header is JSON: a host never unpickles anything of a snapshot.
        header = json.dumps({"remotes": list(self.remotes),
                             "descriptions": dict(self.descriptions)}).encode()
        return self._MAGIC + len(header).to_bytes(4, "little") + header + self.blob

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        """Read `to_bytes` output back; a foreign, older or corrupt header is a `CaveUsageError`."""
        if data.startswith(cls._OLDER):
            raise CaveUsageError(older_snapshot_message())
        if not data.startswith(cls._MAGIC):
            raise CaveUsageError("not a cavelite snapshot (or one from another version)")
        start = len(cls._MAGIC)
        size = int.from_bytes(data[start:start + 4], "little")
        if len(data) < start + 4 + size:
            raise CaveUsageError("corrupt snapshot header: it is cut short")
        try:
            # RecursionError: a deeply nested header ("[[[[..."), which json cannot parse.
            header = json.loads(data[start + 4:start + 4 + size])
        except (ValueError, RecursionError) as exc:
            raise CaveUsageError(f"corrupt snapshot header: {_reason(exc)}") from None
        # Only the shape to_bytes writes: a list of names and a dict of texts (str() of
        # anything else could recurse or be huge).
        remotes, descriptions = (header.get("remotes"), header.get("descriptions")) \
            if type(header) is dict else (None, None)
        if type(remotes) is not list or any(type(n) is not str for n in remotes) \
                or type(descriptions) is not dict \
                or any(type(v) is not str for v in descriptions.values()):
            raise CaveUsageError("corrupt snapshot header: not the header of a cavelite snapshot")
        return cls(data[start + 4 + size:], tuple(remotes), tuple(descriptions.items()))


def _reason(exc: BaseException) -> str:
    return "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]


def older_snapshot_message() -> str:
    """Why an older snapshot is refused (said up front, before any worker reads it)."""
    return ("this snapshot was made by an older cavelite: it does not carry its cells' source, "
            "from which restoring compiles their functions again; take a new snapshot")
