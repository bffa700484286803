"""
Tests for L{protocols.branch}, from the spec's test vectors.
"""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from protocols.branch import (
    MAX_AMOUNT_DIGITS,
    MAX_REPLY,
    REQUEST,
    AmountOutOfRange,
    BranchReply,
    ErrorReply,
    InvalidBranchId,
    MalformedReply,
    ReplyParser,
    RequestParser,
    RequestTooLarge,
    UnknownRequest,
    check_branch_id,
    encode_reply,
    format_amount,
)

EXAMPLE_REPLY = b"BRANCH_ID: A\nRECORDS: 3\nSUBTOTAL: 350.75\nEND\n"


def split_at(data, cuts):
    """
    C{data} cut at the sorted, distinct positions C{cuts}.
    """
    bounds = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def cuts_of(data):
    return st.lists(st.integers(min_value=1, max_value=max(1, len(data) - 1)))


class EncodeTests(SynchronousTestCase):
    def test_example_reply(self):
        reply = encode_reply(BranchReply("A", 3, Decimal("350.75")))
        self.assertEqual(reply, EXAMPLE_REPLY)
        self.assertEqual(len(reply), 45)

    def test_captured_error_reply(self):
        reply = encode_reply(ErrorReply("cannot read CSV"))
        self.assertEqual(reply, b"ERROR: cannot read CSV\nEND\n")
        self.assertEqual(len(reply), 27)

    def test_error_reason_kept_on_one_line(self):
        self.assertEqual(encode_reply(ErrorReply("a\nb\r\n c")), b"ERROR: a b c\nEND\n")

    def test_amounts_like_printf(self):
        """
        Where C's binary double holds the amount exactly, C{%.2f} and ours
        print the same bytes (exact ties round half to even in both).
        """
        for amount in ["0", "350.75", "-12.5", "0.125", "0.375", "1234567.5", "-3"]:
            self.assertEqual(format_amount(Decimal(amount)), "%.2f" % float(amount), amount)

    def test_amounts_rounded_exactly(self):
        """
        Decimal amounts are rounded as written, not as a binary
        approximation, and a sum that rounds to zero is never C{-0.00}.
        """
        cases = {"1.005": "1.00", "1.015": "1.02", "2.675": "2.68", "-0.001": "0.00"}
        for amount, printed in cases.items():
            self.assertEqual(format_amount(Decimal(amount)), printed, amount)

    def test_amounts_beyond_default_precision(self):
        """
        Amounts with more significant digits than Python's default 28 are
        rounded exactly, not refused.
        """
        digits = "9" * MAX_AMOUNT_DIGITS
        self.assertEqual(format_amount(Decimal(digits + ".995")), "1" + "0" * MAX_AMOUNT_DIGITS + ".00")
        self.assertEqual(
            format_amount(Decimal("-1000000000000000000000.005000000000000000000001")),
            "-1000000000000000000000.01",
        )

    def test_largest_subtotal_round_trips(self):
        subtotal = Decimal("-" + "9" * MAX_AMOUNT_DIGITS + ".99")
        encoded = encode_reply(BranchReply("A", 1, subtotal))
        self.assertEqual(ReplyParser().feed(encoded), BranchReply("A", 1, subtotal))

    def test_subtotal_too_long_for_a_reply(self):
        """
        A subtotal our own aggregator would call malformed is refused with
        a clear error instead of being sent.
        """
        too_long = BranchReply("A", 1, Decimal("1" + "0" * MAX_AMOUNT_DIGITS))
        with self.assertRaises(AmountOutOfRange) as raised:
            encode_reply(too_long)
        self.assertIn(f"{MAX_AMOUNT_DIGITS + 1} integer digits", str(raised.exception))

    def test_thirty_integer_digits_travel_and_thirty_one_do_not(self):
        """The bound docs/protocols/branch.md gives, as a number."""
        largest = BranchReply("A", 1, Decimal("-" + "9" * 30 + ".99"))
        self.assertEqual(ReplyParser().feed(encode_reply(largest)), largest)
        self.assertRaises(AmountOutOfRange, encode_reply, BranchReply("A", 1, Decimal("1" + "0" * 30)))

    def test_branch_id_rules(self):
        self.assertEqual(check_branch_id("A" * 63), b"A" * 63)
        for bad in ["", "A" * 64, "A B", "A\tB", "A,B", 'A"B', "A\x00"]:
            self.assertRaises(InvalidBranchId, check_branch_id, bad)

    def test_a_long_branch_id_is_refused_for_its_length(self):
        with self.assertRaises(InvalidBranchId) as raised:
            check_branch_id("A" * 64)
        self.assertEqual(str(raised.exception), "branch id is 64 bytes; at most 63 are allowed")

    def test_ids_that_would_be_formulas_or_hide_text_are_refused(self):
        """
        main.csv is opened in spreadsheets and ids are shown on terminals:
        no formula start, no line separator, no C1 control (CSI starts an
        escape sequence), no escape.
        """
        for bad in ["=1+1", "+A", "-A", "@SUM(A1)", "A\u2028B", "A\x85B", "A\x9b31m",
                    "A\x1b[31m", "A\u202eB"]:
            self.assertRaises(InvalidBranchId, check_branch_id, bad)
        self.assertEqual(check_branch_id("A-1=2"), b"A-1=2")

    def test_reply_with_a_formula_id_is_malformed(self):
        self.assertRaises(MalformedReply, ReplyParser().feed,
                          b"BRANCH_ID: =HYPERLINK(1)\nRECORDS: 1\nSUBTOTAL: 1.00\nEND\n")

    def test_encoding_rejects_bad_branch_id(self):
        self.assertRaises(InvalidBranchId, encode_reply, BranchReply("A B", 1, Decimal(1)))


class RequestParserTests(SynchronousTestCase):
    def test_captured_request(self):
        self.assertEqual(REQUEST, bytes.fromhex("52 45 51 55 45 53 54 0a"))
        self.assertTrue(RequestParser().feed(REQUEST))

    def test_carriage_return_accepted(self):
        self.assertTrue(RequestParser().feed(b"REQUEST\r\n"))

    @settings(deadline=None)  # a loaded machine must not fail a correct parse
    @given(st.data())
    def test_any_split(self, data):
        request = data.draw(st.sampled_from([b"REQUEST\n", b"REQUEST\r\n"]))
        parser = RequestParser()
        segments = split_at(request, data.draw(cuts_of(request)))
        received = b""
        for segment in segments:
            received += segment
            complete = parser.feed(segment)
            # Complete once C{REQUEST} is in, with or without its line end.
            self.assertEqual(complete, len(received) >= len(b"REQUEST"))
            if complete:
                break

    def test_one_byte_at_a_time(self):
        parser = RequestParser()
        results = [parser.feed(bytes([b])) for b in REQUEST[:-1]]
        self.assertEqual(results, [False] * 6 + [True])

    def test_unknown_request(self):
        for line in [b"GET / HTTP/1.0\r\n", b"request\n", b"REQUEST \n", b"\n"]:
            self.assertRaises(UnknownRequest, RequestParser().feed, line)

    def test_oversize_without_newline(self):
        parser = RequestParser(max_size=16)
        self.assertFalse(parser.feed(b"R" * 16))
        self.assertRaises(RequestTooLarge, parser.feed, b"R")

    def test_oversize_line(self):
        self.assertRaises(RequestTooLarge, RequestParser(max_size=16).feed, b"R" * 16 + b"\n")

    def test_size_bound_counts_the_line_end(self):
        """A request line fits when it and its LF fit: not a byte more."""
        self.assertTrue(RequestParser(max_size=len(REQUEST)).feed(REQUEST))
        self.assertRaises(RequestTooLarge, RequestParser(max_size=len(REQUEST) - 1).feed, REQUEST)

    def test_default_bound_is_127_bytes(self):
        parser = RequestParser()
        self.assertFalse(parser.feed(b"R" * 127))
        self.assertRaises(RequestTooLarge, parser.feed, b"R")

    def test_an_unknown_request_is_quoted_up_to_32_bytes(self):
        with self.assertRaises(UnknownRequest) as raised:
            RequestParser().feed(b"x" * 40 + b"\n")
        self.assertIn(repr(b"x" * 32), str(raised.exception))

    def test_request_without_line_end_is_complete(self):
        """
        Existing servers answer C{REQUEST} without a line end at once (they
        look for it in their first read): so do we, and at end-of-file too.
        """
        for sent in [b"REQUEST", b"REQUEST\r"]:
            parser = RequestParser()
            self.assertTrue(parser.feed(sent))
            self.assertTrue(parser.finish(), sent)

    def test_end_of_file_without_request(self):
        for sent in [b"", b"REQ", b"REQUESTS", b"request"]:
            parser = RequestParser()
            parser.feed(sent)
            self.assertRaises(UnknownRequest, parser.finish)


class ReplyParserTests(SynchronousTestCase):
    expected = BranchReply("A", 3, Decimal("350.75"))

    def test_example(self):
        self.assertEqual(ReplyParser().feed(EXAMPLE_REPLY), self.expected)

    def test_one_byte_segments(self):
        parser = ReplyParser()
        results = [parser.feed(bytes([b])) for b in EXAMPLE_REPLY]
        self.assertEqual(results[:-1], [None] * (len(EXAMPLE_REPLY) - 1))
        self.assertEqual(results[-1], self.expected)

    @given(st.data())
    def test_any_split_any_order_crlf(self, data):
        lines = data.draw(
            st.permutations([b"BRANCH_ID: A", b"RECORDS: 3", b"SUBTOTAL: 350.75"])
        )
        newline = data.draw(st.sampled_from([b"\n", b"\r\n"]))
        reply = newline.join(lines + [b"END"]) + newline
        parser = ReplyParser()
        results = [parser.feed(s) for s in split_at(reply, data.draw(cuts_of(reply)))]
        self.assertEqual(results[-1], self.expected)
        self.assertEqual(set(results[:-1]), {None} if len(results) > 1 else set())

    def test_missing_end(self):
        parser = ReplyParser()
        self.assertIsNone(parser.feed(b"BRANCH_ID: A\nRECORDS: 3\nSUBTOTAL: 350.75"))
        self.assertEqual(parser.finish(), self.expected)

    def test_error_reply(self):
        parser = ReplyParser()
        self.assertEqual(parser.feed(b"ERROR: cannot read CSV\nEND\n"), ErrorReply("cannot read CSV"))

    def test_unknown_lines_ignored(self):
        reply = b"HELLO\nBRANCH_ID: A\nRECORDS: 3\nSUBTOTAL: 350.75\nEND\n"
        self.assertEqual(ReplyParser().feed(reply), self.expected)

    def test_negative_subtotal(self):
        reply = b"BRANCH_ID: A\nRECORDS: 1\nSUBTOTAL: -0.50\nEND\n"
        self.assertEqual(ReplyParser().feed(reply).subtotal, Decimal("-0.50"))

    def assertMalformed(self, data, reason):
        parser = ReplyParser()
        with self.assertRaises(MalformedReply) as raised:
            parser.feed(data)
            parser.finish()
        self.assertIn(reason, str(raised.exception))

    def test_missing_field(self):
        self.assertMalformed(b"BRANCH_ID: A\nRECORDS: 3\nEND\n", "missing SUBTOTAL")

    def test_keys_case_sensitive(self):
        self.assertMalformed(b"branch_id: A\nRECORDS: 3\nSUBTOTAL: 1.00\nEND\n", "missing BRANCH_ID")

    def test_nothing_received(self):
        self.assertMalformed(b"", "closed without a reply")

    def test_bad_values(self):
        self.assertMalformed(b"BRANCH_ID: A\nRECORDS: x\nSUBTOTAL: 1.00\n", "bad RECORDS")
        self.assertMalformed(b"BRANCH_ID: A\nRECORDS: 1\nSUBTOTAL: 1.5\n", "bad SUBTOTAL")
        self.assertMalformed(b"BRANCH_ID: A\nRECORDS: 1\nSUBTOTAL: nan\n", "bad SUBTOTAL")
        self.assertMalformed(b"BRANCH_ID: A,B\nRECORDS: 1\nSUBTOTAL: 1.00\n", "bad BRANCH_ID")
        self.assertMalformed(b"BRANCH_ID: " + b"A" * 64 + b"\nRECORDS: 1\nSUBTOTAL: 1.00\n", "bad BRANCH_ID")

    def test_only_unknown_lines_are_a_reply_missing_its_fields(self):
        """Lines arrived, so the branch did answer: just not with a reply."""
        self.assertMalformed(b"HELLO\n", "missing BRANCH_ID, RECORDS, SUBTOTAL")

    def test_an_error_waits_for_its_end(self):
        parser = ReplyParser()
        self.assertIsNone(parser.feed(b"ERROR: cannot read CSV\n"))
        self.assertEqual(parser.feed(b"END\n"), ErrorReply("cannot read CSV"))

    def test_bad_values_are_quoted_up_to_32_bytes(self):
        self.assertMalformed(b"BRANCH_ID: A\nRECORDS: " + b"x" * 40 + b"\nSUBTOTAL: 1.00\n",
                             repr(b"x" * 32))
        self.assertMalformed(b"BRANCH_ID: " + b"B" * 64 + b"\nRECORDS: 1\nSUBTOTAL: 1.00\n",
                             repr(b"B" * 32))

    def test_a_parser_starts_empty(self):
        """Only the size bound can be given; the parse state is its own."""
        self.assertRaises(TypeError, ReplyParser, MAX_REPLY, b"")
        self.assertRaises(TypeError, RequestParser, 127, b"")

    def test_duplicate_field(self):
        self.assertMalformed(b"RECORDS: 1\nRECORDS: 2\n", "RECORDS appears twice")

    def test_size_bound(self):
        parser = ReplyParser(max_size=64)
        self.assertIsNone(parser.feed(b"X" * 64))
        self.assertRaises(MalformedReply, parser.feed, b"X")

    def test_size_bound_counts_lines(self):
        parser = ReplyParser(max_size=64)
        self.assertRaises(MalformedReply, parser.feed, b"X\n" * 40)

    def test_size_bound_counts_every_byte_of_taken_lines(self):
        """Lines taken and bytes still buffered add up to the bound exactly."""
        parser = ReplyParser(max_size=64)
        self.assertIsNone(parser.feed(b"XYZ\n" * 15))
        self.assertIsNone(parser.feed(b"ABCD"))
        self.assertRaises(MalformedReply, parser.feed, b"E")

    def test_default_bound_is_4096_bytes(self):
        parser = ReplyParser()
        self.assertIsNone(parser.feed(b"X" * 4096))
        self.assertRaises(MalformedReply, parser.feed, b"X")

    def test_size_bound_holds_for_a_whole_reply_in_one_segment(self):
        """
        A reply over the limit is refused even when it arrives, END and
        all, in one segment (the limit was checked only between segments).
        """
        padding = b"NOTE: " + b"x" * MAX_REPLY + b"\n"
        self.assertRaises(MalformedReply, ReplyParser().feed,
                          padding + b"BRANCH_ID: A\nRECORDS: 1\nSUBTOTAL: 1.00\nEND\n")

    @given(st.text(alphabet="AB-_.9é", min_size=1, max_size=20).filter(lambda s: s[0] != "-"),
           st.integers(0, 10**9),
           st.decimals(min_value=-10**9, max_value=10**9, places=2))
    def test_round_trip(self, branch_id, records, subtotal):
        reply = BranchReply(branch_id, records, subtotal)
        self.assertEqual(ReplyParser().feed(encode_reply(reply)), reply)
