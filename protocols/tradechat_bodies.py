"""
Body codecs for the trading-chat protocol: one request value type per
opcode, and the encoders/decoders for request and response bodies.

Integers are big-endian; strings are a u16 length then UTF-8 bytes.  Bodies
the existing server defines are byte-exact with it.

A request body is read from its start, and bytes after the fields its
opcode defines are ignored, as the existing server ignores them: an
existing client must never be refused for what that server accepts.  For
the same reason an extension that does not parse counts as absent (a HELLO
body that is no valid name, a LOGIN tail that is no proof) rather than
making the request a BAD_PACKET; extensions can only ever add checks, so
reading garbage as "absent" lets nobody in.  This server's
extensions are chosen so that existing clients, which never send them, see
exactly the bytes they expect:

  - HELLO may carry C{u16 L, name}: the reply is then the 8-byte nonce
    followed by that account's key-derivation parameters (L{AuthParams}).
    An empty HELLO gets the 8-byte nonce alone.
  - LOGIN may carry, after the CRC token, C{u16 P, proof}: the password
    proof (see L{marketplace.tradechat.auth}).
  - LOGOUT: empty request, empty reply.
  - TXN_HISTORY: request C{u16 limit, u64 before_txn_id} (0 = newest;
    the empty body means "the newest L{DEFAULT_HISTORY_LIMIT}"); reply
    C{u16 count} then C{count} entries of C{u64 txn_id, u8 kind,
    u32 counterparty (0xFFFFFFFF = none), i64 amount (signed change),
    i64 balance_after, u64 unix_time_ms}, newest first.  Page on by sending
    the last entry's txn_id as C{before_txn_id}; a page shorter than
    C{limit} is the last.
"""

from __future__ import annotations

import struct
import zlib
from typing import Callable, Optional

import attrs

from protocols.nsframe import DEFAULT_MAX_FRAME_SIZE, HEADER_LEN, Opcode

MAX_NAME_BYTES = 31
I64_MAX = (1 << 63) - 1
NO_COUNTERPARTY = 0xFFFFFFFF
DEFAULT_HISTORY_LIMIT = 20
MAX_HISTORY_LIMIT = 500
_CHAT_PUSH_OVERHEAD = 8  # u16 room, u32 from_user_id, u16 length
MAX_CHAT_MESSAGE = DEFAULT_MAX_FRAME_SIZE - HEADER_LEN - _CHAT_PUSH_OVERHEAD
"""Longest chat message whose push still fits the 65536-byte frame that
existing clients accept."""

KDF_ARGON2ID = 1

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_TRANSFER = struct.Struct(">Iq")
_ROOM_AND_LENGTH = struct.Struct(">HH")
_LOGIN_REPLY = struct.Struct(">Iq")
_PUSH_HEADER = struct.Struct(">HIH")
_HISTORY_REQUEST = struct.Struct(">HQ")
_HISTORY_ENTRY = struct.Struct(">QBIqqQ")
_AUTH_PARAMS = struct.Struct(">BIIBH")
#: The largest KDF parameters the HELLO reply's fields (u32 time cost,
#: u32 memory in KiB, u8 lanes) can carry.
MAX_KDF_TIME_COST = 0xFFFFFFFF
MAX_KDF_MEMORY_KIB = 0xFFFFFFFF
MAX_KDF_PARALLELISM = 0xFF


class BadBody(ValueError):
    """A body that does not parse for its opcode: answered with BAD_PACKET."""


class UnknownOpcode(BadBody):
    """An opcode this server does not handle as a request."""


def login_token(name: str, nonce: int) -> int:
    """
    The LOGIN token the existing clients send: crc32 of the name's bytes and
    the HELLO nonce as 8 big-endian bytes.  It proves nothing about identity
    (anyone can compute it); passwords are the proof extension.
    """
    return zlib.crc32(name.encode("utf-8") + nonce.to_bytes(8, "big"))


# Request values -----------------------------------------------------------

@attrs.frozen
class Hello:
    auth_name: Optional[str] = None


@attrs.frozen
class Login:
    name: str
    token: int
    proof: Optional[bytes] = None


@attrs.frozen
class Logout:
    pass


@attrs.frozen
class Heartbeat:
    pass


@attrs.frozen
class JoinRoom:
    room: int


@attrs.frozen
class LeaveRoom:
    room: int


@attrs.frozen
class ChatSend:
    room: int
    message: bytes


@attrs.frozen
class Deposit:
    amount: int


@attrs.frozen
class Withdraw:
    amount: int


@attrs.frozen
class Transfer:
    to_user_id: int
    amount: int


@attrs.frozen
class Balance:
    pass


@attrs.frozen
class TxnHistory:
    limit: int = DEFAULT_HISTORY_LIMIT
    before_txn_id: int = 0


# Response values ----------------------------------------------------------

@attrs.frozen
class AuthParams:
    """Argon2id parameters and salt of one account, sent in the HELLO reply."""

    salt: bytes
    time_cost: int
    memory_cost_kib: int
    parallelism: int


@attrs.frozen
class HelloReply:
    nonce: int
    auth: Optional[AuthParams] = None


@attrs.frozen
class LoginReply:
    user_id: int
    balance: int


@attrs.frozen
class ChatBroadcast:
    room: int
    from_user_id: int
    message: bytes


class TxnKind:
    """Wire codes of ledger transaction kinds in TXN_HISTORY entries."""

    BY_NAME = {"open": 1, "deposit": 2, "withdraw": 3, "transfer_out": 4, "transfer_in": 5}
    BY_CODE = {code: name for name, code in BY_NAME.items()}


@attrs.frozen
class HistoryEntry:
    txn_id: int
    kind: str
    counterparty: Optional[int]
    amount: int
    balance_after: int
    timestamp_ms: int


# Primitive readers --------------------------------------------------------

def _read_string(body: bytes, offset: int) -> tuple[str, int]:
    if len(body) < offset + 2:
        raise BadBody("truncated string length")
    (length,) = _U16.unpack_from(body, offset)
    start = offset + 2
    end = start + length
    if len(body) < end:
        raise BadBody("truncated string")
    raw = body[start:end]
    if b"\x00" in raw:
        raise BadBody("NUL in string")
    try:
        return raw.decode("utf-8"), end
    except UnicodeDecodeError:
        raise BadBody("string is not UTF-8") from None


def _encode_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _U16.pack(len(raw)) + raw


def _exact(body: bytes, size: int, what: str) -> None:
    """A reply body (ours to check strictly: it came from a server we expect to be exact)."""
    if len(body) != size:
        raise BadBody(f"{what} body must be {size} bytes, got {len(body)}")


def _at_least(body: bytes, size: int, what: str) -> None:
    """A request body: its fields must be there; what follows them is ignored."""
    if len(body) < size:
        raise BadBody(f"{what} body must have {size} bytes, got {len(body)}")


def _check_name(name: str) -> str:
    size = len(name.encode("utf-8"))
    if not 1 <= size <= MAX_NAME_BYTES:
        raise BadBody(f"name must be 1..{MAX_NAME_BYTES} bytes")
    return name


def _positive_amount(amount: int) -> int:
    if amount <= 0:
        raise BadBody("amount must be positive")
    return amount


# Request decoders ---------------------------------------------------------

def _decode_hello(body: bytes) -> Hello:
    """The spec's HELLO is empty; a body that is a valid name asks for its KDF parameters."""
    try:
        name, _ = _read_string(body, 0)
        return Hello(_check_name(name))
    except BadBody:
        return Hello()


def _decode_login(body: bytes) -> Login:
    name, offset = _read_string(body, 0)
    _check_name(name)
    _at_least(body, offset + 4, "LOGIN")
    (token,) = _U32.unpack_from(body, offset)
    offset += 4
    if len(body) < offset + 2:
        return Login(name, token)
    (proof_len,) = _U16.unpack_from(body, offset)
    proof = body[offset + 2:offset + 2 + proof_len]
    if len(proof) != proof_len:
        return Login(name, token)
    return Login(name, token, proof)


def _decode_empty(value):
    def decode(body: bytes):
        return value
    return decode


def _decode_room(kind):
    def decode(body: bytes):
        _at_least(body, 2, kind.__name__)
        return kind(_U16.unpack_from(body)[0])
    return decode


def _decode_chat_send(body: bytes) -> ChatSend:
    _at_least(body, 4, "CHAT_SEND")
    room, length = _ROOM_AND_LENGTH.unpack_from(body)
    if length > MAX_CHAT_MESSAGE:
        raise BadBody(f"chat message over {MAX_CHAT_MESSAGE} bytes")
    _at_least(body, 4 + length, "CHAT_SEND")
    return ChatSend(room, body[4:4 + length])


def _decode_amount(kind):
    def decode(body: bytes):
        _at_least(body, 8, kind.__name__)
        return kind(_positive_amount(_I64.unpack_from(body)[0]))
    return decode


def _decode_transfer(body: bytes) -> Transfer:
    _at_least(body, 12, "Transfer")
    to_user_id, amount = _TRANSFER.unpack_from(body)
    return Transfer(to_user_id, _positive_amount(amount))


def _decode_txn_history(body: bytes) -> TxnHistory:
    if not body:
        return TxnHistory()
    _at_least(body, _HISTORY_REQUEST.size, "TxnHistory")
    limit, before = _HISTORY_REQUEST.unpack_from(body)
    if not 1 <= limit <= MAX_HISTORY_LIMIT:
        raise BadBody(f"history limit must be 1..{MAX_HISTORY_LIMIT}")
    return TxnHistory(limit, before)


_REQUEST_DECODERS: dict[int, Callable[[bytes], object]] = {
    Opcode.HELLO: _decode_hello,
    Opcode.LOGIN: _decode_login,
    Opcode.LOGOUT: _decode_empty(Logout()),
    Opcode.HEARTBEAT: _decode_empty(Heartbeat()),
    Opcode.JOIN_ROOM: _decode_room(JoinRoom),
    Opcode.LEAVE_ROOM: _decode_room(LeaveRoom),
    Opcode.CHAT_SEND: _decode_chat_send,
    Opcode.DEPOSIT: _decode_amount(Deposit),
    Opcode.WITHDRAW: _decode_amount(Withdraw),
    Opcode.TRANSFER: _decode_transfer,
    Opcode.BALANCE: _decode_empty(Balance()),
    Opcode.TXN_HISTORY: _decode_txn_history,
}


def decode_request(opcode: int, body: bytes):
    """
    Decode a request body into its value type.

    @raise UnknownOpcode: for an opcode that is not a request.
    @raise BadBody: for a body that does not parse.
    """
    decoder = _REQUEST_DECODERS.get(opcode)
    if decoder is None:
        raise UnknownOpcode(f"unknown request opcode {opcode:#06x}")
    return decoder(body)


# Request encoders (for clients) ------------------------------------------

def encode_request(request) -> tuple[int, bytes]:
    """Return C{(opcode, body)} for a request value."""
    return _REQUEST_ENCODERS[type(request)](request)


def _encode_login(login: Login) -> bytes:
    body = _encode_string(login.name) + _U32.pack(login.token)
    if login.proof is not None:
        body += _U16.pack(len(login.proof)) + login.proof
    return body


_REQUEST_ENCODERS = {
    Hello: lambda r: (Opcode.HELLO, b"" if r.auth_name is None else _encode_string(r.auth_name)),
    Login: lambda r: (Opcode.LOGIN, _encode_login(r)),
    Logout: lambda r: (Opcode.LOGOUT, b""),
    Heartbeat: lambda r: (Opcode.HEARTBEAT, b""),
    JoinRoom: lambda r: (Opcode.JOIN_ROOM, _U16.pack(r.room)),
    LeaveRoom: lambda r: (Opcode.LEAVE_ROOM, _U16.pack(r.room)),
    ChatSend: lambda r: (Opcode.CHAT_SEND, _ROOM_AND_LENGTH.pack(r.room, len(r.message)) + r.message),
    Deposit: lambda r: (Opcode.DEPOSIT, _I64.pack(r.amount)),
    Withdraw: lambda r: (Opcode.WITHDRAW, _I64.pack(r.amount)),
    Transfer: lambda r: (Opcode.TRANSFER, _TRANSFER.pack(r.to_user_id, r.amount)),
    Balance: lambda r: (Opcode.BALANCE, b""),
    TxnHistory: lambda r: (Opcode.TXN_HISTORY, _HISTORY_REQUEST.pack(r.limit, r.before_txn_id)),
}


# Response bodies ---------------------------------------------------------

def encode_hello_reply(reply: HelloReply) -> bytes:
    body = _U64.pack(reply.nonce)
    if reply.auth is not None:
        auth = reply.auth
        body += _AUTH_PARAMS.pack(KDF_ARGON2ID, auth.time_cost, auth.memory_cost_kib,
                                  auth.parallelism, len(auth.salt)) + auth.salt
    return body


def decode_hello_reply(body: bytes) -> HelloReply:
    if len(body) < 8:
        raise BadBody("HELLO reply shorter than its nonce")
    (nonce,) = _U64.unpack_from(body)
    if len(body) == 8:
        return HelloReply(nonce)
    if len(body) < 8 + _AUTH_PARAMS.size:
        raise BadBody("truncated auth parameters")
    kdf, time_cost, memory_kib, parallelism, salt_len = _AUTH_PARAMS.unpack_from(body, 8)
    salt = body[8 + _AUTH_PARAMS.size:]
    if kdf != KDF_ARGON2ID or len(salt) != salt_len:
        raise BadBody("unsupported or malformed auth parameters")
    return HelloReply(nonce, AuthParams(salt, time_cost, memory_kib, parallelism))


def encode_login_reply(reply: LoginReply) -> bytes:
    return _LOGIN_REPLY.pack(reply.user_id, reply.balance)


def decode_login_reply(body: bytes) -> LoginReply:
    _exact(body, _LOGIN_REPLY.size, "LOGIN reply")
    return LoginReply(*_LOGIN_REPLY.unpack(body))


def encode_balance(balance: int) -> bytes:
    """Body of DEPOSIT/WITHDRAW/TRANSFER/BALANCE replies and of INSUFFICIENT_FUNDS."""
    return _I64.pack(balance)


def decode_balance(body: bytes) -> int:
    _exact(body, 8, "balance")
    return _I64.unpack(body)[0]


def encode_chat_broadcast(push: ChatBroadcast) -> bytes:
    return _PUSH_HEADER.pack(push.room, push.from_user_id, len(push.message)) + push.message


def decode_chat_broadcast(body: bytes) -> ChatBroadcast:
    if len(body) < _PUSH_HEADER.size:
        raise BadBody("truncated CHAT_BROADCAST")
    room, from_user_id, length = _PUSH_HEADER.unpack_from(body)
    if len(body) != _PUSH_HEADER.size + length:
        raise BadBody("CHAT_BROADCAST length does not match body")
    return ChatBroadcast(room, from_user_id, body[_PUSH_HEADER.size:])


def encode_history(entries) -> bytes:
    parts = [_U16.pack(len(entries))]
    for entry in entries:
        parts.append(_HISTORY_ENTRY.pack(
            entry.txn_id, TxnKind.BY_NAME[entry.kind],
            NO_COUNTERPARTY if entry.counterparty is None else entry.counterparty,
            entry.amount, entry.balance_after, entry.timestamp_ms))
    return b"".join(parts)


def decode_history(body: bytes) -> tuple[HistoryEntry, ...]:
    if len(body) < 2:
        raise BadBody("truncated history count")
    (count,) = _U16.unpack_from(body)
    if len(body) != 2 + count * _HISTORY_ENTRY.size:
        raise BadBody("history length does not match count")
    entries = []
    for index in range(count):
        txn_id, kind, counterparty, amount, balance_after, timestamp_ms = (
            _HISTORY_ENTRY.unpack_from(body, 2 + index * _HISTORY_ENTRY.size))
        if kind not in TxnKind.BY_CODE:
            raise BadBody(f"unknown transaction kind {kind}")
        entries.append(HistoryEntry(
            txn_id, TxnKind.BY_CODE[kind],
            None if counterparty == NO_COUNTERPARTY else counterparty,
            amount, balance_after, timestamp_ms))
    return tuple(entries)
