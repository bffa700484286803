# -*- test-case-name: tests.market.test_owed -*-
"""
Recording the purchases whose front end could not: no money taken without
the purchase in the buyer's history.

A purchase is final once product-db commits its stock; the front end then
records it in customer-db (history, items bought and sold, the bought units
out of the carts).  If customer-db cannot be reached for longer than the
front end's retries, the buyer gets an error, and a buyer who never retries
would leave a purchase that was paid for and never recorded.  So a commit
names its buyer, and product-db lists the purchase as owing its record until
a front end says it is made (``RecordDone``).  Every buyer front end sweeps
the records owed for longer than L{GRACE} -- past the moment the front end
that committed one has recorded it or given up -- and records each
without a session (``RecordOwedPurchase``: the active cart is left as it
is, the saved cart loses the bought units).  Every step is idempotent per
purchase id, so any number of front ends may sweep at once.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from marketplace.market.errors import ClientError
from marketplace.market.front import payload_of
from marketplace.market.internal import owed_from_payload, owed_to_payload
from marketplace.market.periodic import in_batches
from marketplace.metrics import Counters

log = Logger()

#: Seconds a purchase's record is left to the front end that committed it:
#: well above the longest that takes (a RecordPurchase, at most about 3 x
#: the front ends' 2-second call timeout with its retries).  A sweep that
#: came first would do no harm -- the front end's own record would then
#: take the bought units out of the active cart, and do no more -- only
#: the work twice.
GRACE = 60

#: Owed records taken per request to product-db, and requests per sweep.
OWED_BATCH = 100
BATCHES_PER_SWEEP = 10


class OwedRecords:
    def __init__(self, customer_db, product_db, counters: Counters | None = None):
        self._customer_db = customer_db
        self._product_db = product_db
        #: ``sweep_records_made`` and ``sweep_records_refused``, counted by the sweep.
        self.counters = Counters() if counters is None else counters

    def done(self, purchase_id: str):
        """Tell product-db the purchase is recorded; a Deferred."""
        return self._product_db.call("RecordDone", {"purchase_id": purchase_id},
                                     idempotent=True)

    def sweep(self):
        """Record the purchases product-db lists as owed, a batch at a time."""
        return in_batches(self._due, self._record_then_forget, OWED_BATCH, BATCHES_PER_SWEEP)

    def _due(self):
        listed = payload_of(self._product_db.call(
            "OwedRecords", {"limit": OWED_BATCH, "older_than": GRACE}, idempotent=True))
        return listed.addCallback(lambda reply: reply["records"])

    @defer.inlineCallbacks
    def _record_then_forget(self, payload):
        owed = owed_from_payload(payload)
        try:
            reply = yield payload_of(self._customer_db.call(
                "RecordOwedPurchase", owed_to_payload(owed), idempotent=True))
        except ClientError as refused:
            # It stays owed, and the rest go on.
            self.counters.increment("sweep_records_refused")
            log.warn("recording purchase {purchase} of buyer {buyer} was refused: {why}",
                     purchase=owed.purchase_id, buyer=owed.buyer_id, why=refused.message)
            return
        if reply["recorded"]:
            # Rare (customer-db was out of reach), and worth an operator's eye.
            self.counters.increment("sweep_records_made")
            log.info("recorded purchase {purchase} of buyer {buyer}, which its front end "
                     "could not record", purchase=owed.purchase_id, buyer=owed.buyer_id)
        yield self.done(owed.purchase_id)
