"""
Tests for protocols.jsonframe: framing detection, reassembly, the frame cap.
"""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from protocols.jsonframe import (
    MAX_FRAME_LIMIT,
    Frame,
    FrameDecoder,
    FrameTooLarge,
    Framing,
    detect_framing,
    encode_frame,
)

_BODY = b'{"type":"request","api":"Login","session_id":null,"payload":{}}'


def feed_bytewise(decoder, data):
    events = []
    for index in range(len(data)):
        events += decoder.feed(data[index : index + 1])
    return events


class DetectFramingTests(unittest.TestCase):
    def test_zero_byte_is_length_prefixed(self):
        self.assertIs(detect_framing(0x00), Framing.LENGTH_PREFIXED)

    def test_brace_and_whitespace_are_newline(self):
        for byte in b"{ \t\r\n":
            self.assertIs(detect_framing(byte), Framing.NEWLINE)

    def test_printable_garbage_is_newline(self):
        """A person typing 'hello' gets line framing, not a 1.7 GB length."""
        self.assertIs(detect_framing(ord("h")), Framing.NEWLINE)

    def test_high_bytes_are_length_prefixed(self):
        self.assertIs(detect_framing(0x80), Framing.LENGTH_PREFIXED)
        self.assertIs(detect_framing(0x7F), Framing.LENGTH_PREFIXED)

    def test_every_allowed_length_starts_below_tab(self):
        first = struct.pack(">I", MAX_FRAME_LIMIT)[0]
        self.assertLess(first, 0x09)


class EncodeTests(unittest.TestCase):
    def test_length_prefixed(self):
        self.assertEqual(
            encode_frame(Framing.LENGTH_PREFIXED, b"{}"), b"\x00\x00\x00\x02{}"
        )

    def test_newline(self):
        self.assertEqual(encode_frame(Framing.NEWLINE, b"{}"), b"{}\n")

    def test_newline_body_with_newline_refused(self):
        self.assertRaises(ValueError, encode_frame, Framing.NEWLINE, b"{\n}")


class LengthPrefixedDecoderTests(unittest.TestCase):
    def test_one_frame(self):
        decoder = FrameDecoder()
        self.assertEqual(
            decoder.feed(encode_frame(Framing.LENGTH_PREFIXED, _BODY)), [Frame(_BODY)]
        )
        self.assertIs(decoder.framing, Framing.LENGTH_PREFIXED)
        self.assertEqual(decoder.buffered, 0)
        self.assertFalse(decoder.mid_frame)

    def test_pipelined_frames_split_at_every_byte(self):
        data = encode_frame(Framing.LENGTH_PREFIXED, _BODY) * 3
        self.assertEqual(feed_bytewise(FrameDecoder(), data), [Frame(_BODY)] * 3)

    def test_empty_frame(self):
        self.assertEqual(FrameDecoder().feed(b"\x00\x00\x00\x00"), [Frame(b"")])

    def test_partial_frame_is_mid_frame(self):
        decoder = FrameDecoder()
        decoder.feed(b"\x00\x00\x00\x05{")
        self.assertTrue(decoder.mid_frame)

    def test_frame_at_cap_accepted(self):
        decoder = FrameDecoder(max_frame=10)
        self.assertEqual(decoder.feed(struct.pack(">I", 10) + b"x" * 10), [Frame(b"x" * 10)])

    def test_oversize_frame_reported_and_skipped_unbuffered(self):
        decoder = FrameDecoder(max_frame=10)
        events = decoder.feed(struct.pack(">I", 11) + b"y" * 5)
        self.assertEqual(events, [FrameTooLarge(11, 10)])
        self.assertEqual(decoder.buffered, 0)
        self.assertTrue(decoder.mid_frame)
        events = decoder.feed(b"y" * 6 + encode_frame(Framing.LENGTH_PREFIXED, b"{}"))
        self.assertEqual(events, [Frame(b"{}")])
        self.assertFalse(decoder.mid_frame)

    def test_fixed_framing_ignores_first_byte(self):
        decoder = FrameDecoder(framing=Framing.LENGTH_PREFIXED)
        self.assertEqual(decoder.feed(b"{"), [])
        self.assertIs(decoder.framing, Framing.LENGTH_PREFIXED)

    def test_cap_out_of_range_refused(self):
        self.assertRaises(ValueError, FrameDecoder, 0)
        self.assertRaises(ValueError, FrameDecoder, MAX_FRAME_LIMIT + 1)


class NewlineDecoderTests(unittest.TestCase):
    def test_lines(self):
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(b"{}\n{\"a\":1}\n"), [Frame(b"{}"), Frame(b'{"a":1}')])
        self.assertIs(decoder.framing, Framing.NEWLINE)

    def test_crlf_and_blank_lines(self):
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(b"\r\n  \r\n{}\r\n"), [Frame(b"{}")])

    def test_split_at_every_byte(self):
        data = (_BODY + b"\n") * 3
        self.assertEqual(feed_bytewise(FrameDecoder(), data), [Frame(_BODY)] * 3)

    def test_end_of_input_ends_the_last_line(self):
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(b"{}\n{\"a\":1}\r"), [Frame(b"{}")])
        self.assertEqual(decoder.finish(), [Frame(b'{"a":1}')])
        self.assertFalse(decoder.mid_frame)
        self.assertEqual(decoder.finish(), [])

    def test_end_of_input_after_an_oversize_line(self):
        decoder = FrameDecoder(max_frame=4)
        self.assertEqual(decoder.feed(b"{}\n{\"abc\""), [Frame(b"{}"), FrameTooLarge(None, 4)])
        self.assertEqual(decoder.finish(), [])
        self.assertFalse(decoder.mid_frame)

    def test_end_of_input_leaves_a_cut_length_prefixed_frame_incomplete(self):
        decoder = FrameDecoder()
        decoder.feed(struct.pack(">I", 10) + b"{}")
        self.assertEqual(decoder.finish(), [])
        self.assertTrue(decoder.mid_frame)

    def test_line_at_cap_accepted(self):
        decoder = FrameDecoder(max_frame=4)
        self.assertEqual(decoder.feed(b"{12}\n"), [Frame(b"{12}")])

    def test_oversize_line_reported_skipped_then_resynchronised(self):
        decoder = FrameDecoder(max_frame=4)
        self.assertEqual(decoder.feed(b"{123"), [])
        self.assertEqual(decoder.feed(b"4"), [FrameTooLarge(None, 4)])
        self.assertEqual(decoder.buffered, 0)
        self.assertEqual(decoder.feed(b"5" * 100), [])
        self.assertEqual(decoder.buffered, 0)
        self.assertEqual(decoder.feed(b"6\n{}\n"), [Frame(b"{}")])
        self.assertFalse(decoder.mid_frame)

    def test_oversize_complete_line_in_one_chunk(self):
        decoder = FrameDecoder(max_frame=4)
        self.assertEqual(
            decoder.feed(b"{12345}\n{}\n"), [FrameTooLarge(None, 4), Frame(b"{}")]
        )


class PropertyTests(unittest.TestCase):
    @settings(max_examples=150, deadline=None)
    @given(
        bodies=st.lists(st.binary(max_size=40), max_size=5),
        cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    )
    def test_length_prefixed_round_trip_any_split(self, bodies, cuts):
        data = b"".join(encode_frame(Framing.LENGTH_PREFIXED, body) for body in bodies)
        decoder = FrameDecoder(framing=Framing.LENGTH_PREFIXED)
        events = []
        previous = 0
        for cut in sorted(set(c for c in cuts if c <= len(data))) + [len(data)]:
            events += decoder.feed(data[previous:cut])
            previous = cut
        self.assertEqual(events, [Frame(body) for body in bodies])

    @settings(max_examples=150, deadline=None)
    @given(
        lines=st.lists(
            st.binary(max_size=40).map(lambda b: b"{" + b.replace(b"\n", b"") + b"}"),
            max_size=5,
        ),
        cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    )
    def test_newline_round_trip_any_split(self, lines, cuts):
        data = b"".join(encode_frame(Framing.NEWLINE, line) for line in lines)
        decoder = FrameDecoder()
        events = []
        previous = 0
        for cut in sorted(set(c for c in cuts if c <= len(data))) + [len(data)]:
            events += decoder.feed(data[previous:cut])
            previous = cut
        self.assertEqual(events, [Frame(line.rstrip(b"\r")) for line in lines])
