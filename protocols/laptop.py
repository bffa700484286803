# -*- test-case-name: tests.laptop.test_codec -*-
"""
Sans-I/O codec for the laptop-order wire format.

The customer side is byte-for-byte the format of the existing C++ system
(``docs/protocols/laptop.md``): a 4-byte role word, then fixed-size
big-endian messages whose sizes follow from the role and the request type.
The legacy replication entry and ack are encoded and decoded too, so the
existing system's captured test vectors are checked, but our replicas talk to each other over a
third role (``ROLE_REPLICA``) whose messages carry views, commit indexes and
catch-up data in length-prefixed frames.  That extension is documented in
``docs/protocols/laptop.md`` and in the ``KIND_*`` table below.

Nothing here touches sockets or clocks: decoders take bytes and return
events, encoders take events and return bytes.
"""

import struct
from typing import List, NamedTuple, Optional, Tuple

import attrs

ROLE_CUSTOMER = 0
ROLE_LEGACY_REPLICATION = 1
ROLE_REPLICA = 2

#: what a replica link's shared-secret handshake (``protocols.peerauth``) is
#: bound to: it runs right after the role word, before any replica frame
REPLICA_LINK_LABEL = b"laptop-replica"

TYPE_ORDER = 1
TYPE_READ = 2
#: our extension: this replica's own committed record, not forwarded to the
#: primary (so ``laptop-client --verify`` can compare replicas).  Unknown to
#: the existing server, which would not answer it.
TYPE_LOCAL_READ = 4
_RECORD_TYPES = (TYPE_READ, TYPE_LOCAL_READ)

CLOSE_CUSTOMER_ID = -1
#: customer_id of a failure reply and of a read that found no record.
NO_VALUE = -1
#: last_order of a read that could not be answered (no primary in time); the
#: existing client sees customer_id -1, which it already treats as "nothing".
READ_FAILED = -2

OPCODE_NOOP = 0
OPCODE_SET_LAST_ORDER = 1

#: The highest view a replica adopts or starts.  Views are int32 on the wire;
#: stopping far below the limit means ``view + 1`` always fits, and a peer
#: cannot end elections for good by announcing a view at the limit.  A
#: billion elections is more than a cluster ever runs.
MAX_VIEW = 2**30

#: Largest replica frame body accepted; checked before buffering the body.
MAX_FRAME_BODY = 16 * 1024 * 1024

_WORD = struct.Struct(">i")
_REQUEST = struct.Struct(">iii")
_ORDER_REPLY = struct.Struct(">iiiii")
_RECORD_REPLY = struct.Struct(">ii")
_LEGACY_ENTRY = struct.Struct(">iiiiii")
_FRAME_HEADER = struct.Struct(">ii")
_ENTRY = struct.Struct(">iiii")
_RECORD = struct.Struct(">ii")
_COUNT = struct.Struct(">i")
_SNAPSHOT_HEAD = struct.Struct(">iiqiqqqi")

#: The most customer records one InstallSnapshot frame can carry: a peer
#: refuses a larger frame, so a sender must not build one (a larger snapshot
#: goes in several frames, each a chunk of it).
MAX_SNAPSHOT_RECORDS = (MAX_FRAME_BODY - _SNAPSHOT_HEAD.size) // _RECORD.size


class FrameTooLarge(ValueError):
    """A replica message whose frame body would exceed ``MAX_FRAME_BODY``; it is not encoded."""


class ProtocolError(Exception):
    """
    The peer sent bytes that cannot be part of a valid conversation.

    ``reason`` is a short identifier suitable as a metrics counter name.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------- customer side


@attrs.frozen
class RoleDeclared:
    role: int


@attrs.frozen
class CustomerRequest:
    customer_id: int
    order_number: int
    request_type: int


@attrs.frozen
class OrderReply:
    """
    Reply to a type 1 request; also the failure reply for any request type
    the server does not know (``customer_id == NO_VALUE``).
    """

    customer_id: int
    order_number: int
    request_type: int
    engineer_id: int
    admin_id: int

    @property
    def failed(self) -> bool:
        # NO_VALUE is a small int, of which CPython keeps one object: `is` is `==` here.
        return self.customer_id == NO_VALUE  # equivalent: Eq_Is


@attrs.frozen
class RecordReply:
    customer_id: int
    last_order: int

    @property
    def failed(self) -> bool:
        # Small ints (-1, -2), one object each: `is` is `==` here.
        return self.customer_id == NO_VALUE and self.last_order == READ_FAILED  # equivalent: Eq_Is


@attrs.frozen
class LegacyEntry:
    primary_id: int
    committed_index: int
    last_index: int
    opcode: int
    customer_id: int
    order_number: int


def encode_role(role: int) -> bytes:
    return _WORD.pack(role)


def encode_request(request: CustomerRequest) -> bytes:
    return _REQUEST.pack(request.customer_id, request.order_number, request.request_type)


def encode_order_reply(reply: OrderReply) -> bytes:
    return _ORDER_REPLY.pack(
        reply.customer_id,
        reply.order_number,
        reply.request_type,
        reply.engineer_id,
        reply.admin_id,
    )


def encode_order_reply_fields(
    customer_id: int, order_number: int, request_type: int, engineer_id: int, admin_id: int
) -> bytes:
    """``encode_order_reply`` without building an ``OrderReply`` first (one per order served)."""
    return _ORDER_REPLY.pack(customer_id, order_number, request_type, engineer_id, admin_id)


def encode_record_reply(reply: RecordReply) -> bytes:
    return _RECORD_REPLY.pack(reply.customer_id, reply.last_order)


def encode_legacy_entry(entry: LegacyEntry) -> bytes:
    return _LEGACY_ENTRY.pack(*attrs.astuple(entry))


def encode_legacy_ack(server_id: int) -> bytes:
    return _WORD.pack(server_id)


def reply_size(request_type: int) -> int:
    """
    How many bytes the server answers to a request of this type: reads get
    a record, everything else (orders and unknown types) an order reply.
    """
    return _RECORD_REPLY.size if request_type in _RECORD_TYPES else _ORDER_REPLY.size


class ReplyDecoder:
    """
    Client side of a customer connection.  The reply sizes depend on what was
    asked, so the caller announces every request it sends with ``expect``.
    """

    def __init__(self):
        self._buffer = b""
        self._expected: List[int] = []
        self._next = 0

    def expect(self, request_type: int) -> None:
        self._expected.append(request_type)

    @property
    def outstanding(self) -> int:
        return len(self._expected) - self._next

    def feed(self, data: bytes) -> list:
        # The common case of a closed loop: exactly the one reply awaited.
        # The loop below gives the same replies, so a change that only ever
        # sends a read past this shortcut is invisible: `len - 1` as `+ 1`,
        # `| 1` or `^ 1`, and `==` as `is` (small ints, one object each).
        if not self._buffer and (
            self._next == len(self._expected) - 1  # equivalent: Sub_Add, Sub_BitOr, Sub_BitXor, Eq_Is
        ):
            request_type = self._expected[self._next]
            if request_type in _RECORD_TYPES:
                if len(data) == _RECORD_REPLY.size:  # equivalent: Eq_Is
                    self._expected = []
                    self._next = 0
                    return [RecordReply(*_RECORD_REPLY.unpack(data))]
            elif len(data) == _ORDER_REPLY.size:  # equivalent: Eq_Is
                self._expected = []
                self._next = 0
                return [OrderReply(*_ORDER_REPLY.unpack(data))]
        buffer = self._buffer + data if self._buffer else data
        offset = 0
        replies = []
        expected = self._expected
        # _next counts up by one to len(expected) at most: `!=` stops it alike.
        while self._next < len(expected):  # equivalent: Lt_NotEq
            size = reply_size(expected[self._next])
            if len(buffer) - offset < size:
                break
            # A size is 8 or 20, small ints: `is` and `<=` tell 8 alike.
            if size == _RECORD_REPLY.size:  # equivalent: Eq_Is, Eq_LtE
                replies.append(RecordReply(*_RECORD_REPLY.unpack_from(buffer, offset)))
            else:
                replies.append(OrderReply(*_ORDER_REPLY.unpack_from(buffer, offset)))
            offset += size
            self._next += 1
        if self._next == len(expected):  # equivalent: Eq_GtE (as the loop's bound)
            self._expected = []
            self._next = 0
        # offset never passes the buffer's end.
        if offset != len(buffer) and not self._expected:  # equivalent: NotEq_Lt
            raise ProtocolError("unexpected_reply_bytes")
        self._buffer = buffer[offset:]
        return replies


# ---------------------------------------------------------------- replica side
#
# Frame: kind (int32), body length (int32), body.  Indexes and rounds are
# 64-bit in the extension (the legacy 32-bit indexes wrap after 2**31 orders).


class Entry(NamedTuple):
    """
    One slot of the replicated log: which view wrote it, and what to do.  A
    named tuple, not an attrs class: every order makes one on each replica,
    and a tuple is built several times faster (straight from the unpacked
    fields of an AppendEntries).
    """

    view: int
    opcode: int
    customer_id: int
    order_number: int


@attrs.frozen
class Hello:
    replica_id: int


@attrs.frozen
class AppendEntries:
    view: int
    primary_id: int
    prev_index: int
    prev_view: int
    commit_index: int
    round: int
    entries: Tuple[Entry, ...] = ()


@attrs.frozen
class AppendReply:
    view: int
    replica_id: int
    success: bool
    #: on success the last index now known to match; on failure where the
    #: primary should resume sending from (plus one).
    match_index: int
    round: int


@attrs.frozen
class VoteRequest:
    view: int
    candidate_id: int
    last_index: int
    last_view: int
    #: a pre-vote asks "would you vote for me?" without changing anyone's view
    pre: bool


@attrs.frozen
class VoteReply:
    view: int
    replica_id: int
    granted: bool
    pre: bool


@attrs.frozen
class InstallSnapshot:
    """
    One chunk of the snapshot of the primary's state up to ``last_index``:
    ``records`` are its records from position ``offset`` on, out of
    ``total``.  A backup installs the snapshot once it holds all of them.
    """

    view: int
    primary_id: int
    last_index: int
    last_view: int
    round: int
    total: int
    offset: int
    records: Tuple[Tuple[int, int], ...]


@attrs.frozen
class SnapshotReply:
    """
    A backup's answer to a snapshot chunk that did not complete it: it holds
    the first ``received`` records of the snapshot at ``last_index``, so the
    primary goes on from there (0: start again).  The chunk that completes
    the snapshot is answered with an ``AppendReply``, as entries are.
    """

    view: int
    replica_id: int
    last_index: int
    received: int
    round: int


@attrs.frozen
class ForwardRequest:
    """A customer request a backup passes on to the primary."""

    tag: int
    customer_id: int
    order_number: int
    request_type: int


FORWARD_OK = 0
FORWARD_RETRY = 1


@attrs.frozen
class ForwardReply:
    tag: int
    status: int
    #: last order for reads, unused for orders
    value: int
    admin_id: int


KIND_HELLO = 1
KIND_APPEND = 2
KIND_APPEND_REPLY = 3
KIND_VOTE_REQUEST = 4
KIND_VOTE_REPLY = 5
KIND_SNAPSHOT = 6
KIND_FORWARD = 7
KIND_FORWARD_REPLY = 8
KIND_SNAPSHOT_REPLY = 9

_HELLO = struct.Struct(">i")
_APPEND_HEAD = struct.Struct(">iiqiqqi")
_APPEND_REPLY = struct.Struct(">iiiqq")
_VOTE_REQUEST = struct.Struct(">iiqii")
_VOTE_REPLY = struct.Struct(">iiii")
_FORWARD = struct.Struct(">qiii")
_FORWARD_REPLY = struct.Struct(">qiii")
_SNAPSHOT_REPLY = struct.Struct(">iiqqq")


def claimed_sender(message) -> Optional[int]:
    """
    The replica id a message says it comes from (None for forwarded
    requests and replies, which name no sender): a receiver checks it
    against the id the link authenticated as.
    """
    # Classes compare by identity: `kind == X` is `kind is X` (here and in
    # encode_replica_message).
    kind = type(message)
    if kind is AppendEntries or kind is InstallSnapshot:  # equivalent: Is_Eq
        return message.primary_id
    if kind is AppendReply or kind is VoteReply or kind is SnapshotReply:  # equivalent: Is_Eq
        return message.replica_id
    if kind is VoteRequest:  # equivalent: Is_Eq
        return message.candidate_id
    return None


def _frame(kind: int, body: bytes) -> bytes:
    if len(body) > MAX_FRAME_BODY:
        raise FrameTooLarge(f"frame kind {kind}: body of {len(body)} bytes, limit {MAX_FRAME_BODY}")
    return _FRAME_HEADER.pack(kind, len(body)) + body


#: the AppendEntries last encoded and its frame: a primary sends one message
#: to every backup in step, and it is packed once
_last_append_frame: Tuple[Optional["AppendEntries"], bytes] = (None, b"")


def encode_replica_message(message) -> bytes:
    global _last_append_frame
    kind = type(message)
    if kind is AppendEntries:  # equivalent: Is_Eq
        if message is _last_append_frame[0]:
            return _last_append_frame[1]
        head = _APPEND_HEAD.pack(
            message.view,
            message.primary_id,
            message.prev_index,
            message.prev_view,
            message.commit_index,
            message.round,
            len(message.entries),
        )
        pack = _ENTRY.pack
        body = head + b"".join([pack(*entry) for entry in message.entries])
        frame = _frame(KIND_APPEND, body)
        _last_append_frame = (message, frame)
        return frame
    if kind is AppendReply:  # equivalent: Is_Eq
        return _frame(
            KIND_APPEND_REPLY,
            _APPEND_REPLY.pack(
                message.view,
                message.replica_id,
                int(message.success),
                message.match_index,
                message.round,
            ),
        )
    if kind is ForwardRequest:  # equivalent: Is_Eq
        return _frame(
            KIND_FORWARD,
            _FORWARD.pack(
                message.tag, message.customer_id, message.order_number, message.request_type
            ),
        )
    if kind is ForwardReply:  # equivalent: Is_Eq
        return _frame(
            KIND_FORWARD_REPLY,
            _FORWARD_REPLY.pack(message.tag, message.status, message.value, message.admin_id),
        )
    if kind is Hello:  # equivalent: Is_Eq
        return _frame(KIND_HELLO, _HELLO.pack(message.replica_id))
    if kind is VoteRequest:  # equivalent: Is_Eq
        return _frame(
            KIND_VOTE_REQUEST,
            _VOTE_REQUEST.pack(
                message.view,
                message.candidate_id,
                message.last_index,
                message.last_view,
                int(message.pre),
            ),
        )
    if kind is VoteReply:  # equivalent: Is_Eq
        return _frame(
            KIND_VOTE_REPLY,
            _VOTE_REPLY.pack(
                message.view, message.replica_id, int(message.granted), int(message.pre)
            ),
        )
    if kind is InstallSnapshot:  # equivalent: Is_Eq
        if len(message.records) > MAX_SNAPSHOT_RECORDS:
            # Refused before packing: the frame would be refused anyway.
            raise FrameTooLarge(
                f"InstallSnapshot of {len(message.records)} records, limit {MAX_SNAPSHOT_RECORDS}"
            )
        head = _SNAPSHOT_HEAD.pack(
            message.view,
            message.primary_id,
            message.last_index,
            message.last_view,
            message.round,
            message.total,
            message.offset,
            len(message.records),
        )
        pack = _RECORD.pack
        return _frame(KIND_SNAPSHOT, head + b"".join([pack(c, o) for c, o in message.records]))
    if kind is SnapshotReply:  # equivalent: Is_Eq
        return _frame(
            KIND_SNAPSHOT_REPLY,
            _SNAPSHOT_REPLY.pack(
                message.view, message.replica_id, message.last_index, message.received,
                message.round,
            ),
        )
    raise TypeError(f"not a replica message: {message!r}")


def _flag(value: int) -> bool:
    if value not in (0, 1):
        raise ProtocolError("bad_flag")
    return bool(value)


def _fixed(layout: struct.Struct, body: bytes) -> tuple:
    # Fixed layouts are 4 to 28 bytes: small ints, so `is not` is `!=` for them.
    if len(body) != layout.size:  # equivalent: NotEq_IsNot
        raise ProtocolError("bad_frame_length")
    return layout.unpack(body)


_make_entry = Entry._make


def _decode_append(body: bytes) -> AppendEntries:
    if len(body) < _APPEND_HEAD.size:
        raise ProtocolError("bad_frame_length")
    view, primary, prev_index, prev_view, commit, round_, count = _APPEND_HEAD.unpack_from(body)
    # A negative count asks for a body shorter than the head, so it fails here too.
    if len(body) != _APPEND_HEAD.size + count * _ENTRY.size:
        raise ProtocolError("bad_frame_length")
    entries = tuple(map(_make_entry, _ENTRY.iter_unpack(memoryview(body)[_APPEND_HEAD.size :])))
    return AppendEntries(view, primary, prev_index, prev_view, commit, round_, entries)


def _decode_snapshot(body: bytes) -> InstallSnapshot:
    if len(body) < _SNAPSHOT_HEAD.size:
        raise ProtocolError("bad_frame_length")
    view, primary, last_index, last_view, round_, total, offset, count = _SNAPSHOT_HEAD.unpack_from(
        body
    )
    if len(body) != _SNAPSHOT_HEAD.size + count * _RECORD.size:  # as in _decode_append
        raise ProtocolError("bad_frame_length")
    records = tuple(_RECORD.iter_unpack(memoryview(body)[_SNAPSHOT_HEAD.size :]))
    return InstallSnapshot(view, primary, last_index, last_view, round_, total, offset, records)


def _decode_append_reply(body: bytes) -> AppendReply:
    view, replica, success, match, round_ = _fixed(_APPEND_REPLY, body)
    return AppendReply(view, replica, _flag(success), match, round_)


def _decode_vote_request(body: bytes) -> VoteRequest:
    view, candidate, last_index, last_view, pre = _fixed(_VOTE_REQUEST, body)
    return VoteRequest(view, candidate, last_index, last_view, _flag(pre))


def _decode_vote_reply(body: bytes) -> VoteReply:
    view, replica, granted, pre = _fixed(_VOTE_REPLY, body)
    return VoteReply(view, replica, _flag(granted), _flag(pre))


_REPLICA_DECODERS = {
    KIND_HELLO: lambda body: Hello(*_fixed(_HELLO, body)),
    KIND_APPEND: _decode_append,
    KIND_APPEND_REPLY: _decode_append_reply,
    KIND_VOTE_REQUEST: _decode_vote_request,
    KIND_VOTE_REPLY: _decode_vote_reply,
    KIND_SNAPSHOT: _decode_snapshot,
    KIND_FORWARD: lambda body: ForwardRequest(*_fixed(_FORWARD, body)),
    KIND_FORWARD_REPLY: lambda body: ForwardReply(*_fixed(_FORWARD_REPLY, body)),
    KIND_SNAPSHOT_REPLY: lambda body: SnapshotReply(*_fixed(_SNAPSHOT_REPLY, body)),
}


def decode_replica_message(data: bytes, offset: int = 0) -> Tuple[Optional[object], int]:
    """
    Decode one replica frame starting at ``offset`` in ``data``; return the
    message (or None if more bytes are needed) and where the next frame
    starts (``offset`` when None).
    """
    body_start = offset + _FRAME_HEADER.size
    if len(data) < body_start:
        return None, offset
    kind, length = _FRAME_HEADER.unpack_from(data, offset)
    decoder = _REPLICA_DECODERS.get(kind)
    if decoder is None:
        raise ProtocolError("unknown_frame_kind")
    if length < 0 or length > MAX_FRAME_BODY:
        raise ProtocolError("frame_too_large")
    end = body_start + length
    if len(data) < end:
        return None, offset
    return decoder(data[body_start:end]), end


class ServerDecoder:
    """
    Server side of any connection: the role word, then customer requests,
    legacy replication entries, or replica frames.
    """

    def __init__(self):
        self._buffer = b""
        #: the reads of a replica frame whose header has arrived but not all
        #: of its body: kept as they come and joined once, when the frame is
        #: whole (adding each read to one buffer copied a 16 MiB frame
        #: hundreds of times); ``_buffer`` is empty meanwhile
        self._parts: List[bytes] = []
        # Both are read only while _parts holds a frame's reads, which sets them.
        self._parts_size = 0  # pragma: no mutate
        self._awaited = 0  # pragma: no mutate
        self.role: Optional[int] = None

    @property
    def mid_message(self) -> bool:
        """
        True while the role word or part of a message is still awaited: a
        peer that stalls here is sending a truncated message.
        """
        return self.role is None or bool(self._buffer) or bool(self._parts)

    def take_buffered(self) -> bytes:
        """
        The bytes received after the role word of a replica link and not yet
        decoded (the peer's side of an authentication handshake, say).
        """
        taken, self._buffer = self._buffer, b""
        return taken

    def feed(self, data: bytes) -> list:
        if self._parts:
            self._parts.append(data)
            self._parts_size += len(data)
            if self._parts_size < self._awaited:
                return []
            data = b"".join(self._parts)
            self._parts = []
        # The common case of a closed loop: one whole request per read.
        # Roles and sizes are small ints, one object each: `is` is `==`.
        if (self.role == ROLE_CUSTOMER  # equivalent: Eq_Is
                and not self._buffer and len(data) == _REQUEST.size):  # equivalent: Eq_Is
            return [CustomerRequest(*_REQUEST.unpack(data))]
        buffer = self._buffer + data if self._buffer else data
        events = []
        offset = 0
        if self.role is None:
            if len(buffer) < 4:
                self._buffer = buffer
                return events
            (role,) = _WORD.unpack_from(buffer)
            if role not in (ROLE_CUSTOMER, ROLE_LEGACY_REPLICATION, ROLE_REPLICA):
                raise ProtocolError("bad_role")
            self.role = role
            events.append(RoleDeclared(role))
            offset = 4
            # Roles are 0, 1 or 2 here (small ints; ROLE_REPLICA the highest).
            if role == ROLE_REPLICA:  # equivalent: Eq_Is, Eq_GtE
                # A replica link may have to prove the shared secret before
                # any frame is read: what follows waits in the buffer until
                # the caller takes it (``take_buffered``) or feeds on.
                self._buffer = bytes(buffer[offset:])
                return events
        # self.role is 0, 1 or 2 from here on: ROLE_CUSTOMER the lowest, ROLE_REPLICA the highest.
        if self.role == ROLE_CUSTOMER:  # equivalent: Eq_LtE, Eq_Is
            usable = offset + (len(buffer) - offset) // 12 * 12
            events.extend(
                CustomerRequest(*fields)
                for fields in _REQUEST.iter_unpack(memoryview(buffer)[offset:usable])
            )
            offset = usable
        elif self.role == ROLE_REPLICA:  # equivalent: Eq_GtE, Eq_Is
            while True:
                message, offset = decode_replica_message(buffer, offset)
                if message is None:
                    break
                events.append(message)
        else:
            # offset is 0 or 4 (the role word) and the rest a multiple of 24,
            # so of 8: their bits never overlap, and `+` is `|` and `^` here.
            usable = offset + (len(buffer) - offset) // 24 * 24  # equivalent: Add_BitOr, Add_BitXor
            events.extend(
                LegacyEntry(*fields)
                for fields in _LEGACY_ENTRY.iter_unpack(memoryview(buffer)[offset:usable])
            )
            offset = usable
        rest = buffer[offset:]
        if self.role == ROLE_REPLICA and len(rest) >= _FRAME_HEADER.size:  # equivalent: Eq_Is, Eq_GtE
            # decode_replica_message checked this header before asking for more
            _, length = _FRAME_HEADER.unpack_from(rest)
            self._parts = [bytes(rest)]
            self._parts_size = len(rest)
            self._awaited = _FRAME_HEADER.size + length
            self._buffer = b""
        else:
            self._buffer = bytes(rest)
        return events
