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

    _MAGIC = b"CAVESNAP2"

    def to_bytes(self) -> bytes:
        """The snapshot as bytes to store anywhere (a JSON header, then the worker's blob)."""
        # The host-side header is JSON: a host never unpickles anything of a snapshot.
        header = json.dumps({"remotes": list(self.remotes),
                             "descriptions": dict(self.descriptions)}).encode()
        return self._MAGIC + len(header).to_bytes(4, "little") + header + self.blob

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        """Read `to_bytes` output back; a foreign or corrupt header is a `CaveUsageError`."""
        if not data.startswith(cls._MAGIC):
            raise CaveUsageError("not a cavelite snapshot (or one from another version)")
        start = len(cls._MAGIC)
        size = int.from_bytes(data[start:start + 4], "little")
        try:
            header = json.loads(data[start + 4:start + 4 + size])
            remotes = tuple(str(n) for n in header["remotes"])
            descriptions = tuple((str(k), str(v)) for k, v in header["descriptions"].items())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CaveUsageError(f"corrupt snapshot header: {exc}") from None
        return cls(data[start + 4 + size:], remotes, descriptions)
