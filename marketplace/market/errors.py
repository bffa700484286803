"""
The marketplace's errors: the envelope's wire errors, and the domain's
refinements of them.

The wire errors (``ApiError`` and its codes) live with the wire format in
``protocols.envelope_errors``, so that the protocol layer never imports this
system; they are re-exported here so that every service names its errors
from one place.  The refinements below keep the existing clients'
``CLIENT_ERROR`` code and say what happened in the message.
"""

from protocols.envelope_errors import (
    ApiError,
    BadRequest,
    ClientError,
    FrameTooLarge,
    NotFound,
    ServerError,
    ServiceUnavailable,
    Timeout,
    error_for_code,
)

__all__ = [
    "ApiError",
    "BadRequest",
    "ClientError",
    "FrameTooLarge",
    "NotFound",
    "ServerError",
    "ServiceUnavailable",
    "Timeout",
    "error_for_code",
    "Forbidden",
    "InvalidSession",
]


class InvalidSession(ClientError):
    """The session id is unknown, logged out or expired after inactivity."""

    default_message = "invalid or expired session; log in again"


class Forbidden(ClientError):
    """The session's role or the caller's ownership does not allow this call."""

    default_message = "not allowed for this account"
