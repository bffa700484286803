"""
Card authorisation: the ``payments`` service's domain.

A card is checked (Luhn, expiry against the injected clock, CVV), then an
approval policy decides.  The policy is a pure function of the request, so a
retried authorisation always gets the same answer; an approved amount is
captured into the store ledger's merchant account under the purchase's
idempotency key, so a retried purchase is charged once and the merchant
balance reconciles with the goods sold.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone

import attrs
from twisted.internet import defer

from marketplace.market import validation
from marketplace.market.errors import ClientError
from marketplace.store import LedgerError

#: The ledger account every approved payment is captured into.
MERCHANT_ACCOUNT = "market:merchant"

_EXPIRY = re.compile(r"^(0[1-9]|1[0-2])/([0-9]{2}|[0-9]{4})$")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


@attrs.frozen
class Card:
    name: str
    number: str
    expiry_month: int
    expiry_year: int
    security_code: str


def card_from_payload(payload: dict, now: float) -> Card:
    """
    The card in a MakePurchase/Authorize payload, or a client error saying
    which field is wrong.  ``now`` (POSIX seconds) decides expiry: a card is
    valid through the last day of its expiry month.
    """
    name = validation.text(payload, "name", max_length=64).strip()
    number = re.sub(r"[ -]", "", str(validation.required(payload, "card_number")))
    if not re.fullmatch(r"[0-9]{12,19}", number) or not luhn_valid(number):
        raise ClientError("'card_number' is not a valid card number")
    expiry = validation.required(payload, "expiration_date")
    match = _EXPIRY.match(expiry.strip()) if isinstance(expiry, str) else None
    if match is None:
        raise ClientError("'expiration_date' must be MM/YY or MM/YYYY")
    month, year = int(match.group(1)), int(match.group(2))
    if year < 100:
        year += 2000
    today = datetime.fromtimestamp(now, tz=timezone.utc)
    if (year, month) < (today.year, today.month):
        raise ClientError("the card has expired")
    code = str(validation.required(payload, "security_code")).strip()
    if not re.fullmatch(r"[0-9]{3,4}", code):
        raise ClientError("'security_code' must be 3 or 4 digits")
    return Card(name, number, month, year, code)


@attrs.frozen
class Decision:
    approved: bool
    reason: str


class ApprovalPolicy:
    """
    Which valid cards are approved, from a ``--approve`` string:

    - ``all``: approve every valid card (the default);
    - ``none``: decline every payment;
    - ``max:CENTS``: approve amounts up to CENTS;
    - ``ratio:F``: approve a fraction F (0..1) of purchases, chosen by a hash
      of the idempotency key, so the same purchase always gets the same answer.
    """

    def __init__(self, spec: str = "all"):
        kind, _, argument = spec.partition(":")
        self.spec = spec
        if kind in ("all", "none") and not argument:
            self._decide = lambda key, amount: Decision(kind == "all", "policy " + kind)
        elif kind == "max" and argument.isdigit():
            limit = int(argument)
            self._decide = lambda key, amount: Decision(
                amount <= limit, f"amount limit is {limit} cents"
            )
        elif kind == "ratio" and _is_fraction(argument):
            threshold = int(float(argument) * 10_000)
            self._decide = lambda key, amount: Decision(
                _bucket(key) < threshold, "declined by the issuer"
            )
        else:
            raise ValueError(f"unknown approval policy {spec!r}: use all, none, max:CENTS or ratio:F")

    def decide(self, idempotency_key: str, amount_cents: int) -> Decision:
        return self._decide(idempotency_key, amount_cents)


def _is_fraction(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


def _bucket(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 10_000


class PaymentsService:
    """
    The ``payments`` DB-side service.

    ``Authorize``: payload ``purchase_id``, ``attempt`` (the reservation
    attempt the payment is for), ``amount_cents`` and the card fields of
    MakePurchase.  Reply: ``approved``, ``reason`` and, when approved,
    ``captured_cents``.  The policy decides on the purchase; the capture is
    keyed by purchase and attempt, so a retried authorisation captures once.

    ``Void``: payload ``purchase_id``, ``attempt``, ``amount_cents``.  Undoes
    the attempt's payment, whether or not it was ever taken: the capture is
    made (a no-op if it was) and refunded, each once per key.  Net nothing
    is charged, and an ``Authorize`` arriving late for that attempt finds its
    capture done and takes no money.  Reply: ``refunded_cents``.
    """

    def __init__(self, ledger, policy: ApprovalPolicy, clock):
        self._ledger = ledger
        self._policy = policy
        self._clock = clock
        self._merchant_open = False

    def dispatch_table(self) -> dict:
        return {"Authorize": self.authorize, "Void": self.void}

    def authorize(self, request):
        payload = request.payload
        purchase_id, attempt, amount = _payment_of(payload)
        card_from_payload(payload, self._clock.seconds())
        decision = self._policy.decide(purchase_id, amount)
        if not decision.approved:
            return _reply({"approved": False, "reason": decision.reason})
        if amount == 0:
            return _reply({"approved": True, "reason": "nothing to charge", "captured_cents": 0})
        d = self._capture(_capture_key(purchase_id, attempt), amount)
        d.addCallback(lambda _: (None, {"approved": True, "reason": "approved", "captured_cents": amount}))
        return d

    def void(self, request):
        purchase_id, attempt, amount = _payment_of(request.payload)
        if amount == 0:
            return _reply({"refunded_cents": 0})
        d = self._capture(_capture_key(purchase_id, attempt), amount)

        def refund(_):
            return self._ledger.withdraw(MERCHANT_ACCOUNT, amount,
                                         idempotency_key=f"void:{purchase_id}#{attempt}")

        def nothing_captured(failure):
            # The key's outcome is a refused capture (say the account was
            # full): no money was taken under it, and none will be.
            failure.trap(LedgerError)
            return None

        d.addCallbacks(refund, nothing_captured)
        d.addCallback(lambda refunded: (None, {"refunded_cents": 0 if refunded is None else amount}))
        return d

    def _capture(self, key: str, amount: int):
        """
        Deposit into the merchant account under the payment's key.  The
        account is opened (idempotently) before the first capture, never after
        a failed one: the ledger would replay that failure for the same key.
        """
        if self._merchant_open:
            return self._ledger.deposit(MERCHANT_ACCOUNT, amount, idempotency_key=key)
        d = self._ledger.open_account(MERCHANT_ACCOUNT)

        def opened(_):
            self._merchant_open = True
            return self._capture(key, amount)

        return d.addCallback(opened)


def _payment_of(payload: dict) -> tuple[str, int, int]:
    """``purchase_id``, ``attempt`` and ``amount_cents``, checked."""
    purchase_id = validation.text(payload, "purchase_id", max_length=200)
    attempt = validation.integer(validation.required(payload, "attempt"), "attempt", 1)
    # The same limit as the front end's: the merchant account must not fill up.
    amount = validation.purchase_total(
        validation.integer(validation.required(payload, "amount_cents"), "amount_cents"))
    return purchase_id, attempt, amount


def _capture_key(purchase_id: str, attempt: int) -> str:
    return f"purchase:{purchase_id}#{attempt}"


def _reply(payload: dict):
    return defer.succeed((None, payload))
