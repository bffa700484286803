"""
Sans-I/O codec for the trading-chat binary frame (the "NS" frame,
``docs/protocols/tradechat.md``).

Every frame is a 32-byte big-endian header followed by a body::

    magic(2) version(1) flags(1) header_len(2) body_len(4) opcode(2)
    status(2) req_id(8) checksum(4) reserved(6)

The checksum is ``zlib.crc32`` over the header with the checksum field
zeroed, followed by the body exactly as sent (so, for an obfuscated request,
the XORed bytes).  This module turns bytes into L{Frame} values and back and
knows nothing about sockets, clocks or what the opcodes mean.

The decoder validates each header field as soon as its bytes arrive, so a
peer announcing an oversized body is rejected before a single body byte is
buffered, and garbage is rejected at its second byte.
"""

from __future__ import annotations

import struct
import zlib
from enum import IntEnum

import attrs

MAGIC = 0x4E53
VERSION = 1
HEADER_LEN = 32
DEFAULT_MAX_FRAME_SIZE = 65536

FLAG_OBFUSCATED = 0x01
FLAG_COMPRESSED = 0x02
FLAG_RESPONSE = 0x04

OBFUSCATION_BYTE = 0xA5
_OBFUSCATION_TABLE = bytes(b ^ OBFUSCATION_BYTE for b in range(256))

_HEADER = struct.Struct(">HBBHIHHQI6x")
_pack_header = _HEADER.pack
# The decoder reads a header in two parts: the first 12 bytes as (magic,
# version and flags in one word, header_len, body_len, opcode), all that
# framing and skipping a frame need, and the rest (status, req_id, checksum)
# only for a frame it returns.
_unpack_header_prefix = struct.Struct(">IHIH").unpack_from
_unpack_header_rest = struct.Struct(">HQI").unpack_from
_HEADER_PREFIX_LEN = 12
# On these disjoint bits, | is + and ^.
_MAGIC_VERSION = (MAGIC << 8) | VERSION  # equivalent: BitOr_Add, BitOr_BitXor
"""Magic and version: the header prefix's first word without its flags byte."""
_CHECKSUM_OFFSET = 22
_ZERO_CHECKSUM = b"\x00\x00\x00\x00"


class Opcode(IntEnum):
    """Operation codes of the protocol, including this server's extensions."""

    HELLO = 0x0001
    LOGIN = 0x0002
    LOGOUT = 0x0003
    HEARTBEAT = 0x0004
    JOIN_ROOM = 0x0101
    LEAVE_ROOM = 0x0102
    CHAT_SEND = 0x0103
    CHAT_BROADCAST = 0x0104
    DEPOSIT = 0x0201
    WITHDRAW = 0x0202
    TRANSFER = 0x0203
    BALANCE = 0x0204
    TXN_HISTORY = 0x0205


class Status(IntEnum):
    """
    Response status codes.  0x0000-0x0007 and 0x00FF are the existing
    server's; SELF_TRANSFER and LIMIT_EXCEEDED are extensions of this server
    for refusals the existing codes cannot name.
    """

    OK = 0x0000
    BAD_PACKET = 0x0001
    CHECKSUM_FAIL = 0x0002
    UNAUTHORIZED = 0x0003
    NOT_FOUND = 0x0004
    INSUFFICIENT_FUNDS = 0x0005
    SERVER_BUSY = 0x0006
    TIMEOUT = 0x0007
    SELF_TRANSFER = 0x0008
    LIMIT_EXCEEDED = 0x0009
    INTERNAL = 0x00FF


@attrs.frozen
class Frame:
    """
    One decoded frame.  C{body} is always the plain body: the decoder undoes
    obfuscation and the encoder applies it when C{flags} asks for it.
    """

    opcode: int
    req_id: int = 0
    status: int = 0
    flags: int = 0
    body: bytes = b""

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def is_obfuscated(self) -> bool:
        return bool(self.flags & FLAG_OBFUSCATED)


class FrameError(Exception):
    """Base of every error the decoder raises; all of them end the stream."""

    counter_name = "frame_error"


class BadMagic(FrameError):
    counter_name = "bad_magic"


class BadVersion(FrameError):
    counter_name = "bad_version"


class BadHeaderLength(FrameError):
    counter_name = "bad_header_len"


class FrameTooLarge(FrameError):
    counter_name = "frame_too_large"


class ChecksumMismatch(FrameError):
    """
    The frame was well formed but its CRC-32 did not match.  The opcode and
    req_id are kept so that the peer can be told which request was refused.
    """

    counter_name = "checksum_fail"

    def __init__(self, opcode: int, req_id: int) -> None:
        super().__init__(f"checksum mismatch on opcode {opcode:#06x} req_id {req_id}")
        self.opcode = opcode
        self.req_id = req_id


def obfuscate(data: bytes) -> bytes:
    """XOR every byte with 0xA5 (its own inverse).  Not security: see TLS."""
    return data.translate(_OBFUSCATION_TABLE)


def encode_frame(
    opcode: int,
    req_id: int = 0,
    status: int = 0,
    body: bytes = b"",
    flags: int = 0,
) -> bytes:
    """
    Encode one frame.  When C{flags} carries L{FLAG_OBFUSCATED} the body is
    XORed here and the checksum covers the XORed bytes, as the existing clients expect.

    The header is packed twice (checksum zero, then the real one) rather
    than patched in a mutable copy: on the server's hot path that is the
    cheapest way to a finished C{bytes}, with a single copy of the body.
    """
    if flags & FLAG_OBFUSCATED:
        body = obfuscate(body)
    body_len = len(body)
    checksum = zlib.crc32(body, zlib.crc32(
        _pack_header(MAGIC, VERSION, flags, HEADER_LEN, body_len, opcode, status, req_id, 0)))
    return _pack_header(MAGIC, VERSION, flags, HEADER_LEN, body_len, opcode, status, req_id,
                        checksum) + body


def encode(frame: Frame) -> bytes:
    """Encode a L{Frame} value."""
    return encode_frame(frame.opcode, frame.req_id, frame.status, frame.body, frame.flags)


def encode_response(request: Frame, status: int, body: bytes = b"") -> bytes:
    """Encode the response to C{request}: same opcode and req_id, never obfuscated."""
    return encode_frame(request.opcode, request.req_id, status, body, FLAG_RESPONSE)


class FrameDecoder:
    """
    Incremental decoder: L{receive} bytes in pieces of any size, then drain
    complete frames with L{next_frame}.

    After draining, at most one incomplete frame is buffered, and that frame
    has already been checked to fit in C{max_frame_size} bytes.  The first
    error is final: the decoder raises it again on every later call, because
    a byte stream that lost framing cannot be resynchronised.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 skip_opcode: int | None = None) -> None:
        if max_frame_size < HEADER_LEN:
            raise ValueError(f"max_frame_size must be at least {HEADER_LEN}")
        self.max_frame_size = max_frame_size
        self._max_body_len = max_frame_size - HEADER_LEN
        # A peer that only counts some unsolicited frames (a load generator
        # receiving every chat push) names their opcode here: such frames
        # that are not responses are counted in `skipped` and dropped after
        # their header is validated, with no checksum, copy or Frame value.
        self._skip_opcode = skip_opcode
        self.skipped = 0
        # Frames are consumed by advancing _offset; the buffer is compacted
        # once per drain, not once per frame, so a read holding hundreds of
        # pipelined frames is not copied hundreds of times.
        self._buffer = bytearray()
        self._offset = 0
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """How many received bytes are held waiting for the rest of a frame."""
        return len(self._buffer) - self._offset

    def receive(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """
        Return the next complete frame, or C{None} if more bytes are needed.

        @raise FrameError: on malformed input; the decoder is then dead.
        """
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        size = len(buffer)
        start = self._offset
        skip_opcode = self._skip_opcode
        max_body_len = self._max_body_len
        while True:
            if size - start < HEADER_LEN:
                if start == size:  # equivalent: Eq_GtE -- start never passes size
                    # Everything consumed (the usual end of a read): nothing
                    # to compact or to check.
                    buffer.clear()
                    self._offset = 0
                    return None
                self._offset = start
                self._compact()
                self._check_partial_header(self._buffer)
                return None
            word, header_len, body_len, opcode = _unpack_header_prefix(buffer, start)
            if (word >> 8 != _MAGIC_VERSION
                    or header_len != HEADER_LEN  # equivalent: NotEq_IsNot -- a small int
                    or body_len > max_body_len):
                self._offset = start
                self._check_header(word >> 16, (word >> 8) & 0xFF, header_len, body_len)
            end = start + HEADER_LEN + body_len
            if size < end:
                self._offset = start
                self._compact()
                return None
            # The flags are the word's low byte.
            if opcode != skip_opcode or word & FLAG_RESPONSE:
                break
            self.skipped += 1
            start = end
        flags = word & 0xFF
        status, req_id, checksum = _unpack_header_rest(buffer, start + _HEADER_PREFIX_LEN)
        buffer[start + _CHECKSUM_OFFSET:start + _CHECKSUM_OFFSET + 4] = _ZERO_CHECKSUM
        actual = zlib.crc32(buffer[start:end])
        body = bytes(buffer[start + HEADER_LEN:end])
        self._offset = end
        if actual != checksum:
            self._fail(ChecksumMismatch(opcode, req_id))
        if flags & FLAG_OBFUSCATED:
            body = body.translate(_OBFUSCATION_TABLE)
        return Frame(opcode, req_id, status, flags, body)

    def _compact(self) -> None:
        if self._offset:
            del self._buffer[:self._offset]
            self._offset = 0

    def frames(self) -> list[Frame]:
        """Drain and return every complete frame (raising at the first bad one)."""
        result = []
        while (frame := self.next_frame()) is not None:
            result.append(frame)
        return result

    def _fail(self, error: FrameError) -> None:
        self._error = error
        self._buffer.clear()
        self._offset = 0
        raise error

    def _check_partial_header(self, buffer: bytearray) -> None:
        """
        Reject a bad prefix without waiting for the whole header; C{buffer}
        holds at least one byte and less than a header.
        """
        available = len(buffer)
        # Below, `is not` is the same test as `!=` on a byte or a header_len
        # of 32: CPython keeps one object per small int.
        if buffer[0] != MAGIC >> 8:  # equivalent: NotEq_IsNot
            self._fail(BadMagic(f"bad magic byte {buffer[0]:#04x}"))
        if available >= 2 and buffer[1] != MAGIC & 0xFF:  # equivalent: NotEq_IsNot
            self._fail(BadMagic(f"bad magic byte {buffer[1]:#04x}"))
        if available >= 3 and buffer[2] != VERSION:  # equivalent: NotEq_IsNot
            self._fail(BadVersion(f"unsupported version {buffer[2]}"))
        if available >= 6:
            header_len = int.from_bytes(buffer[4:6], "big")
            if header_len != HEADER_LEN:  # equivalent: NotEq_IsNot
                self._fail(BadHeaderLength(f"header_len {header_len}"))
        if available >= 10:
            body_len = int.from_bytes(buffer[6:10], "big")
            self._check_body_len(body_len)

    def _check_header(self, magic: int, version: int, header_len: int, body_len: int) -> None:
        if magic != MAGIC:
            self._fail(BadMagic(f"bad magic {magic:#06x}"))
        # `is not` is the same test on a byte or a header_len of 32, as above.
        if version != VERSION:  # equivalent: NotEq_IsNot
            self._fail(BadVersion(f"unsupported version {version}"))
        if header_len != HEADER_LEN:  # equivalent: NotEq_IsNot
            self._fail(BadHeaderLength(f"header_len {header_len}"))
        self._check_body_len(body_len)

    def _check_body_len(self, body_len: int) -> None:
        if HEADER_LEN + body_len > self.max_frame_size:
            self._fail(FrameTooLarge(
                f"frame of {HEADER_LEN + body_len} bytes exceeds {self.max_frame_size}"))
