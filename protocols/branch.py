"""
Sans-I/O codec for the branch sales wire format (docs/protocols/branch.md).

One request per connection: an aggregator sends C{REQUEST\\n}, the branch
answers with a reply block and closes.  Both directions must stay byte for
byte compatible with the existing C programs, while being more tolerant of
how TCP splits the bytes: the existing programs read once, we reassemble.

Nothing here touches sockets, clocks or files, so every rule can be tested
with plain bytes, including every possible split of the input.
"""

import re
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal

import attrs

REQUEST = b"REQUEST\n"

#: Our bound on a branch id, in bytes (existing aggregators write ids of any
#: length in full; a bound keeps main.csv rows and terminal lines sane).
MAX_BRANCH_ID = 63

#: Existing aggregators read at most 4096 bytes; a reply larger than that is
#: not something any branch server sends, so it is refused as malformed,
#: however few segments it arrives in.
MAX_REPLY = 4096

#: A field starting with one of these is a formula to a spreadsheet that opens
#: main.csv (CSV injection); an id may not start with one.
FORMULA_STARTS = "=+-@"

#: Existing branch servers look at 127 bytes at most; a request line longer
#: than that cannot be a request they would answer either.
MAX_REQUEST = 127

#: Integer digits a SUBTOTAL may have on the wire.  Our aggregator calls a
#: longer one malformed, so our branch server answers an error instead of
#: sending it.
MAX_AMOUNT_DIGITS = 30

#: The decimal context for money.  Python's default context keeps 28
#: significant digits, so a sum of large or finely divided amounts would be
#: rounded silently and rounding such a sum to cents would raise
#: C{InvalidOperation}; with the largest precision and exponent range the
#: implementation allows, additions are exact and only an explicit
#: C{quantize} ever rounds (half to even, as L{format_amount} documents).
MONEY_CONTEXT = Context(
    prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, rounding=ROUND_HALF_EVEN
)

_CENTS = Decimal("0.01")

# No whitespace or control bytes; check_branch_id also refuses the two bytes
# that would break a main.csv row (a comma splits it, a double quote starts a
# quoted field for csv readers).
_BRANCH_ID = re.compile(rb"[\x21-\x7e\x80-\xff]{1,63}")
_RECORDS = re.compile(rb"[0-9]{1,18}")
_SUBTOTAL = re.compile(rb"-?[0-9]{1,%d}\.[0-9]{2}" % MAX_AMOUNT_DIGITS)
_FIELD = re.compile(rb"(BRANCH_ID|RECORDS|SUBTOTAL):[ \t]*(.*?)[ \t]*")
_ERROR = re.compile(rb"ERROR:[ \t]*(.*?)[ \t]*")


class CodecError(Exception):
    """
    Base for bytes that break the wire contract.
    """


class RequestTooLarge(CodecError):
    """
    More than the request size bound arrived without completing a line.
    """


class UnknownRequest(CodecError):
    """
    A complete line arrived that is not C{REQUEST}.
    """


class AmountOutOfRange(CodecError):
    """
    A subtotal with more integer digits than a reply may carry.
    """


class MalformedReply(CodecError):
    """
    A branch reply that cannot be turned into a result; the message says why.
    """


class InvalidBranchId(ValueError):
    """
    A branch id that existing aggregators (or main.csv) would mangle.
    """


def check_branch_id(branch_id):
    """
    Return C{branch_id} encoded as UTF-8 if it can travel on the wire intact.

    An id lands in main.csv, which is comma separated and opened in
    spreadsheets, and on the aggregator's terminal, so it must be 1..63
    bytes of printable, non-whitespace characters (no control or line
    separator characters, which covers terminal escapes and U+2028/U+0085),
    without commas or double quotes, and must not start like a spreadsheet
    formula (C{=}, C{+}, C{-}, C{@}).

    @raise InvalidBranchId: with a message fit for a command line user.
    """
    encoded = branch_id.encode("utf-8")
    if not encoded:
        raise InvalidBranchId("branch id must not be empty")
    if len(encoded) > MAX_BRANCH_ID:
        raise InvalidBranchId(
            f"branch id is {len(encoded)} bytes; at most {MAX_BRANCH_ID} "
            f"are allowed"
        )
    if (_BRANCH_ID.fullmatch(encoded) is None or b"," in encoded or b'"' in encoded
            or not branch_id.isprintable()):
        raise InvalidBranchId(
            "branch id must not contain whitespace, control characters, "
            "commas or double quotes (they would break the reply or main.csv)"
        )
    if branch_id[0] in FORMULA_STARTS:
        raise InvalidBranchId(
            f"branch id must not start with any of {' '.join(FORMULA_STARTS)} "
            f"(a spreadsheet would run it as a formula)"
        )
    return encoded


def format_amount(amount):
    """
    Format money the way C's C{%.2f} does: two decimals, leading C{-} when
    negative, no thousands separator.

    The exact decimal value is rounded, ties half to even (as C rounds a
    tie its binary double holds exactly); C rounds a binary approximation
    instead, so C{1.015} prints C{1.02} here where C prints C{1.01}.  A sum
    that rounds to zero prints C{0.00}, never C{-0.00}.  Any number of
    digits is formatted exactly (see L{MONEY_CONTEXT}).
    """
    rounded = amount.quantize(_CENTS, context=MONEY_CONTEXT)
    if rounded.is_zero():
        rounded = abs(rounded)
    return f"{rounded:f}"


@attrs.frozen
class BranchReply:
    """
    A successful branch answer: how many sales records and their sum.
    """

    branch_id: str
    records: int
    subtotal: Decimal


@attrs.frozen
class ErrorReply:
    """
    A branch saying it cannot read its data.
    """

    reason: str


def encode_reply(reply):
    """
    Serialise a L{BranchReply} or L{ErrorReply} into the bytes to send in a
    single write.

    @raise AmountOutOfRange: the subtotal has more than
        L{MAX_AMOUNT_DIGITS} integer digits, so our own aggregator would
        reject the reply as malformed.
    """
    if isinstance(reply, ErrorReply):
        reason = " ".join(reply.reason.split()) or "unknown error"
        return b"ERROR: %s\nEND\n" % (reason.encode("utf-8"),)
    subtotal = format_amount(reply.subtotal).encode("ascii")
    if _SUBTOTAL.fullmatch(subtotal) is None:
        raise AmountOutOfRange(
            f"subtotal has {len(subtotal.lstrip(b'-')) - 3} integer digits; "
            f"a reply carries at most {MAX_AMOUNT_DIGITS}"
        )
    return b"BRANCH_ID: %s\nRECORDS: %d\nSUBTOTAL: %s\nEND\n" % (
        check_branch_id(reply.branch_id),
        reply.records,
        subtotal,
    )


@attrs.define
class RequestParser:
    """
    Reassemble the aggregator's request from however many segments it
    arrives in.

    L{feed} returns C{True} once a C{REQUEST} line (LF or CRLF terminated) is
    complete, or once what arrived is C{REQUEST} without its line end
    (existing servers answer that at once, and so does ours), C{False}
    while more bytes are needed, and raises a L{CodecError} for anything
    else.  Bytes after the request are ignored: there is one request per
    connection.  Call L{finish} if the client ends its side of the
    connection before a complete line.
    """

    max_size: int = MAX_REQUEST
    _buffer: bytes = attrs.field(default=b"", init=False)

    def feed(self, data):
        self._buffer += data
        line, newline, _ = self._buffer.partition(b"\n")
        if not newline:
            if line.removesuffix(b"\r") == REQUEST[:-1]:
                return True
            if len(self._buffer) > self.max_size:
                raise RequestTooLarge(
                    f"no request line within {self.max_size} bytes"
                )
            return False
        if len(line) + 1 > self.max_size:
            raise RequestTooLarge(f"request line longer than {self.max_size} bytes")
        return _check_request(line)

    def finish(self):
        """
        The client sent end-of-file: what arrived is the whole request.
        Existing servers answer C{REQUEST} without a line end (they look
        for the substring in their first read), so it counts here too.

        @return: C{True}.
        @raise UnknownRequest: nothing arrived, or something other than
            C{REQUEST}.
        """
        if not self._buffer:
            raise UnknownRequest("end of input without a request")
        return _check_request(self._buffer)


def _check_request(line):
    """
    Return C{True} if C{line}, without its LF, is C{REQUEST} (a trailing CR
    allowed), else raise L{UnknownRequest}.
    """
    if line.removesuffix(b"\r") != REQUEST[:-1]:
        raise UnknownRequest(f"unknown request {line[:32]!r}")
    return True


@attrs.define
class ReplyParser:
    """
    Reassemble and decode a branch reply.

    Accepts what existing aggregators accept (fields in any order, CRLF, no
    C{END}, case-sensitive keys, unknown lines ignored) and more: the reply
    may arrive in any number of segments.  Call L{feed} with each segment; it
    returns the decoded reply once C{END} arrives, else C{None}.  Call
    L{finish} when the branch closes the connection without C{END}.
    """

    max_size: int = MAX_REPLY
    _buffer: bytes = attrs.field(default=b"", init=False)
    _consumed: int = attrs.field(default=0, init=False)
    _fields: dict = attrs.field(factory=dict, init=False)
    _error: object = attrs.field(default=None, init=False)

    def feed(self, data):
        self._buffer += data
        if self._received() > self.max_size:
            # Checked before any line is taken: a reply that arrives in one
            # segment with its END is no shorter for it.
            raise MalformedReply(f"reply longer than {self.max_size} bytes")
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if self._take(line.removesuffix(b"\r")):
                return self._result()
        return None

    def finish(self):
        """
        The connection closed: decode what arrived, with or without C{END}.
        """
        if self._buffer:
            self._take(self._buffer.removesuffix(b"\r"))
            self._buffer = b""
        return self._result()

    def _received(self):
        return self._consumed + len(self._buffer)

    def _take(self, line):
        """
        Record one line; return C{True} if it ends the reply.
        """
        self._consumed += len(line) + 1
        if line == b"END":
            return True
        error = _ERROR.fullmatch(line)
        if error is not None and self._error is None:
            self._error = error.group(1).decode("utf-8", "replace")
            return False
        field = _FIELD.fullmatch(line)
        if field is not None:
            key, value = field.groups()
            if key in self._fields:
                raise MalformedReply(f"{key.decode()} appears twice")
            self._fields[key] = value
        return False

    def _result(self):
        if self._error is not None:
            return ErrorReply(self._error)
        missing = [
            key.decode()
            for key in (b"BRANCH_ID", b"RECORDS", b"SUBTOTAL")
            if key not in self._fields
        ]
        if missing:
            if not self._fields and not self._consumed:
                raise MalformedReply("connection closed without a reply")
            raise MalformedReply(f"missing {', '.join(missing)}")
        return BranchReply(
            branch_id=_decode_branch_id(self._fields[b"BRANCH_ID"]),
            records=_decode(self._fields, b"RECORDS", _RECORDS, int),
            subtotal=_decode(self._fields, b"SUBTOTAL", _SUBTOTAL, Decimal),
        )


def _decode(fields, key, pattern, convert):
    value = fields[key]
    if pattern.fullmatch(value) is None:
        raise MalformedReply(f"bad {key.decode()} value {value[:32]!r}")
    return convert(value.decode("ascii"))


def _decode_branch_id(value):
    try:
        branch_id = value.decode("utf-8")
        check_branch_id(branch_id)
    except (UnicodeDecodeError, InvalidBranchId) as e:
        raise MalformedReply(f"bad BRANCH_ID {value[:32]!r}: {e}") from None
    return branch_id
