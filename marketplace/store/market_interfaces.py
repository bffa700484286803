"""
The marketplace's store domains: ``customers`` (behind customer-db) and
``catalog`` (behind product-db).

Every method returns a Deferred.  Each method is one atomic step in the store
(one Lua script on Redis), so a rule that spans several keys -- stock never
below zero, feedback once per purchased item, a purchase recorded once per
idempotency key -- holds under any interleaving of callers and processes.
Both backends pass ``tests/market/test_store_contract.py``.
"""

from zope.interface import Interface


class ICustomerStore(Interface):
    """Accounts, carts, purchase history and ratings."""

    def create_user(role, username, password_hash):
        """@return: the new user id (int); fails with UsernameTaken."""

    def credentials(role, username):
        """@return: L{Credentials}; fails with UnknownUser."""

    def replace_password_hash(role, user_id, old_hash, new_hash):
        """
        Store ``new_hash`` if the user's hash still is ``old_hash``.

        @return: whether it was replaced; fails with UnknownUser.
        """

    def profile(role, user_id):
        """@return: the user's L{Profile}; fails with UnknownUser."""

    def cart(session_id):
        """@return: the session's active cart as {item_id: quantity}."""

    def revised_cart(session_id):
        """
        @return: the session's active cart with its revision, read at once
            (L{RevisedCart}).  Every change of the cart's lines (adding,
            removing, the restore at login, a purchase leaving lines behind)
            gives it a revision no cart ever had.
        """

    def cart_add(session_id, item_id, quantity, limit, ttl):
        """
        Add units unless the cart would then hold more than ``limit`` (the
        stock); the cart lives ``ttl`` seconds after its last use.

        @return: the new quantity in the cart; fails with StockTooLow whose
            ``available`` is what the cart may still take.
        """

    def cart_remove(session_id, item_id, quantity, ttl):
        """@return: the units left; fails with NotInCart."""

    def cart_clear(session_id):
        """Empty the session's active cart."""

    def cart_touch(session_id, ttl):
        """Slide the active cart's expiry along with its session's."""

    def cart_save(session_id, buyer_id):
        """Make the active cart the buyer's saved cart (an empty one clears it)."""

    def cart_restore(session_id, buyer_id, ttl):
        """Copy the buyer's saved cart into a new session's active cart."""

    def cart_drop(session_id):
        """Forget the session's active cart (logout); the saved cart stays."""

    def record_purchase(purchase_id, buyer_id, session_id, lines, purchased_at):
        """
        Record a committed purchase once per ``purchase_id``: history lines,
        buyer items-bought, each seller's items-sold, the items the buyer may
        rate, and the bought units taken out of the session's active cart and
        out of the buyer's saved cart (a later login must not bring back
        what was bought, to be bought again).  ``session_id`` None records a
        purchase its front end could not record: no active cart changes
        then, and a later record of it with its session (the buyer's retry)
        takes the units out of that session's active cart, and does no more.

        @return: True if recorded now, False if it already was.
        """

    def purchases(buyer_id, limit):
        """@return: up to ``limit`` L{Purchase} lines, newest first."""

    def record_feedback(buyer_id, item_id, seller_id, positive):
        """
        Count one vote for the seller, once per item the buyer bought.

        Fails with NotPurchased or FeedbackAlreadyGiven.
        """


class ICatalogStore(Interface):
    """Items, stock, the search index, purchase reservations and item feedback."""

    def create_item(seller_id, draft):
        """@return: the new L{Item} with a fresh id."""

    def item(item_id):
        """@return: the L{Item}; fails with UnknownItem."""

    def items_of_seller(seller_id):
        """@return: the seller's items in id order, in stock or not."""

    def set_price(item_id, seller_id, price_cents):
        """@return: the updated L{Item}; fails with UnknownItem or NotOwner."""

    def adjust_stock(item_id, seller_id, change):
        """
        Add ``change`` (signed) to the stock.

        @return: the new quantity; fails with UnknownItem, NotOwner or
            StockTooLow when the stock would go below zero.
        """

    def search(category, keywords, include_out_of_stock, offset, limit):
        """
        Items in ``category`` (None: any) matching any of ``keywords`` (none:
        all of the category), ranked by the rule in L{marketplace.store.market_rules.rank}.

        @return: a L{SearchPage}.
        """

    def reserve(purchase_id, lines, lease):
        """
        Take ``lines`` ((item_id, quantity) pairs; lines naming one item add
        up) out of stock all at once or not at all, for ``lease`` seconds:
        a reservation not committed by then lapses (its units go back, see
        L{expire_leases}).  Repeating a reserved or committed
        ``purchase_id`` returns it unchanged; a released or lapsed one is
        reserved again as the next attempt.  No lines and no live
        reservation fails with ReservationClosed.

        @return: the L{Reservation}; fails with UnknownItem or StockTooLow.
        """

    def commit(purchase_id, attempt, buyer_id=None):
        """
        Make the attempt's reservation final (items' sold counters);
        idempotent.  Fails with ReservationClosed if that attempt was
        released, lapsed (its lease ran out: it lapses now if nothing swept
        it yet) or followed by another.

        With ``buyer_id``, the commit that makes it final also lists the
        purchase in L{owed_records} until L{record_done}: its record in
        customer-db is owed, and made by a sweep if the front end that
        committed it could not make it.
        """

    def release(purchase_id, attempt):
        """
        Put the attempt's units back in stock, for an attempt known to have
        taken no payment; idempotent.  Fails with ReservationClosed if that
        attempt was committed, lapsed or followed by another.
        """

    def expire_leases(limit):
        """
        Lapse up to ``limit`` reservations whose lease ran out: units back
        in stock, the attempt left for L{pending_voids}.

        @return: how many lapsed now.
        """

    def pending_voids(limit):
        """
        @return: up to ``limit`` lapsed attempts (L{Reservation}s in state
            EXPIRED) whose payment, if one was taken, is still to be voided.
        """

    def void_done(purchase_id, attempt):
        """Forget a lapsed attempt once its payment is voided; idempotent."""

    def owed_records(limit, older_than):
        """
        @return: up to ``limit`` L{OwedRecord}s of purchases committed at
            least ``older_than`` seconds ago (on the store's clock), oldest
            first.
        """

    def record_done(purchase_id):
        """Forget an owed record once customer-db has it; idempotent."""

    def item_feedback(item_id, buyer_id, positive):
        """
        Count the buyer's vote on the item once.

        @return: True if counted now, False if this buyer's vote was in already.
        """
