"""A bounded, buffered little-endian reader for binary headers (GGUF).

Reads come from a 1 MiB buffer with ``struct.unpack_from``, so the tens of thousands of small
fields in a GGUF vocabulary cost microseconds each, and skips past the buffer become one seek.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

_CHUNK = 1 << 20
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")


class Truncated(Exception):
    """A read ran past the end of the file (callers turn it into a message for users)."""


class BoundedReader:
    """Little-endian reads over our own buffer: cheap per-field reads, cheap skips.

    Never reads past ``size`` (the file's size when opened): a read that would raises
    :class:`Truncated` before anything is allocated for it.
    """

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self.size = size
        self._buf = b""
        self._base = 0  # file offset of _buf[0]
        self._pos = 0  # index into _buf

    def tell(self) -> int:
        return self._base + self._pos

    def remaining(self) -> int:
        return self.size - self.tell()

    def _ensure(self, n: int) -> None:
        if len(self._buf) - self._pos >= n:
            return
        if n > self.remaining():
            raise Truncated
        rest = self._buf[self._pos :]
        self._base = self.tell()
        self._file.seek(self._base + len(rest))
        want = max(n, _CHUNK) - len(rest)
        self._buf = rest + self._file.read(want)
        self._pos = 0
        if len(self._buf) < n:  # the file shrank while we read it
            raise Truncated

    def take(self, n: int) -> bytes:
        self._ensure(n)
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        return data

    def unpack(self, fmt: struct.Struct) -> int | float:
        self._ensure(fmt.size)
        (value,) = fmt.unpack_from(self._buf, self._pos)
        self._pos += fmt.size
        return value  # type: ignore[no-any-return]

    def u32(self) -> int:
        return int(self.unpack(U32))

    def u64(self) -> int:
        return int(self.unpack(U64))

    def skip(self, n: int) -> None:
        if n > self.remaining():
            raise Truncated
        if len(self._buf) - self._pos >= n:
            self._pos += n
        else:
            self._base, self._buf, self._pos = self.tell() + n, b"", 0

    def skip_strings(self, count: int, limit: int) -> int | None:
        """Skip ``count`` length-prefixed strings; return an offending length if one is > limit."""
        while count:
            buf, pos, end = self._buf, self._pos, len(self._buf)
            # Fast path: walk the strings already in the buffer without method calls.
            while count and pos + 8 <= end:
                n = U64.unpack_from(buf, pos)[0]
                if n > limit:
                    self._pos = pos
                    return int(n)
                if pos + 8 + n > end:
                    break
                pos += 8 + n
                count -= 1
            self._pos = pos
            if count:
                n = self.u64()
                if n > limit:
                    return n
                self.skip(n)
                count -= 1
        return None
