# -*- test-case-name: tests.market.test_voids -*-
"""
Voiding the payments of lapsed reservation attempts: no money without stock.

A reservation that is not committed within its lease lapses in product-db:
its units go back on sale, and the attempt is listed as a pending void.
Whatever payment was taken for that attempt -- by a front end that then died,
or that came to commit too late -- is voided at payments (which takes
nothing more for that attempt afterwards), and only then is the void marked
done.  Every step is idempotent, so any number of buyer front ends may sweep
at once, and one that dies halfway leaves the void pending for the next.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from marketplace.market import validation
from marketplace.market.errors import ClientError
from marketplace.market.front import payload_of
from marketplace.market.internal import reservation_from_payload
from marketplace.market.periodic import in_batches
from marketplace.metrics import Counters

log = Logger()

#: Pending voids taken per request to product-db, and requests per sweep.
VOID_BATCH = 100
BATCHES_PER_SWEEP = 10


class PaymentVoids:
    def __init__(self, product_db, payments, counters: Counters | None = None):
        self._product_db = product_db
        self._payments = payments
        #: ``sweep_voids_made`` and ``sweep_voids_refused``, counted by the sweep.
        self.counters = Counters() if counters is None else counters

    def void(self, reservation):
        """Void the payment of one lapsed (or refused) attempt; a Deferred."""
        try:
            amount = validation.purchase_total(reservation.total_cents)
        except ClientError:
            # Payments captures no such total, so nothing was taken.
            return defer.succeed(None)
        return self._payments.call("Void", {
            "purchase_id": reservation.purchase_id, "attempt": reservation.attempt,
            "amount_cents": amount}, idempotent=True)

    def sweep(self):
        """Void the pending attempts product-db lists, a batch at a time."""
        return in_batches(self._pending, self._void_then_forget, VOID_BATCH, BATCHES_PER_SWEEP)

    def _pending(self):
        listed = payload_of(self._product_db.call(
            "PendingVoids", {"limit": VOID_BATCH}, idempotent=True))
        return listed.addCallback(lambda reply: reply["voids"])

    @defer.inlineCallbacks
    def _void_then_forget(self, payload):
        reservation = reservation_from_payload(payload)
        try:
            yield self.void(reservation)
        except ClientError as refused:
            # This one refused (say the merchant account cannot cover the
            # refund): it stays pending, the rest go on.
            self.counters.increment("sweep_voids_refused")
            log.warn("voiding {purchase} #{attempt} was refused: {why}",
                     purchase=reservation.purchase_id, attempt=reservation.attempt,
                     why=refused.message)
            return
        self.counters.increment("sweep_voids_made")
        yield self._product_db.call("VoidDone", {
            "purchase_id": reservation.purchase_id, "attempt": reservation.attempt},
            idempotent=True)
