"""
Framing for JSON messages: 4-byte big-endian length prefix or newline-delimited.

Programs send ``u32 length`` + body; people at a telnet or ``nc`` prompt type
one JSON object per line.  One listening port serves both because the first
byte of a connection tells them apart: a length prefix for any frame we accept
starts with a byte below 0x09 (the cap is far under 144 MiB), while a typed
line starts with ``{``, whitespace or some other printable character.  Every
printable first byte therefore selects newline framing, so a person who types
garbage gets a readable error on their own line instead of a stuck connection
waiting for a gigabyte-long "frame".

The decoder is sans-I/O: ``feed(bytes)`` returns events and never holds more
than ``max_frame`` bytes of frame data.  An oversize frame is reported, then
skipped without buffering (to the end of the line, or for the declared length),
so the stream stays in sync and the connection can continue.
"""

import struct
from enum import Enum

import attrs

_LENGTH = struct.Struct(">I")

#: The largest cap this module accepts: a length prefix for any frame up to
#: it starts with a byte below 0x09, which no typed line starts with.
MAX_FRAME_LIMIT = 16 * 1024 * 1024

_TEXT_FIRST_BYTES = frozenset(b"\t\n\r") | frozenset(range(0x20, 0x7F))


class Framing(Enum):
    """How a connection delimits its frames (chosen by its first byte)."""

    LENGTH_PREFIXED = "length-prefixed"
    NEWLINE = "newline"


@attrs.frozen
class Frame:
    """One complete frame's body (without prefix or newline)."""

    data: bytes


@attrs.frozen
class FrameTooLarge:
    """
    A frame exceeded the cap and is being discarded.

    ``size`` is the declared length for length-prefixed frames, or ``None``
    for a newline frame (its length is unknown when the cap is hit).
    """

    size: int | None
    limit: int


def detect_framing(first_byte: int) -> Framing:
    """Pick the framing a connection uses from the first byte it sent."""
    if first_byte in _TEXT_FIRST_BYTES:
        return Framing.NEWLINE
    return Framing.LENGTH_PREFIXED


def encode_frame(framing: Framing, body: bytes) -> bytes:
    """
    Frame ``body`` for the wire.

    Newline framing requires a body without a newline byte, which compact
    ``json.dumps`` output always satisfies (it escapes control characters).
    """
    if framing is Framing.LENGTH_PREFIXED:
        return _LENGTH.pack(len(body)) + body
    if b"\n" in body:
        raise ValueError("a newline-framed body cannot contain a newline")
    return body + b"\n"


class FrameDecoder:
    """
    Incremental decoder for one connection's byte stream.

    ``framing`` may be fixed up front (clients know what they speak); when
    ``None`` it is detected from the first byte received.  Blank lines in
    newline framing are ignored, and a trailing ``\\r`` is dropped, so telnet
    line endings work.
    """

    def __init__(self, max_frame: int = 1 << 20, framing: Framing | None = None):
        if not 0 < max_frame <= MAX_FRAME_LIMIT:
            raise ValueError(f"max_frame must be in 1..{MAX_FRAME_LIMIT}")
        self.max_frame = max_frame
        self.framing = framing
        self._buffer = bytearray()
        # Bytes of an oversize length-prefixed frame still to discard, or
        # True while discarding an oversize line up to its newline.
        self._skip_bytes = 0
        self._skip_line = False

    @property
    def buffered(self) -> int:
        """Bytes currently held (never more than ``max_frame`` + 4)."""
        return len(self._buffer)

    @property
    def mid_frame(self) -> bool:
        """True while a frame has started but not finished arriving."""
        return bool(self._buffer) or self._skip_bytes > 0 or self._skip_line

    def feed(self, data: bytes) -> list:
        """Consume ``data``; return the ``Frame``/``FrameTooLarge`` events it completes."""
        if not data:
            return []
        if self.framing is None:
            self.framing = detect_framing(data[0])
        if self.framing is Framing.LENGTH_PREFIXED:
            return self._feed_length_prefixed(data)
        return self._feed_lines(data)

    def finish(self) -> list:
        """
        The input ended: return the events of what it leaves.  A last line
        of newline framing without its newline is a whole frame (the last
        line of a file piped with ``nc -N`` often lacks one); a
        length-prefixed frame cut short stays incomplete (``mid_frame``).
        """
        if self.framing is Framing.NEWLINE and (self._buffer or self._skip_line):
            return self._feed_lines(b"\n")
        return []

    def _feed_length_prefixed(self, data: bytes) -> list:
        events = []
        if not self._buffer and not self._skip_bytes:
            # Fast path: whole frames straight out of ``data``, no copying
            # through the buffer; only a trailing partial frame goes on below.
            offset = 0
            end = len(data)
            while end - offset >= _LENGTH.size:
                (length,) = _LENGTH.unpack_from(data, offset)
                if length > self.max_frame or end - offset - _LENGTH.size < length:
                    break
                start = offset + _LENGTH.size
                events.append(Frame(data[start : start + length]))
                offset = start + length
            if offset == end:
                return events
            data = data[offset:]
        view = memoryview(data)
        while view:
            if self._skip_bytes:
                skipped = min(self._skip_bytes, len(view))
                self._skip_bytes -= skipped
                view = view[skipped:]
                continue
            if len(self._buffer) < _LENGTH.size:
                needed = _LENGTH.size - len(self._buffer)
                self._buffer += view[:needed]
                view = view[needed:]
                if len(self._buffer) < _LENGTH.size:
                    break
                (length,) = _LENGTH.unpack(self._buffer)
                if length > self.max_frame:
                    del self._buffer[:]
                    self._skip_bytes = length
                    events.append(FrameTooLarge(length, self.max_frame))
                    continue
            (length,) = _LENGTH.unpack_from(self._buffer)
            needed = _LENGTH.size + length - len(self._buffer)
            self._buffer += view[:needed]
            view = view[needed:]
            if len(self._buffer) == _LENGTH.size + length:
                events.append(Frame(bytes(self._buffer[_LENGTH.size :])))
                del self._buffer[:]
        return events

    def _feed_lines(self, data: bytes) -> list:
        events = []
        start = 0
        while start < len(data):
            newline = data.find(b"\n", start)
            end = len(data) if newline < 0 else newline
            if self._skip_line:
                if newline >= 0:
                    self._skip_line = False
            elif len(self._buffer) + (end - start) > self.max_frame:
                del self._buffer[:]
                self._skip_line = newline < 0
                events.append(FrameTooLarge(None, self.max_frame))
            else:
                self._buffer += data[start:end]
                if newline >= 0:
                    line = bytes(self._buffer).rstrip(b"\r")
                    del self._buffer[:]
                    if line.strip():
                        events.append(Frame(line))
            if newline < 0:
                break
            start = newline + 1
        return events
