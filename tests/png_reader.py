"""A minimal PNG decoder (stdlib only) so tests can look at browser screenshots.

Supports what a browser writes: 8-bit greyscale, grey+alpha, RGB and RGBA, not interlaced.
Rows can be decoded lazily up to a limit, because the tests only inspect the top of a tall
screenshot and pure-Python unfiltering costs about a second per few million bytes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel


class PngError(ValueError):
    pass


@dataclass(frozen=True)
class Image:
    width: int
    height: int  # rows actually decoded (may be fewer than the file holds)
    channels: int
    rows: list[bytes]

    def rgb(self, x: int, y: int) -> tuple[int, int, int]:
        row, c = self.rows[y], self.channels
        if c in (1, 2):
            grey = row[x * c]
            return grey, grey, grey
        return row[x * c], row[x * c + 1], row[x * c + 2]


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(SIGNATURE):
        raise PngError("not a PNG file")
    pos, chunks = len(SIGNATURE), []
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise PngError(f"bad CRC in {kind!r} chunk")
        chunks.append((kind, body))
        pos += 12 + length
        if kind == b"IEND":
            return chunks
    raise PngError("truncated PNG (no IEND)")


def _add_bytes(a: bytes, b: bytes) -> bytes:
    """Bytewise (a + b) mod 256 on whole rows at once, using big-integer SWAR arithmetic."""
    n = len(a)
    low = int.from_bytes(b"\x7f" * n, "big")
    high = int.from_bytes(b"\x80" * n, "big")
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    return (((x & low) + (y & low)) ^ ((x ^ y) & high)).to_bytes(n, "big")


def _unfilter(kind: int, line: bytearray, prev: bytes, bpp: int) -> bytes:
    n = len(line)
    if kind == 0:
        return bytes(line)
    if kind == 1:  # Sub
        for i in range(bpp, n):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
        return bytes(line)
    if kind == 2:  # Up
        return _add_bytes(bytes(line), prev)
    if kind == 3:  # Average
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        return bytes(line)
    if kind == 4:  # Paeth
        for i in range(n):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            if pa <= pb and pa <= pc:
                predictor = a
            elif pb <= pc:
                predictor = b
            else:
                predictor = c
            line[i] = (line[i] + predictor) & 0xFF
        return bytes(line)
    raise PngError(f"unknown filter type {kind}")


def read_png(path: Path | str, max_rows: int | None = None) -> Image:
    """Decode a PNG file; with ``max_rows`` only the top rows are unfiltered."""
    chunks = _chunks(Path(path).read_bytes())
    if not chunks or chunks[0][0] != b"IHDR":
        raise PngError("IHDR must come first")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1])
    if depth != 8 or colour not in CHANNELS:
        raise PngError(f"unsupported bit depth {depth} / colour type {colour}")
    if compression != 0 or filtering != 0 or interlace != 0:
        raise PngError("unsupported compression, filter method or interlacing")
    channels = CHANNELS[colour]
    stride = width * channels
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    if len(raw) != height * (stride + 1):
        raise PngError(f"image data is {len(raw)} bytes, expected {height * (stride + 1)}")
    limit = height if max_rows is None else min(height, max_rows)
    rows: list[bytes] = []
    prev = bytes(stride)
    for y in range(limit):
        start = y * (stride + 1)
        prev = _unfilter(raw[start], bytearray(raw[start + 1:start + 1 + stride]), prev, channels)
        rows.append(prev)
    return Image(width, limit, channels, rows)
