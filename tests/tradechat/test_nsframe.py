"""
The NS frame codec against the spec's captured vectors, every header error,
and property tests over random frames, random splits and random garbage.
"""

import zlib

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from protocols import nsframe
from protocols.nsframe import (
    FLAG_OBFUSCATED, FLAG_RESPONSE, HEADER_LEN, BadHeaderLength, BadMagic, BadVersion, ChecksumMismatch, Frame,
    FrameDecoder, FrameError, FrameTooLarge, encode, encode_frame, obfuscate,
)


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# (description, header hex, body hex, decoded frame)  -- from the spec
SPEC_VECTORS = [
    ("HELLO request",
     "4e53 01 00 0020 00000000 0001 0000 0000000000000001 eaa7a83f 000000000000", "",
     Frame(0x0001, 1, 0, 0, b"")),
    ("LOGIN request",
     "4e53 01 00 0020 0000000b 0002 0000 0000000000000002 c15ee3f5 000000000000",
     "0005 616c696365 0f6b7181",
     Frame(0x0002, 2, 0, 0, _hex("0005 616c696365 0f6b7181"))),
    ("LOGIN response",
     "4e53 01 04 0020 0000000c 0002 0000 0000000000000002 c476bb70 000000000000",
     "000003e7 00000000000186a0",
     Frame(0x0002, 2, 0, FLAG_RESPONSE, _hex("000003e7 00000000000186a0"))),
    ("TRANSFER request",
     "4e53 01 00 0020 0000000c 0203 0000 0000000000000007 69390bd9 000000000000",
     "000000d4 0000000000000096",
     Frame(0x0203, 7, 0, 0, _hex("000000d4 0000000000000096"))),
    ("WITHDRAW refused",
     "4e53 01 04 0020 00000008 0202 0005 0000000000000009 5385dc71 000000000000",
     "0000000000018736",
     Frame(0x0202, 9, 5, FLAG_RESPONSE, _hex("0000000000018736"))),
    ("CHAT_BROADCAST push",
     "4e53 01 00 0020 00000011 0104 0000 0000000000000000 62c30333 000000000000",
     "0001 000003e7 0009 68656c6c6f20626f62",
     Frame(0x0104, 0, 0, 0, _hex("0001 000003e7 0009 68656c6c6f20626f62"))),
    ("obfuscated TRANSFER",
     "4e53 01 01 0020 0000000c 0203 0000 0000000000000004 ff913acb 000000000000",
     "a5a5a75d a5a5a5a5a5a5a595",
     Frame(0x0203, 4, 0, FLAG_OBFUSCATED, _hex("000002f8 0000000000000030"))),
]


def _decode_all(data: bytes, max_frame_size: int = nsframe.DEFAULT_MAX_FRAME_SIZE):
    decoder = FrameDecoder(max_frame_size)
    decoder.receive(data)
    return decoder.frames()


class SpecVectorTests(unittest.TestCase):
    def test_encode_matches_captured_bytes(self):
        for description, header, body, frame in SPEC_VECTORS:
            with self.subTest(description):
                self.assertEqual(encode(frame), _hex(header) + _hex(body))

    def test_decode_captured_bytes(self):
        for description, header, body, frame in SPEC_VECTORS:
            with self.subTest(description):
                self.assertEqual(_decode_all(_hex(header) + _hex(body)), [frame])

    def test_hello_checksum_is_the_worked_example(self):
        self.assertEqual(encode_frame(0x0001, 1)[22:26], _hex("eaa7a83f"))

    def test_obfuscation_is_its_own_inverse(self):
        self.assertEqual(obfuscate(_hex("a5a5a75d")), _hex("000002f8"))
        self.assertEqual(obfuscate(obfuscate(b"any bytes")), b"any bytes")

    def test_pipelined_vectors_decode_in_order(self):
        stream = b"".join(_hex(h) + _hex(b) for _, h, b, _ in SPEC_VECTORS)
        self.assertEqual(_decode_all(stream), [frame for *_, frame in SPEC_VECTORS])

    def test_every_one_byte_split(self):
        stream = b"".join(_hex(h) + _hex(b) for _, h, b, _ in SPEC_VECTORS)
        decoder = FrameDecoder()
        frames = []
        for index in range(len(stream)):
            decoder.receive(stream[index:index + 1])
            frames.extend(decoder.frames())
        self.assertEqual(frames, [frame for *_, frame in SPEC_VECTORS])
        self.assertEqual(decoder.buffered, 0)


class WireValueTests(unittest.TestCase):
    """The numbers the existing server and clients use, each by its name."""

    def test_opcodes(self):
        self.assertEqual({op.name: op.value for op in nsframe.Opcode}, {
            "HELLO": 0x0001, "LOGIN": 0x0002, "LOGOUT": 0x0003, "HEARTBEAT": 0x0004,
            "JOIN_ROOM": 0x0101, "LEAVE_ROOM": 0x0102, "CHAT_SEND": 0x0103,
            "CHAT_BROADCAST": 0x0104, "DEPOSIT": 0x0201, "WITHDRAW": 0x0202,
            "TRANSFER": 0x0203, "BALANCE": 0x0204, "TXN_HISTORY": 0x0205})

    def test_statuses(self):
        self.assertEqual({status.name: status.value for status in nsframe.Status}, {
            "OK": 0x0000, "BAD_PACKET": 0x0001, "CHECKSUM_FAIL": 0x0002, "UNAUTHORIZED": 0x0003,
            "NOT_FOUND": 0x0004, "INSUFFICIENT_FUNDS": 0x0005, "SERVER_BUSY": 0x0006,
            "TIMEOUT": 0x0007, "SELF_TRANSFER": 0x0008, "LIMIT_EXCEEDED": 0x0009,
            "INTERNAL": 0x00FF})

    def test_flags_and_bounds(self):
        self.assertEqual((nsframe.FLAG_OBFUSCATED, nsframe.FLAG_COMPRESSED, FLAG_RESPONSE),
                         (0x01, 0x02, 0x04))
        self.assertEqual((nsframe.MAGIC, nsframe.VERSION, nsframe.HEADER_LEN), (0x4E53, 1, 32))
        self.assertEqual(nsframe.DEFAULT_MAX_FRAME_SIZE, 65536)


HELLO = encode_frame(0x0001, 1)


def _with_byte(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


class HeaderErrorTests(unittest.TestCase):
    """Each bad header field ends the stream, detected as early as possible."""

    def assertRejected(self, data: bytes, error: type, max_frame_size=nsframe.DEFAULT_MAX_FRAME_SIZE):
        decoder = FrameDecoder(max_frame_size)
        decoder.receive(data)
        self.assertRaises(error, decoder.next_frame)
        # The error is final.
        self.assertRaises(error, decoder.receive, HELLO)
        self.assertRaises(error, decoder.next_frame)

    def test_bad_magic_at_first_byte(self):
        self.assertRejected(b"X", BadMagic)

    def test_bad_magic_second_byte(self):
        self.assertRejected(b"NX", BadMagic)

    def test_bad_version(self):
        self.assertRejected(_with_byte(HELLO, 2, b"\x02")[:3], BadVersion)
        self.assertRejected(_with_byte(HELLO, 2, b"\x02"), BadVersion)

    def test_bad_header_len(self):
        self.assertRejected(_with_byte(HELLO, 4, b"\x00\x21")[:6], BadHeaderLength)
        self.assertRejected(_with_byte(HELLO, 4, b"\x00\x21"), BadHeaderLength)

    def test_every_other_header_len_is_refused(self):
        """
        Below or above 32, and whatever byte of the field is wrong, as soon
        as the field has arrived and once the whole header has.
        """
        for header_len in (31, 0, 33, 0x0400, 0x0820, 0x2000):
            bad = _with_byte(HELLO, 4, header_len.to_bytes(2, "big"))
            self.assertRejected(bad[:6], BadHeaderLength)
            self.assertRejected(bad, BadHeaderLength)

    def test_every_other_magic_and_version_is_refused_in_a_whole_header(self):
        for offset, value, error in [(0, b"\x4d", BadMagic), (0, b"\x4f", BadMagic),
                                     (1, b"\x52", BadMagic), (1, b"\x54", BadMagic),
                                     (2, b"\x00", BadVersion), (2, b"\x02", BadVersion)]:
            self.assertRejected(_with_byte(HELLO, offset, value), error)

    def test_a_bad_field_is_refused_in_any_longer_prefix(self):
        """Once a bad field has arrived, each later byte short of a header is refused too."""
        too_long = (65536 - 32 + 1).to_bytes(4, "big")
        for offset, value, error in [(0, b"X", BadMagic), (0, b"A", BadMagic), (1, b"A", BadMagic),
                                     (1, b"X", BadMagic), (2, b"\x02", BadVersion),
                                     (2, b"\x00", BadVersion), (4, b"\x00\x21", BadHeaderLength),
                                     (6, too_long, FrameTooLarge),
                                     (6, b"\x01\x00\x00\x00", FrameTooLarge)]:
            bad = _with_byte(HELLO, offset, value)
            for length in range(offset + len(value), HEADER_LEN):
                with self.subTest(offset=offset, length=length):
                    self.assertRejected(bad[:length], error)

    def test_body_len_is_judged_once_all_its_bytes_arrived(self):
        """So that the refusal names the size the peer announced."""
        bad = _with_byte(HELLO, 6, b"\x01\x00\x00\x00")
        decoder = FrameDecoder()
        decoder.receive(bad[:9])
        self.assertIsNone(decoder.next_frame())
        decoder.receive(bad[9:10])
        error = self.assertRaises(FrameTooLarge, decoder.next_frame)
        self.assertEqual(str(error), "frame of 16777248 bytes exceeds 65536")

    def test_a_good_prefix_is_never_refused(self):
        """Every prefix of the largest frame's header, on its flags, waits for more."""
        largest = encode_frame(0x0203, 5, body=b"x" * (65536 - 32), flags=FLAG_RESPONSE)
        for length in range(1, HEADER_LEN + 1):
            decoder = FrameDecoder()
            decoder.receive(largest[:length])
            self.assertIsNone(decoder.next_frame(), length)

    def test_errors_name_the_bad_value(self):
        """The field as the peer sent it: the first byte, the whole header_len."""
        cases = [(b"Xabc", BadMagic, "bad magic byte 0x58"),
                 (b"NS\x02\x00", BadVersion, "unsupported version 2"),
                 (b"NAbc", BadMagic, "bad magic byte 0x41"),
                 (_with_byte(encode_frame(1, flags=FLAG_RESPONSE), 4, b"\x04\x00")[:8],
                  BadHeaderLength, "header_len 1024"),
                 (_with_byte(HELLO, 6, (65536 - 32 + 1).to_bytes(4, "big"))[:10],
                  FrameTooLarge, "frame of 65537 bytes exceeds 65536")]
        for data, error, message in cases:
            decoder = FrameDecoder()
            decoder.receive(data)
            self.assertEqual(str(self.assertRaises(error, decoder.next_frame)), message)

    def test_oversize_body_rejected_before_body_arrives(self):
        header = _with_byte(HELLO, 6, (65536 - 32 + 1).to_bytes(4, "big"))
        self.assertRejected(header[:10], FrameTooLarge)

    def test_largest_frame_accepted(self):
        frame = encode_frame(0x0103, 3, body=b"x" * (65536 - 32))
        self.assertEqual(len(_decode_all(frame)), 1)

    def test_configured_limit(self):
        frame = encode_frame(0x0103, 3, body=b"x" * 100)
        self.assertEqual(len(_decode_all(frame, 132)), 1)
        self.assertRejected(frame, FrameTooLarge, 131)

    def test_checksum_mismatch_keeps_opcode_and_req_id(self):
        frame = encode_frame(0x0203, 77, body=b"\x00" * 12)
        decoder = FrameDecoder()
        decoder.receive(frame[:-1] + b"\x01")
        error = self.assertRaises(ChecksumMismatch, decoder.next_frame)
        self.assertEqual((error.opcode, error.req_id), (0x0203, 77))

    def test_obfuscated_frames_are_checksummed_over_the_bytes_as_sent(self):
        _, header, body, _ = SPEC_VECTORS[-1]
        captured = _hex(header) + _hex(body)
        self.assertEqual(captured[3], FLAG_OBFUSCATED)
        # One flipped body byte of the captured obfuscated TRANSFER.
        self.assertRejected(captured[:-1] + bytes([captured[-1] ^ 0x01]), ChecksumMismatch)
        # A checksum over the plain body instead of the XORed bytes.
        plain = _hex("000002f8 0000000000000030")
        wrong = bytearray(captured[:HEADER_LEN] + obfuscate(plain))
        wrong[22:26] = b"\x00" * 4
        wrong[22:26] = zlib.crc32(bytes(wrong[:HEADER_LEN]) + plain).to_bytes(4, "big")
        self.assertRejected(bytes(wrong), ChecksumMismatch)

    def test_reserved_bytes_are_covered_by_the_checksum(self):
        self.assertRejected(_with_byte(HELLO, 31, b"\x01"), ChecksumMismatch)

    def test_frames_before_an_error_are_returned(self):
        decoder = FrameDecoder()
        decoder.receive(HELLO + b"garbage")
        self.assertEqual(decoder.next_frame().opcode, 0x0001)
        self.assertRaises(BadMagic, decoder.next_frame)

    def test_skipped_frames_still_have_their_header_checked(self):
        push = encode_frame(0x0104, 0, 0, b"x" * 100)
        decoder = FrameDecoder(64, skip_opcode=0x0104)
        decoder.receive(encode_frame(0x0104, 0, 0, b"ok") + push)
        self.assertRaises(FrameTooLarge, decoder.next_frame)
        self.assertEqual(decoder.skipped, 1)

    def test_skipped_frames_are_not_checksummed(self):
        decoder = FrameDecoder(skip_opcode=0x0104)
        decoder.receive(_with_byte(encode_frame(0x0104, 0, 0, b"push"), 33, b"!") + HELLO)
        self.assertEqual([frame.opcode for frame in decoder.frames()], [0x0001])
        self.assertEqual(decoder.skipped, 1)

    def test_max_frame_size_below_header_refused(self):
        self.assertRaises(ValueError, FrameDecoder, 31)


frames = st.builds(
    Frame,
    opcode=st.integers(0, 0xFFFF),
    req_id=st.integers(0, 2**64 - 1),
    status=st.integers(0, 0xFFFF),
    flags=st.sampled_from([0, FLAG_OBFUSCATED, FLAG_RESPONSE]),
    body=st.binary(max_size=300),
)
pushes_and_others = st.builds(
    Frame,
    opcode=st.one_of(st.just(0x0104), st.integers(0, 0xFFFF)),
    req_id=st.integers(0, 2**64 - 1),
    status=st.integers(0, 0xFFFF),
    flags=st.sampled_from([0, 0, FLAG_OBFUSCATED, FLAG_RESPONSE]),
    body=st.binary(max_size=300),
)
"""Frames of which about half have the skipped opcode, most of those plain."""


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces, start = [], 0
    for point in points + [len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


class DecoderStateTests(unittest.TestCase):
    def test_good_frames_skip_the_field_by_field_check(self):
        """
        The header check that names what is wrong runs only for a header
        the one-comparison fast path doubts: good frames never pay for it.
        """
        decoder = FrameDecoder()
        checked = []
        decoder._check_header = lambda *fields: checked.append(fields)
        stream = b"".join(_hex(h) + _hex(b) for _, h, b, _ in SPEC_VECTORS)
        decoder.receive(stream + encode_frame(0x0103, 3, body=b"x" * (65536 - 32)))
        self.assertEqual(len(decoder.frames()), len(SPEC_VECTORS) + 1)
        self.assertEqual(checked, [])

    def test_buffered_counts_the_incomplete_frame(self):
        decoder = FrameDecoder()
        chat = encode_frame(0x0103, 2, body=b"abc")
        decoder.receive(chat + HELLO[:10])
        self.assertEqual(decoder.buffered, len(chat) + 10)
        self.assertEqual(decoder.next_frame(), Frame(0x0103, 2, body=b"abc"))
        self.assertEqual(decoder.buffered, 10)
        self.assertIsNone(decoder.next_frame())
        self.assertEqual(decoder.buffered, 10)

    def test_a_dead_decoder_holds_nothing(self):
        decoder = FrameDecoder()
        decoder.receive(HELLO + b"garbage" + HELLO)
        self.assertRaises(BadMagic, decoder.frames)
        self.assertEqual(decoder.buffered, 0)

    def test_frame_flags(self):
        for flags, response, obfuscated in [(0, False, False), (FLAG_OBFUSCATED, False, True),
                                            (nsframe.FLAG_COMPRESSED, False, False),
                                            (FLAG_RESPONSE, True, False),
                                            (FLAG_RESPONSE | FLAG_OBFUSCATED, True, True),
                                            (0x08, False, False), (0xFB, False, True)]:
            frame = Frame(0x0001, flags=flags)
            self.assertEqual((frame.is_response, frame.is_obfuscated), (response, obfuscated), flags)

    def test_a_frame_defaults_to_a_plain_empty_request(self):
        self.assertEqual(Frame(0x0004), Frame(0x0004, 0, 0, 0, b""))
        self.assertEqual(encode(Frame(0x0004)), encode_frame(0x0004))


class PropertyTests(unittest.TestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(frames, max_size=8), st.lists(st.integers(0, 10**6), max_size=20))
    def test_round_trip_with_random_splits(self, sent, cuts):
        stream = b"".join(encode(frame) for frame in sent)
        decoder = FrameDecoder()
        received = []
        for piece in _split(stream, cuts):
            decoder.receive(piece)
            received.extend(decoder.frames())
            self.assertLess(decoder.buffered, nsframe.DEFAULT_MAX_FRAME_SIZE)
        self.assertEqual(received, sent)
        self.assertEqual(decoder.buffered, 0)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(pushes_and_others, max_size=12), st.lists(st.integers(0, 10**6), max_size=20))
    def test_skipping_an_opcode_counts_exactly_the_skipped_frames(self, sent, cuts):
        skipped = 0x0104
        stream = b"".join(encode(frame) for frame in sent)
        decoder = FrameDecoder(skip_opcode=skipped)
        received = []
        for piece in _split(stream, cuts):
            decoder.receive(piece)
            received.extend(decoder.frames())
        kept = [f for f in sent if f.opcode != skipped or f.flags & FLAG_RESPONSE]
        self.assertEqual(received, kept)
        self.assertEqual(decoder.skipped, len(sent) - len(kept))
        self.assertEqual(decoder.buffered, 0)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=2000), st.lists(st.integers(0, 10**6), max_size=20),
           st.integers(32, 4096), st.sampled_from([None, 0x0104]))
    def test_garbage_never_raises_foreign_errors_or_overbuffers(self, garbage, cuts, limit, skip):
        decoder = FrameDecoder(limit, skip_opcode=skip)
        for piece in _split(garbage, cuts):
            try:
                decoder.receive(piece)
                decoder.frames()
            except FrameError:
                break
            self.assertLess(decoder.buffered, limit)

    @settings(max_examples=200, deadline=None)
    @given(frames, st.integers(0, 10**6), st.binary(min_size=1, max_size=4))
    def test_corrupted_byte_is_always_detected(self, frame, position, flip):
        data = bytearray(encode(frame))
        index = position % len(data)
        data[index] ^= flip[0] or 1
        decoder = FrameDecoder()
        decoder.receive(bytes(data))
        try:
            decoded = decoder.frames()
        except FrameError:
            return
        # A flipped body_len can leave the frame incomplete; it must never decode wrongly.
        self.assertEqual(decoded, [])
