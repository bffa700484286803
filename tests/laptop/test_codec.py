"""
The laptop-order codec: the spec's test vectors as tables, round trips of
every replica message, and input split at every byte.
"""

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from protocols import laptop
from protocols.laptop import (
    CLOSE_CUSTOMER_ID,
    FORWARD_OK,
    FORWARD_RETRY,
    MAX_FRAME_BODY,
    MAX_SNAPSHOT_RECORDS,
    MAX_VIEW,
    OPCODE_NOOP,
    OPCODE_SET_LAST_ORDER,
    ROLE_CUSTOMER,
    ROLE_LEGACY_REPLICATION,
    ROLE_REPLICA,
    TYPE_LOCAL_READ,
    TYPE_ORDER,
    TYPE_READ,
    AppendEntries,
    AppendReply,
    CustomerRequest,
    Entry,
    ForwardReply,
    ForwardRequest,
    Hello,
    FrameTooLarge,
    InstallSnapshot,
    SnapshotReply,
    LegacyEntry,
    OrderReply,
    ProtocolError,
    RecordReply,
    ReplyDecoder,
    RoleDeclared,
    ServerDecoder,
    VoteReply,
    VoteRequest,
    claimed_sender,
    decode_replica_message,
    encode_legacy_ack,
    encode_legacy_entry,
    encode_order_reply,
    encode_record_reply,
    encode_replica_message,
    encode_request,
    encode_role,
    reply_size,
)


def words(text: str) -> bytes:
    """Hex in 4-byte words, as the spec writes its vectors."""
    return bytes.fromhex(text.replace(" ", ""))


class SpecVectorTests(unittest.TestCase):
    """Each row: what the spec says goes over the wire, and what it means."""

    REQUESTS = [
        ("00000001 00000000 00000001", CustomerRequest(1, 0, TYPE_ORDER)),
        ("00000001 ffffffff 00000002", CustomerRequest(1, -1, TYPE_READ)),
        ("00000002 ffffffff 00000002", CustomerRequest(2, -1, TYPE_READ)),
        ("ffffffff ffffffff ffffffff", CustomerRequest(-1, -1, -1)),
    ]
    ORDER_REPLIES = [
        ("00000001 00000000 00000001 00000000 00000000", OrderReply(1, 0, 1, 0, 0)),
        ("ffffffff 00000007 00000009 00000003 00000002", OrderReply(-1, 7, 9, 3, 2)),
    ]
    RECORD_REPLIES = [
        ("00000001 00000002", RecordReply(1, 2)),
        ("ffffffff ffffffff", RecordReply(-1, -1)),
        ("ffffffff fffffffe", RecordReply(-1, -2)),
    ]

    def test_customer_requests(self):
        for hex_words, request in self.REQUESTS:
            self.assertEqual(encode_request(request), words(hex_words))
            decoder = ServerDecoder()
            self.assertEqual(
                decoder.feed(words("00000000") + words(hex_words)),
                [RoleDeclared(ROLE_CUSTOMER), request],
            )

    def test_the_close_request(self):
        """Customer -1 asks the server to close the connection: the spec's last request row."""
        self.assertEqual(encode_request(CustomerRequest(CLOSE_CUSTOMER_ID, -1, -1)),
                         words("ffffffff ffffffff ffffffff"))

    def test_order_replies(self):
        for hex_words, reply in self.ORDER_REPLIES:
            self.assertEqual(encode_order_reply(reply), words(hex_words))
            decoder = ReplyDecoder()
            decoder.expect(reply.request_type)
            self.assertEqual(decoder.feed(words(hex_words)), [reply])

    def test_record_replies(self):
        for hex_words, reply in self.RECORD_REPLIES:
            self.assertEqual(encode_record_reply(reply), words(hex_words))
            decoder = ReplyDecoder()
            decoder.expect(TYPE_READ)
            self.assertEqual(decoder.feed(words(hex_words)), [reply])

    def test_failure_forms(self):
        self.assertTrue(OrderReply(-1, 0, 1, 0, 0).failed)
        self.assertFalse(OrderReply(1, 0, 1, 0, 0).failed)
        self.assertTrue(RecordReply(-1, -2).failed)
        self.assertFalse(RecordReply(-1, -1).failed, "no record is an answer, not a failure")
        self.assertFalse(RecordReply(-1, -3).failed, "only last order -2 is the failure form")
        self.assertFalse(RecordReply(1, -2).failed, "only customer -1 is the failure form")
        self.assertFalse(RecordReply(-3, -2).failed, "only customer -1 is the failure form")
        self.assertFalse(OrderReply(-3, 0, 1, 0, 0).failed, "only customer -1 is the failure form")

    def test_legacy_replication_link(self):
        entry = LegacyEntry(0, -1, 0, 1, 1, 0)
        wire = words("00000000 ffffffff 00000000 00000001 00000001 00000000")
        self.assertEqual(encode_legacy_entry(entry), wire)
        self.assertEqual(
            ServerDecoder().feed(words("00000001") + wire),
            [RoleDeclared(ROLE_LEGACY_REPLICATION), entry],
        )
        self.assertEqual(encode_legacy_ack(1), words("00000001"))

    def test_legacy_entries_split_at_every_byte(self):
        entries = [LegacyEntry(0, -1, 0, 1, 1, 0), LegacyEntry(2, 5, 6, 0, 9, 4),
                   LegacyEntry(2, 6, 7, 1, 3, 8)]
        data = encode_role(ROLE_LEGACY_REPLICATION) + b"".join(map(encode_legacy_entry, entries))
        for cut in range(len(data) + 1):
            for second_cut in (cut, (cut + len(data)) // 2):
                decoder = ServerDecoder()
                events = (decoder.feed(data[:cut]) + decoder.feed(data[cut:second_cut])
                          + decoder.feed(data[second_cut:]))
                self.assertEqual(events, [RoleDeclared(ROLE_LEGACY_REPLICATION), *entries],
                                 (cut, second_cut))
                self.assertFalse(decoder.mid_message)

    def test_reply_sizes(self):
        self.assertEqual(
            [reply_size(t) for t in (TYPE_ORDER, TYPE_READ, TYPE_LOCAL_READ, 3, 5, 99)],
            [20, 8, 8, 20, 20, 20],
        )
        self.assertEqual((TYPE_ORDER, TYPE_READ, TYPE_LOCAL_READ), (1, 2, 4), "the spec's numbers")


class DecoderTests(unittest.TestCase):
    def test_pipelined_requests_in_one_write(self):
        data = encode_role(0) + b"".join(encode_request(r) for _, r in SpecVectorTests.REQUESTS)
        events = ServerDecoder().feed(data)
        self.assertEqual(events[1:], [r for _, r in SpecVectorTests.REQUESTS])

    def test_every_split(self):
        data = encode_role(0) + b"".join(encode_request(r) for _, r in SpecVectorTests.REQUESTS)
        whole = ServerDecoder().feed(data)
        for cut in range(len(data) + 1):
            decoder = ServerDecoder()
            self.assertEqual(decoder.feed(data[:cut]) + decoder.feed(data[cut:]), whole)

    def test_a_read_of_one_requests_size_straddling_two(self):
        """Twelve bytes that end one request and start the next are not one request."""
        first, second = (encode_request(CustomerRequest(c, 6, TYPE_ORDER)) for c in (1, 2))
        decoder = ServerDecoder()
        self.assertEqual(decoder.feed(encode_role(ROLE_CUSTOMER) + first[:5]),
                         [RoleDeclared(ROLE_CUSTOMER)])
        self.assertEqual(decoder.feed(first[5:] + second[:5]), [CustomerRequest(1, 6, TYPE_ORDER)])
        self.assertEqual(decoder.feed(second[5:]), [CustomerRequest(2, 6, TYPE_ORDER)])

    def test_bytewise(self):
        data = encode_role(0) + encode_request(CustomerRequest(5, 6, 1))
        decoder = ServerDecoder()
        events = []
        for i in range(len(data)):
            events.extend(decoder.feed(data[i : i + 1]))
            fed = i + 1
            self.assertEqual(decoder.mid_message, fed not in (4, len(data)), fed)
        self.assertEqual(events, [RoleDeclared(0), CustomerRequest(5, 6, 1)])

    def test_large_frame_in_many_reads_is_not_copied_per_read(self):
        """
        The reads of a frame whose header has arrived are kept as they come
        and joined once: re-copying everything buffered on every read made
        a 16 MiB snapshot cost seconds of CPU in 16 KiB reads.
        """
        snapshot = InstallSnapshot(3, 0, 10, 2, 5, 20_001, 0, tuple((c, c + 1) for c in range(20_001)))
        frame = encode_replica_message(snapshot)
        follower = encode_replica_message(AppendReply(1, 2, True, 3, 4))
        # The first read the header alone, as a sender's first segment may
        # be, or with part of the body; the last byte alone, with the next frame.
        for first in (8, 8 + 100):
            decoder = ServerDecoder()
            decoder.feed(encode_role(ROLE_REPLICA))
            last = len(frame) - 1
            reads = ([frame[:first]]
                     + [frame[i : min(i + 4096, last)] for i in range(first, last, 4096)]
                     + [frame[last:] + follower])
            for read in reads[:-1]:
                self.assertEqual(decoder.feed(read), [])
                self.assertTrue(decoder.mid_message)
                self.assertIs(decoder._parts[-1], read)
            self.assertEqual(decoder.feed(reads[-1]), [snapshot, AppendReply(1, 2, True, 3, 4)])
            self.assertFalse(decoder.mid_message)

    def test_a_body_over_the_limit_is_not_encoded(self):
        """
        The sender checks the limit before sending (an AppendEntries has no
        count limit of its own), shown under a limit lowered to a small
        message's size.
        """
        message = AppendEntries(3, 0, 9, 2, 8, 5, (Entry(3, 1, 7, 42),) * 2)
        body = len(encode_replica_message(message)) - 8
        self.patch(laptop, "MAX_FRAME_BODY", body)
        self.assertEqual(len(encode_replica_message(attrs.evolve(message))), 8 + body)
        self.patch(laptop, "MAX_FRAME_BODY", body - 1)
        self.assertRaises(FrameTooLarge, encode_replica_message, attrs.evolve(message))

    def test_snapshot_too_large_for_a_frame_is_not_encoded(self):
        """A frame the peer would refuse is refused by the sender, before packing it."""
        fits = InstallSnapshot(
            3, 0, 10, 2, 5, MAX_SNAPSHOT_RECORDS + 1, 0, ((7, 1),) * MAX_SNAPSHOT_RECORDS
        )
        self.assertEqual(MAX_SNAPSHOT_RECORDS, 2_097_146)  # as the spec says
        self.assertEqual(len(encode_replica_message(fits)) - 8, MAX_FRAME_BODY)
        too_many = attrs.evolve(fits, records=fits.records + ((8, 1),))
        error = self.assertRaises(FrameTooLarge, encode_replica_message, too_many)
        self.assertIn(f"limit {MAX_SNAPSHOT_RECORDS}", str(error), "refused by its record count")

    def test_bad_role(self):
        for role in (3, -1, 0x41414141):
            with self.assertRaises(ProtocolError) as raised:
                ServerDecoder().feed(encode_role(role))
            self.assertEqual(raised.exception.reason, "bad_role")

    def test_replica_frame_limits(self):
        def replica_decoder():
            decoder = ServerDecoder()
            decoder.feed(encode_role(ROLE_REPLICA))
            return decoder

        with self.assertRaises(ProtocolError) as raised:
            replica_decoder().feed(words("00000063 00000000"))
        self.assertEqual(raised.exception.reason, "unknown_frame_kind")
        with self.assertRaises(ProtocolError) as raised:
            replica_decoder().feed((2).to_bytes(4, "big") + (MAX_FRAME_BODY + 1).to_bytes(4, "big"))
        self.assertEqual(raised.exception.reason, "frame_too_large")
        with self.assertRaises(ProtocolError) as raised:
            replica_decoder().feed(words("00000001 00000002 0000"))
        self.assertEqual(raised.exception.reason, "bad_frame_length")
        good = encode_replica_message(AppendReply(1, 2, True, 3, 4))
        bad_flag = good[:16] + (7).to_bytes(4, "big") + good[20:]
        with self.assertRaises(ProtocolError) as raised:
            replica_decoder().feed(bad_flag)
        self.assertEqual(raised.exception.reason, "bad_flag")

    def test_frame_bodies_up_to_16_mib(self):
        """The documented limit, checked from the header before the body is buffered."""
        decoder = ServerDecoder()
        decoder.feed(encode_role(ROLE_REPLICA))
        self.assertEqual(decoder.feed(words("00000006") + (16 * 1024 * 1024).to_bytes(4, "big")), [])
        self.assertTrue(decoder.mid_message)
        for length in (16 * 1024 * 1024 + 1, -1):
            decoder = ServerDecoder()
            decoder.feed(encode_role(ROLE_REPLICA))
            with self.assertRaises(ProtocolError) as raised:
                decoder.feed(words("00000006") + length.to_bytes(4, "big", signed=True))
            self.assertEqual(raised.exception.reason, "frame_too_large")

    def test_a_count_the_body_does_not_hold_exactly(self):
        """A body longer or shorter than its count of entries or records says is refused."""
        append = encode_replica_message(AppendEntries(3, 0, 9, 2, 8, 5, (Entry(3, 1, 7, 42),)))
        snapshot = encode_replica_message(InstallSnapshot(3, 0, 9, 2, 5, 7, 4, ((1, 2),)))
        for frame, entry_size, count_at in ((append, 16, 44), (snapshot, 8, 52)):
            negative = frame[:count_at] + (-1).to_bytes(4, "big", signed=True) + frame[count_at + 4:]
            decoder = ServerDecoder()
            decoder.feed(encode_role(ROLE_REPLICA))
            with self.assertRaises(ProtocolError) as raised:
                decoder.feed(negative)
            self.assertEqual(raised.exception.reason, "bad_frame_length", "negative count")
            body_length = int.from_bytes(frame[4:8], "big")
            for extra in (entry_size, -entry_size):
                changed = (frame[:4] + (body_length + extra).to_bytes(4, "big")
                           + frame[8:] + b"\0" * max(extra, 0))
                changed = changed[:len(changed) + min(extra, 0)]
                decoder = ServerDecoder()
                decoder.feed(encode_role(ROLE_REPLICA))
                with self.assertRaises(ProtocolError) as raised:
                    decoder.feed(changed)
                self.assertEqual(raised.exception.reason, "bad_frame_length", (frame[:4], extra))

    def test_a_frame_completed_exactly_by_a_read(self):
        frame = encode_replica_message(AppendEntries(3, 0, 9, 2, 8, 5, (Entry(3, 1, 7, 42),)))
        for cut in range(1, len(frame)):
            decoder = ServerDecoder()
            decoder.feed(encode_role(ROLE_REPLICA))
            self.assertEqual(decoder.feed(frame[:cut]), [])
            self.assertEqual(len(decoder.feed(frame[cut:])), 1, cut)
            self.assertFalse(decoder.mid_message)

    def test_an_empty_body_is_a_bad_length_not_too_large(self):
        for kind in range(1, 10):
            decoder = ServerDecoder()
            decoder.feed(encode_role(ROLE_REPLICA))
            with self.assertRaises(ProtocolError) as raised:
                decoder.feed(kind.to_bytes(4, "big") + words("00000000"))
            self.assertEqual(raised.exception.reason, "bad_frame_length", kind)

    def test_a_fixed_size_body_a_byte_longer_or_shorter(self):
        for message in (Hello(1), AppendReply(1, 2, True, 3, 4), VoteRequest(3, 2, 43, 3, True),
                        VoteReply(4, 0, True, True), ForwardRequest(17, 5, 3, 1),
                        ForwardReply(17, 0, -1, 0), SnapshotReply(3, 1, 9, 2, 9)):
            frame = encode_replica_message(message)
            length = int.from_bytes(frame[4:8], "big")
            for changed in (frame[:4] + (length + 1).to_bytes(4, "big") + frame[8:] + b"\0",
                            frame[:4] + (length - 1).to_bytes(4, "big") + frame[8:-1]):
                decoder = ServerDecoder()
                decoder.feed(encode_role(ROLE_REPLICA))
                with self.assertRaises(ProtocolError) as raised:
                    decoder.feed(changed)
                self.assertEqual(raised.exception.reason, "bad_frame_length", message)

    def test_replica_role_holds_what_follows(self):
        """
        What follows a replica link's role word may be an authentication
        handshake: it is not decoded as frames until the caller feeds on.
        """
        decoder = ServerDecoder()
        handshake = b"\xff" * 64
        self.assertEqual(decoder.feed(encode_role(ROLE_REPLICA) + handshake),
                         [RoleDeclared(ROLE_REPLICA)])
        self.assertEqual(decoder.take_buffered(), handshake)
        self.assertEqual(decoder.feed(encode_replica_message(Hello(1))), [Hello(1)])

    def test_replies_to_pipelined_requests_one_per_read(self):
        """A whole reply while others are still awaited leaves them awaited."""
        decoder = ReplyDecoder()
        for request_type in (TYPE_ORDER, TYPE_READ, TYPE_ORDER):
            decoder.expect(request_type)
        self.assertEqual(decoder.feed(encode_order_reply(OrderReply(1, 2, 1, 0, 0))),
                         [OrderReply(1, 2, 1, 0, 0)])
        self.assertEqual(decoder.outstanding, 2)
        self.assertEqual(decoder.feed(encode_record_reply(RecordReply(1, 2))), [RecordReply(1, 2)])
        self.assertEqual(decoder.outstanding, 1)
        self.assertEqual(decoder.feed(encode_order_reply(OrderReply(1, 3, 1, 0, 0))),
                         [OrderReply(1, 3, 1, 0, 0)])
        self.assertEqual(decoder.outstanding, 0)

    def test_a_lone_reply_in_pieces(self):
        """The one reply awaited, arriving split at any byte, for either size of reply."""
        for request_type, reply, encoded in (
            (TYPE_READ, RecordReply(1, 2), encode_record_reply(RecordReply(1, 2))),
            (TYPE_ORDER, OrderReply(1, 2, 1, 0, 0), encode_order_reply(OrderReply(1, 2, 1, 0, 0))),
        ):
            for cut in range(1, len(encoded)):
                decoder = ReplyDecoder()
                decoder.expect(request_type)
                self.assertEqual(decoder.feed(encoded[:cut]), [])
                self.assertEqual(decoder.feed(encoded[cut:]), [reply], (request_type, cut))
                self.assertEqual(decoder.outstanding, 0)

    def test_bytes_beyond_the_lone_reply_awaited(self):
        for request_type, encoded in ((TYPE_READ, encode_record_reply(RecordReply(1, 2))),
                                      (TYPE_ORDER, encode_order_reply(OrderReply(1, 2, 1, 0, 0)))):
            decoder = ReplyDecoder()
            decoder.expect(request_type)
            with self.assertRaises(ProtocolError) as raised:
                decoder.feed(encoded + b"\0")
            self.assertEqual(raised.exception.reason, "unexpected_reply_bytes")

    def test_bytes_beyond_the_replies_awaited_with_part_of_one_buffered(self):
        """The excess is an error even where it and the buffered part make a whole reply's size."""
        decoder = ReplyDecoder()
        decoder.expect(TYPE_ORDER)
        decoder.expect(TYPE_ORDER)
        first, second = (encode_order_reply(OrderReply(c, 0, 1, 0, 0)) for c in (1, 2))
        self.assertEqual(decoder.feed(first + second[:5]), [OrderReply(1, 0, 1, 0, 0)])
        with self.assertRaises(ProtocolError) as raised:
            decoder.feed(second[5:] + b"\0" * 5)
        self.assertEqual(raised.exception.reason, "unexpected_reply_bytes")

    def test_pipelined_requests_after_lone_ones(self):
        """A decoder that answered lone requests starts afresh with the next ones."""
        decoder = ReplyDecoder()
        decoder.expect(TYPE_READ)
        self.assertEqual(decoder.feed(encode_record_reply(RecordReply(1, 2))), [RecordReply(1, 2)])
        decoder.expect(TYPE_ORDER)
        self.assertEqual(decoder.feed(encode_order_reply(OrderReply(1, 3, 1, 0, 0))),
                         [OrderReply(1, 3, 1, 0, 0)])
        for request_type in (TYPE_ORDER, TYPE_READ, TYPE_ORDER):
            decoder.expect(request_type)
        replies = [OrderReply(2, 0, 1, 0, 0), RecordReply(1, 3), OrderReply(2, 1, 1, 0, 0)]
        data = (encode_order_reply(replies[0]) + encode_record_reply(replies[1])
                + encode_order_reply(replies[2]))
        self.assertEqual(decoder.feed(data), replies)
        self.assertEqual(decoder.outstanding, 0)

    def test_hundreds_of_outstanding_requests(self):
        decoder = ReplyDecoder()
        replies = [OrderReply(c, c, TYPE_ORDER, 0, 1) for c in range(300)]
        for _ in replies:
            decoder.expect(TYPE_ORDER)
        data = b"".join(map(encode_order_reply, replies))
        self.assertEqual(decoder.feed(data[:2000]), replies[:100])
        self.assertEqual(decoder.outstanding, 200)
        self.assertEqual(decoder.feed(data[2000:]), replies[100:])
        self.assertEqual(decoder.outstanding, 0)
        with self.assertRaises(ProtocolError):
            decoder.feed(b"\0")

    def test_pipelined_replies_of_both_sizes_split_anywhere(self):
        types = (TYPE_READ, TYPE_ORDER, TYPE_ORDER, TYPE_READ, TYPE_READ, TYPE_ORDER)
        replies = [RecordReply(1, 2) if t == TYPE_READ else OrderReply(3, 4, t, 0, 1) for t in types]
        data = b"".join(encode_record_reply(r) if isinstance(r, RecordReply)
                        else encode_order_reply(r) for r in replies)
        for cut in range(len(data) + 1):
            decoder = ReplyDecoder()
            for request_type in types:
                decoder.expect(request_type)
            self.assertEqual(decoder.feed(data[:cut]) + decoder.feed(data[cut:]), replies, cut)
            self.assertEqual(decoder.outstanding, 0)

    def test_reply_decoder_follows_expectations(self):
        decoder = ReplyDecoder()
        decoder.expect(TYPE_ORDER)
        decoder.expect(TYPE_READ)
        decoder.expect(77)
        data = (
            encode_order_reply(OrderReply(1, 2, 1, 0, 0))
            + encode_record_reply(RecordReply(1, 2))
            + encode_order_reply(OrderReply(-1, 0, 77, 0, 0))
        )
        replies = []
        for i in range(len(data)):
            replies.extend(decoder.feed(data[i : i + 1]))
        self.assertEqual(
            replies,
            [OrderReply(1, 2, 1, 0, 0), RecordReply(1, 2), OrderReply(-1, 0, 77, 0, 0)],
        )
        self.assertEqual(decoder.outstanding, 0)
        with self.assertRaises(ProtocolError):
            decoder.feed(b"\x00")


ints = st.integers(-(2**31), 2**31 - 1)
longs = st.integers(-(2**63), 2**63 - 1)
entries = st.builds(Entry, ints, ints, ints, ints)
messages = st.one_of(
    st.builds(Hello, ints),
    st.builds(AppendEntries, ints, ints, longs, ints, longs, longs,
              st.lists(entries, max_size=5).map(tuple)),
    st.builds(AppendReply, ints, ints, st.booleans(), longs, longs),
    st.builds(VoteRequest, ints, ints, longs, ints, st.booleans()),
    st.builds(VoteReply, ints, ints, st.booleans(), st.booleans()),
    st.builds(InstallSnapshot, ints, ints, longs, ints, longs, longs, longs,
              st.lists(st.tuples(ints, ints), max_size=5).map(tuple)),
    st.builds(ForwardRequest, longs, ints, ints, ints),
    st.builds(ForwardReply, longs, ints, ints, ints),
    st.builds(SnapshotReply, ints, ints, longs, longs, longs),
)


class ReplicaMessageTests(unittest.TestCase):
    def test_append_entries_sent_to_several_backups_is_packed_once(self):
        """The same message again gives the same frame; an equal one a new but equal frame."""
        message = AppendEntries(3, 0, 9, 2, 8, 5, (Entry(3, 1, 7, 42), Entry(3, 1, 8, 1)))
        frame = encode_replica_message(message)
        self.assertIs(encode_replica_message(message), frame)
        again = encode_replica_message(attrs.evolve(message))
        self.assertIsNot(again, frame)
        self.assertEqual(again, frame)

    def test_a_full_batch_of_entries(self):
        """A primary sends up to 4096 entries in one AppendEntries."""
        message = AppendEntries(3, 0, 9, 2, 8, 5, tuple(Entry(3, 1, c, 7) for c in range(4096)))
        frame = encode_replica_message(message)
        self.assertEqual(decode_replica_message(frame), (message, len(frame)))

    def test_append_entries_layout(self):
        message = AppendEntries(3, 0, 9, 2, 8, 5, (Entry(3, 1, 7, 42),))
        self.assertEqual(
            encode_replica_message(message),
            words(
                "00000002 00000038"  # kind 2, 56-byte body
                "00000003 00000000 00000000 00000009 00000002"  # view, primary, prev_index, prev_view
                "00000000 00000008 00000000 00000005 00000001"  # commit, round, count
                "00000003 00000001 00000007 0000002a"  # entry: view, opcode, customer, order
            ),
        )

    def test_spec_append_entries_vector(self):
        """Opcodes as the spec numbers them: 1 sets a last order, 0 is a no-op."""
        message = AppendEntries(
            3, 0, 41, 3, 40, 7,
            (Entry(3, OPCODE_SET_LAST_ORDER, 5, 2), Entry(3, OPCODE_NOOP, 0, 0)),
        )
        frame = words(
            "00000002 00000048 00000003 00000000 00000000 00000029 00000003 00000000 00000028"
            " 00000000 00000007 00000002 00000003 00000001 00000005 00000002 00000003 00000000"
            " 00000000 00000000"
        )
        self.assertEqual(encode_replica_message(message), frame)
        self.assertEqual(decode_replica_message(frame), (message, len(frame)))
        self.assertEqual(decode_replica_message(b"\0" * 3 + frame, 3), (message, 3 + len(frame)))

    def test_snapshot_chunk_and_reply_layout(self):
        chunk = InstallSnapshot(3, 0, 9, 2, 5, 7, 4, ((1, 2),))
        self.assertEqual(
            encode_replica_message(chunk),
            words(
                "00000006 00000038"  # kind 6, 56-byte body
                "00000003 00000000 00000000 00000009 00000002"  # view, primary, last_index, last_view
                "00000000 00000005 00000000 00000007"  # round, total records
                "00000000 00000004 00000001"  # offset of this chunk, count
                "00000001 00000002"  # record: customer, last order
            ),
        )
        self.assertEqual(
            encode_replica_message(SnapshotReply(3, 1, 9, 4, 5)),
            words(
                "00000009 00000020"  # kind 9, 32-byte body
                "00000003 00000001 00000000 00000009"  # view, replica, last_index
                "00000000 00000004 00000000 00000005"  # records received, round
            ),
        )

    @settings(max_examples=200, deadline=None)
    @given(st.lists(messages, min_size=1, max_size=6), st.integers(0, 10_000))
    def test_round_trip_with_any_split(self, sent, cut_seed):
        data = encode_role(ROLE_REPLICA) + b"".join(encode_replica_message(m) for m in sent)
        cut = cut_seed % (len(data) + 1)
        decoder = ServerDecoder()
        # The decoder stops after the role word until fed again.
        events = decoder.feed(data[:cut]) + decoder.feed(data[cut:]) + decoder.feed(b"")
        self.assertEqual(events, [RoleDeclared(ROLE_REPLICA)] + sent)
        self.assertFalse(decoder.mid_message)

    def test_writes_holding_whole_frames(self):
        """One frame per write (the closed-loop case), two, and one and a half."""
        sent = [
            Hello(1),
            AppendReply(2, 1, True, 7, 3),
            ForwardReply(9, 0, 4, 2),
            VoteReply(2, 1, False, True),
        ]
        frames = [encode_replica_message(m) for m in sent]
        decoder = ServerDecoder()
        self.assertEqual(decoder.feed(encode_role(ROLE_REPLICA)), [RoleDeclared(ROLE_REPLICA)])
        self.assertEqual(decoder.feed(frames[0]), sent[:1])
        self.assertEqual(decoder.feed(frames[1] + frames[2][:5]), sent[1:2])
        self.assertTrue(decoder.mid_message)
        self.assertEqual(decoder.feed(frames[2][5:] + frames[3]), sent[2:])
        self.assertFalse(decoder.mid_message)

    def test_not_a_message(self):
        self.assertRaises(TypeError, encode_replica_message, object())

    def test_forward_reply_statuses(self):
        """The spec's vectors: status 0 is ok, 1 is retry elsewhere."""
        self.assertEqual(
            encode_replica_message(ForwardReply(17, FORWARD_OK, -1, 0)),
            words("00000008 00000014 00000000 00000011 00000000 ffffffff 00000000"),
        )
        self.assertEqual(
            encode_replica_message(ForwardReply(18, FORWARD_RETRY, -1, -1)),
            words("00000008 00000014 00000000 00000012 00000001 ffffffff ffffffff"),
        )

    def test_views_go_up_to_2_to_the_30(self):
        """The spec's range: a billion elections, and the view after the last still fits i32."""
        self.assertEqual(MAX_VIEW, 2**30)
        request = VoteRequest(MAX_VIEW + 1, 2, 43, MAX_VIEW, False)
        decoder = ServerDecoder()
        self.assertEqual(decoder.feed(encode_role(ROLE_REPLICA) + encode_replica_message(request)),
                         [RoleDeclared(ROLE_REPLICA)])
        self.assertEqual(decoder.feed(b""), [request])

    def test_the_sender_each_message_claims(self):
        """The field a receiver checks against the link's replica id, by message kind."""
        claims = [
            (AppendEntries(3, 0, 9, 2, 8, 5), 0),
            (InstallSnapshot(3, 1, 9, 2, 5, 7, 4, ()), 1),
            (AppendReply(3, 2, True, 9, 5), 2),
            (VoteReply(3, 3, True, False), 3),
            (SnapshotReply(3, 4, 9, 4, 5), 4),
            (VoteRequest(3, 5, 9, 2, True), 5),
            (Hello(6), None),
            (ForwardRequest(7, 1, 2, TYPE_ORDER), None),
            (ForwardReply(7, FORWARD_OK, 2, 0), None),
        ]
        self.assertEqual([claimed_sender(message) for message, _ in claims],
                         [sender for _, sender in claims])
