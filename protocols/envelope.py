"""
The marketplace's JSON envelope (``docs/protocols/market.md``), as pure functions.

Request:  ``{"type":"request","api":NAME,"session_id":ID|null,"payload":{...}}``
Success:  ``{"type":"response","api":NAME,"session_id":ID|null,"payload":{...}}``
Error:    ``{"type":"error","api":NAME,"session_id":ID,"error":{"code":C,"message":M}}``

Money must stay exact, so JSON numbers with a fraction or exponent decode to
``decimal.Decimal`` (never ``float``), and a ``Decimal`` in an outgoing payload
is written as a plain JSON number with exactly its digits.  NaN and Infinity
are rejected in both directions.

Strings must be valid Unicode: a ``\\ud800`` escape with no partner (a lone
UTF-16 surrogate) is malformed JSON, since it cannot be written as UTF-8 --
not in an error reply echoing it, nor anywhere a stored value is sent on.
"""

import functools
import json
import re
import uuid
from decimal import Decimal

import attrs

BAD_REQUEST = "BAD_REQUEST"


@attrs.frozen
class Request:
    """
    A well-formed request: ``api`` and ``payload`` are present and typed.
    ``peer`` is the address it came from when the server knows it (for
    limits per client), never part of the wire.
    """

    api: str
    session_id: str | None
    payload: dict
    peer: str | None = None


@attrs.frozen
class Reply:
    """A success reply as a client sees it."""

    api: str | None
    session_id: str | None
    payload: dict


@attrs.frozen
class ErrorReply:
    """An error reply as a client sees it."""

    api: str | None
    session_id: str | None
    code: str
    message: str


class EnvelopeError(Exception):
    """
    A frame that is not a valid envelope.

    Carries whatever ``api`` and ``session_id`` could be read, so the error
    reply can echo them as ``docs/protocols/market.md`` says.
    """

    def __init__(self, code: str, message: str, api=None, session_id=None):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.api = api
        self.session_id = session_id


def _reject_constant(name):
    raise ValueError(f"{name} is not a valid JSON number")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)

#: A ``\uD...`` escape, the only way a surrogate can get into a decoded string
#: (UTF-8 input cannot carry one).  An escaped backslash before ``ud`` also
#: matches; that only costs a needless check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(document) -> str | None:
    """
    The first surrogate code point left in any string (key or value) of a
    decoded document, or None.  The decoder joins escaped pairs into one
    character, so any surrogate left over has no partner.  Iterative: the
    document may be nested as deeply as the decoder allows.
    """
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found:
                return found.group()
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


def decode_json(data: bytes):
    """
    Decode a JSON document exactly (``Decimal`` for fractions) or raise ``ValueError``.

    Covers every way a hostile frame can fail: bad UTF-8, bad syntax,
    NaN/Infinity, integers too long to convert, nesting too deep to recurse,
    lone surrogates.  Only frames with a ``\\uD`` escape are searched for
    surrogates, so ordinary frames pay nothing for the check.
    """
    try:
        document = _DECODER.decode(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 ({e.reason} at byte {e.start})") from None
    if _SURROGATE_ESCAPE.search(data):
        surrogate = _lone_surrogate(document)
        if surrogate is not None:
            raise ValueError(f"a string holds the lone surrogate \\u{ord(surrogate):04x}, "
                             "which is not Unicode text")
    return document


def _decode_object(data: bytes, malformed: str, not_an_object: str) -> dict:
    """One JSON object from a frame, or ``EnvelopeError(BAD_REQUEST)`` saying why not."""
    try:
        envelope = decode_json(data)
    except ValueError as e:
        raise EnvelopeError(BAD_REQUEST, f"{malformed}: {e}") from None
    if not isinstance(envelope, dict):
        raise EnvelopeError(BAD_REQUEST, not_an_object)
    return envelope


def _optional_text(envelope, key):
    value = envelope.get(key)
    return value if isinstance(value, str) else None


def _sent_session_id(envelope):
    """
    The ``session_id`` to echo in an error reply: as sent (the envelope's
    "as sent") when it is a JSON scalar, even a wrongly typed one such as
    ``42``; None for an object or an array, which would make the reply as big
    as the request.
    """
    value = envelope.get("session_id")
    return value if isinstance(value, (str, int, Decimal)) else None


def parse_request(data: bytes, peer: str | None = None) -> Request:
    """
    Parse one frame (from ``peer``) into a ``Request`` or raise
    ``EnvelopeError(BAD_REQUEST, ...)``.
    """
    envelope = _decode_object(data, "malformed JSON", "the request must be a JSON object")
    api = _optional_text(envelope, "api")
    session_id = envelope.get("session_id")
    echo = {"api": api, "session_id": _sent_session_id(envelope)}
    if envelope.get("type") != "request":
        raise EnvelopeError(BAD_REQUEST, 'field "type" must be "request"', **echo)
    if not api:
        raise EnvelopeError(BAD_REQUEST, 'field "api" must be a non-empty string', **echo)
    if "payload" not in envelope:
        raise EnvelopeError(BAD_REQUEST, 'field "payload" is missing', **echo)
    payload = envelope["payload"]
    if not isinstance(payload, dict):
        raise EnvelopeError(BAD_REQUEST, 'field "payload" must be an object', **echo)
    if session_id is not None and not isinstance(session_id, str):
        raise EnvelopeError(BAD_REQUEST, 'field "session_id" must be a string or null', **echo)
    return Request(api, session_id, payload, peer)


class _NotAFloat(Exception):
    """A Decimal whose digits no float reproduces; see ``encode_json``."""


def _as_float(value):
    """
    ``json`` hook for ``Decimal``: an ``int``, or a ``float`` whose shortest
    repr is exactly the Decimal's digits (true for every amount with up to 15
    significant digits, so for all ordinary money).  Anything else raises.

    Only integers below 10**18 become ``int``: a hostile ``1E+999999999``
    must never be expanded into a billion digits.
    """
    if not isinstance(value, Decimal):
        raise TypeError(f"{type(value).__name__} cannot be sent as JSON")
    if not value.is_finite():
        raise ValueError(f"{value} cannot be sent as JSON")
    if value.adjusted() < 18 and value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    if Decimal(repr(as_float)) != value:
        raise _NotAFloat()
    return as_float


_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_as_float
)


def _encode_exact_text(document) -> str:
    """
    The slow path for Decimals a float cannot reproduce (too many digits, or
    an exponent out of a float's range): each is first written as a unique
    placeholder string, then replaced by ``str(value)`` -- digits with an
    optional ``E`` exponent, which is JSON number syntax -- so the number is
    exact whatever its size, without ever being expanded.
    """
    token = uuid.uuid4().hex
    numbers = {}

    def placeholder(value):
        try:
            return _as_float(value)
        except _NotAFloat:
            key = f"{token}:{len(numbers)}"
            numbers[f'"{key}"'] = str(value)
            return key

    text = json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=placeholder
    ).encode(document)
    for quoted, digits in numbers.items():
        text = text.replace(quoted, digits)
    return text


def encode_json(document) -> bytes:
    """
    Compact UTF-8 JSON; ``Decimal`` written exactly; NaN/Infinity refused.

    A lone surrogate (which ``decode_json`` refuses, but a string may come
    from elsewhere) never makes encoding fail: non-ASCII characters only
    occur inside JSON strings, where ``backslashreplace`` writes it as the
    ``\\ud800`` escape it stands for, so the output is valid UTF-8 and JSON.
    """
    try:
        text = _ENCODER.encode(document)
    except _NotAFloat:
        text = _encode_exact_text(document)
    return text.encode("utf-8", "backslashreplace")


def encode_request(api: str, session_id: str | None, payload: dict) -> bytes:
    """Encode a request envelope (used by clients)."""
    return encode_json(
        {"type": "request", "api": api, "session_id": session_id, "payload": payload}
    )


class EncodedPayload(bytes):
    """
    A payload that is already one encoded JSON object.

    ``encode_response`` writes it as it is, and ``parse_reply_encoded`` hands
    a reply's payload over this way, so a service can pass on another
    service's payload -- a front end forwarding product-db's item lists --
    without decoding and re-encoding it.
    """


@functools.lru_cache(maxsize=64)
def _response_head(api: str | None, session_id: str | None) -> bytes:
    """What ``encode_response`` writes before the payload (whose closing brace ends the reply)."""
    head = encode_json({"type": "response", "api": api, "session_id": session_id})
    return head[:-1] + b',"payload":'


def encode_response(api: str | None, session_id: str | None, payload) -> bytes:
    """Encode a success reply; ``payload`` is a dict or an ``EncodedPayload``."""
    if isinstance(payload, EncodedPayload):
        return _response_head(api, session_id) + payload + b"}"
    return encode_json(
        {"type": "response", "api": api, "session_id": session_id, "payload": payload}
    )


def encode_error(api: str | None, session_id: str | None, code: str, message: str,
                 fields: dict | None = None) -> bytes:
    """Encode an error reply; ``fields`` are extra members of its error object."""
    return encode_json(
        {
            "type": "error",
            "api": api,
            "session_id": session_id,
            "error": {**(fields or {}), "code": code, "message": message},
        }
    )


def parse_reply(data: bytes) -> Reply | ErrorReply:
    """
    Parse a server's reply (used by clients).

    Raises ``EnvelopeError`` when the frame is not a valid reply, which a
    client should treat as a broken peer.
    """
    envelope = _decode_object(data, "malformed JSON in reply", "the reply is not a JSON object")
    api = _optional_text(envelope, "api")
    session_id = _optional_text(envelope, "session_id")
    kind = envelope.get("type")
    if kind == "response" and isinstance(envelope.get("payload"), dict):
        return Reply(api, session_id, envelope["payload"])
    error = envelope.get("error")
    if (
        kind == "error"
        and isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
    ):
        return ErrorReply(api, session_id, error["code"], error["message"])
    raise EnvelopeError(BAD_REQUEST, "the reply is neither a response nor an error")


def parse_reply_encoded(data: bytes, api: str) -> Reply | ErrorReply:
    """
    ``parse_reply`` for a caller that passes the payload on unread: a success
    reply's payload comes back as an ``EncodedPayload``.

    A reply to ``api`` laid out exactly as ``encode_response`` writes it
    (without a session id), as our services' replies are, is not decoded at
    all -- its payload bytes are taken as they are, trusting the service that
    wrote them.  Any other reply is parsed in full, and a success payload
    re-encoded.
    """
    head = _response_head(api, None)
    if data.startswith(head) and data.endswith(b"}") and data[len(head) : len(head) + 1] == b"{":
        return Reply(api, None, EncodedPayload(data[len(head) : -1]))
    reply = parse_reply(data)
    if isinstance(reply, Reply):
        return attrs.evolve(reply, payload=EncodedPayload(encode_json(reply.payload)))
    return reply
