"""What the host checks in PNG bytes from a worker: the signature and the IHDR header.

A worker's figure is hostile bytes like any other field. The host decodes no
image; it checks that the bytes start like a PNG, that the first chunk is a
well-formed IHDR, and reads the width and height from it, so a figure's
declared size is the size in its header and is bounded.
"""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_SIDE = 1 << 15
_IHDR = struct.Struct(">I4sIIBBBBB")  # length, type, width, height, depth, colour, ..., interlace


def dimensions(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a PNG's IHDR chunk; `ValueError` if it is not a PNG."""
    if type(data) is not bytes or not data.startswith(SIGNATURE) or len(data) < 8 + _IHDR.size + 4:
        raise ValueError("not PNG data (no PNG signature)")
    length, kind, width, height, depth, colour, _comp, _filter, interlace = _IHDR.unpack_from(data, 8)
    if length != 13 or kind != b"IHDR":
        raise ValueError("a PNG whose first chunk is not an IHDR header")
    (crc,) = struct.unpack_from(">I", data, 8 + _IHDR.size)
    if crc != zlib.crc32(data[12:8 + _IHDR.size]):
        raise ValueError("a PNG whose IHDR header fails its checksum")
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise ValueError(f"a PNG of {width}x{height} pixels (at most {MAX_SIDE} per side)")
    if depth not in (1, 2, 4, 8, 16) or colour not in (0, 2, 3, 4, 6) or interlace > 1:
        raise ValueError("a PNG with an invalid IHDR header")
    return width, height
