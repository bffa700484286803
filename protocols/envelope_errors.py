# -*- test-case-name: tests.market.test_envelope_server -*-
"""
The JSON envelope's error replies and their wire codes.

They belong to the wire format, not to one system: every service raises
these (or the domain's refinements of them in ``marketplace.market.errors``),
the envelope server turns them into error replies and ``rpc`` turns error
replies back into them, so one code means the same thing on every hop.  The
codes we add to the existing clients' four only appear where an existing
system would have dropped the connection or hung.
"""


class ApiError(Exception):
    """
    An error reply: ``code`` for programs, ``message`` for people.

    ``fields`` are written into the reply's error object beside ``code`` and
    ``message`` (MakePurchase's ``idempotency_key``); clients that know only
    the two read past them.
    """

    code = "SERVER_ERROR"
    default_message = "internal server error"

    def __init__(self, message: str | None = None, **fields):
        self.message = message if message is not None else self.default_message
        self.fields = fields
        super().__init__(self.message)

    def __repr__(self):
        return f"{type(self).__name__}({self.message!r})"


class BadRequest(ApiError):
    """The frame is not a valid request envelope (bad JSON, wrong types)."""

    code = "BAD_REQUEST"
    default_message = "malformed request"


class NotFound(ApiError):
    """The api name is unknown to this service."""

    code = "404_NOT_FOUND"
    default_message = "unknown api"


class ClientError(ApiError):
    """Validation failures and business rules (the caller must change something)."""

    code = "CLIENT_ERROR"
    default_message = "request refused"


class ServerError(ApiError):
    """An unexpected failure inside the service (logged there)."""

    code = "SERVER_ERROR"
    default_message = "internal server error"


class ServiceUnavailable(ApiError):
    """A service this call depends on cannot be reached or did not answer in time."""

    code = "SERVICE_UNAVAILABLE"
    default_message = "a backing service is unavailable; try again shortly"


class Timeout(ApiError):
    """The request (or a partly received frame) took longer than the server allows."""

    code = "TIMEOUT"
    default_message = "the request timed out"


class FrameTooLarge(ApiError):
    """A frame exceeded the maximum frame size; it was discarded unread."""

    code = "FRAME_TOO_LARGE"
    default_message = "frame too large"


_BY_CODE = {
    cls.code: cls
    for cls in (BadRequest, NotFound, ClientError, ServerError, ServiceUnavailable, Timeout, FrameTooLarge)
}


def error_for_code(code: str, message: str) -> ApiError:
    """
    Rebuild the error a peer sent; an unknown code keeps its code on an ``ApiError``.

    Keeping unknown codes lets a front end pass a DB service's error through
    unchanged even if it is newer than the front end.
    """
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    error = ApiError(message)
    error.code = code
    return error
