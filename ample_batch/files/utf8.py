"""The whole-file UTF-8 check of a CSV read as UTF-8: bytes past the head count too.

pyarrow validates only the columns it converts; this validates every byte, on its own thread
beside the scan, so a file that is not UTF-8 after all is known before anything is spent.
"""

from __future__ import annotations

import pyarrow as pa

from ..errors import InputError
from .csv import open_binary
from .spec import InputSpec

__all__ = ["NotUtf8", "check_utf8"]


class NotUtf8(InputError):
    """Bytes that are not UTF-8 past the head of a file read as UTF-8."""

    def __init__(self, message: str, *, line: int) -> None:
        super().__init__(message)
        self.line = line


_BLOCK = 16 << 20


def check_utf8(spec: InputSpec) -> None:
    """Reject undecodable bytes anywhere in a UTF-8 CSV, not only in the email column.

    One buffer is read into and validated in place, block after block, each cut where a UTF-8
    sequence ends: a fresh buffer per block cost more in page faults than the validation
    itself. (Not memory-mapped: cheaper in CPU, but every page it touches counts in the
    process's resident memory.)
    """
    buffer = bytearray(_BLOCK + 4)
    view = memoryview(buffer)
    start = 0  # offset of the buffer's first byte in the decompressed file
    carry = 0  # bytes of an incomplete UTF-8 sequence moved to the front of the buffer
    with open_binary(spec.path, spec.compression) as f:
        while True:
            read = f.readinto(view[carry : carry + _BLOCK])  # type: ignore[attr-defined]
            end = carry + read
            cut = _sequence_end(view, end) if read else end  # hold back an incomplete tail
            _validate_utf8(spec, view[:cut], start)
            if not read:
                return
            view[: end - cut] = view[cut:end]
            start, carry = start + cut, end - cut


def _sequence_end(data: memoryview, end: int) -> int:
    """Where the last complete UTF-8 sequence in `data[:end]` ends (`end` if none is cut)."""
    back = 0
    while back < min(3, end) and data[end - 1 - back] & 0xC0 == 0x80:
        back += 1
    if back < end and data[end - 1 - back] >= 0xC0:
        return end - back - 1
    return end


def _validate_utf8(spec: InputSpec, body: memoryview, start: int) -> None:
    offsets = pa.array([0, len(body)], pa.int64()).buffers()[1]
    text = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(body)])
    try:  # Arrow's SIMD validation, in place: no copy, no Python str
        text.validate(full=True)
    except pa.ArrowInvalid:  # the exact place comes from Python's decoder
        data = bytes(body)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = _lines_before(spec, start) + data[: exc.start].count(b"\n")
            raise NotUtf8(
                f"{spec.path.name}: line {line + 1} has bytes that are not UTF-8 "
                f"(0x{data[exc.start]:02x}); pass the real encoding with --encoding "
                "(e.g. cp1252)",
                line=line + 1,
            ) from exc


def _lines_before(spec: InputSpec, offset: int) -> int:
    """Newlines in the first `offset` bytes of the (decompressed) file."""
    count = 0
    with open_binary(spec.path, spec.compression) as f:
        while offset > 0:
            block = f.read(min(offset, 16 << 20))
            if not block:
                break
            count += block.count(b"\n")
            offset -= len(block)
    return count
