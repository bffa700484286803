"""
What every marketplace service has in common on the server side: turning a
table of handlers into the ``dispatch`` callable the envelope server calls,
mapping store refusals to API errors in one table, and letting in only
callers that prove the deployment's shared secret.

A handler takes the ``Request`` and returns a Deferred firing with
``(session_id, payload)``; it may fail with an ``ApiError`` or a store error.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from marketplace.market.errors import ApiError, ClientError, ServiceUnavailable
from marketplace.market.rpc import SERVICE_LINK
from marketplace.store import LedgerError, StoreUnavailable
from marketplace.store import market_errors as refusals
from protocols.envelope_server import api_router
from protocols.peerauth import AuthenticatingFactory

log = Logger()

#: Seconds between two log lines about refused callers (each one is counted).
REFUSAL_LOG_INTERVAL = 10.0


def _stock_message(error: refusals.StockTooLow) -> str:
    return f"item {error.item_id}: only {error.available} unit(s) available"


#: Store refusal -> the client error a caller sees (message from the refusal or the function).
_REFUSALS = (
    (refusals.StockTooLow, _stock_message),
    (refusals.StockTooHigh, lambda e: f"item {e.item_id}: at most {e.limit} unit(s) may be in stock"),
    (refusals.NotInCart, lambda e: f"the cart holds only {e.in_cart} unit(s) of item {e.item_id}"),
    (refusals.UnknownItem, str),
    (refusals.UnknownUser, str),
    (refusals.UsernameTaken, str),
    (refusals.NotOwner, str),
    (refusals.NotPurchased, lambda e: "feedback is only possible for items you bought"),
    (refusals.ReservationClosed, str),
    (LedgerError, lambda e: f"payment refused: {e}"),
)


def api_error(failure):
    """Translate a store failure into the API error the caller should see."""
    if failure.check(ApiError):
        return failure
    if failure.check(StoreUnavailable):
        raise ServiceUnavailable(f"the store is unavailable: {failure.getErrorMessage()}")
    for kind, message in _REFUSALS:
        if failure.check(kind):
            raise ClientError(message(failure.value))
    # Anything else (a StoreError among them) is a bug: the envelope server
    # logs it once, counts it and answers SERVER_ERROR.
    return failure


def make_dispatch(handlers: dict):
    """
    The envelope server's ``dispatch`` for a table of handlers, with store
    refusals and unavailability translated to API errors.
    """
    route = api_router(handlers)

    def dispatch(request):
        return defer.maybeDeferred(route, request).addErrback(api_error)

    return dispatch


class _RefusalLog:
    """
    Counts every caller refused for not proving the secret (``auth_refusals``)
    and logs them at most once per :data:`REFUSAL_LOG_INTERVAL`, so a flood of
    refused connections cannot flood the log.
    """

    def __init__(self, name, counters, clock):
        self._name = name
        self._counters = counters
        self._clock = clock
        self._logged_at = None

    def __call__(self, why):
        self._counters.increment("auth_refusals")
        now = self._clock.seconds()
        if self._logged_at is None or now - self._logged_at >= REFUSAL_LOG_INTERVAL:
            self._logged_at = now
            log.warn("{service} refused a caller without the service secret ({why}); "
                     "{count} refused so far", service=self._name, why=why,
                     count=self._counters.counts["auth_refusals"])


def authenticated(factory, name, secret, clock):
    """
    ``factory`` (an ``EnvelopeServerFactory``) behind the service-link
    handshake: a caller that does not prove ``secret`` is disconnected
    before the service reads a byte from it, and counted in the factory's
    counters as ``auth_refusals``.
    """
    return AuthenticatingFactory(factory, secret, SERVICE_LINK, clock,
                                 on_refused=_RefusalLog(name, factory.counters, clock))
