"""
The store contract: every backend must pass these tests unchanged.

A backend's test case mixes :class:`StoreContract` into a trial
``TestCase`` and provides ``make_store()`` (a Deferred firing with a started
store), ``make_store_keeping(retention)`` (the same with a bounded ledger
history), ``corrupt_balance(store, account, change)`` (a write that bypasses
the ledger), ``let_time_pass(seconds)`` and ``short_ttl``.
"""

from __future__ import annotations

from twisted.internet import defer
from zope.interface.verify import verifyObject

from marketplace.store import (
    MAX_BALANCE,
    BalanceOverflow,
    DirectoryFull,
    InsufficientFunds,
    InvalidAmount,
    SelfTransfer,
    SessionNotFound,
    UnknownAccount,
    directory_rules,
)
from marketplace.store.directory_rules import FULL_ID_SPACE, RESERVED_ID, home_slot
from marketplace.store.interfaces import IDirectory, ILedger, ISessionStore, IStore
from marketplace.store.ledger_rules import AGE_CHECKS, HistoryRetention
from marketplace.store.market_interfaces import ICatalogStore, ICustomerStore


class SessionContract:
    @defer.inlineCallbacks
    def test_create_and_touch(self):
        store = yield self.make_store()
        created = yield store.sessions.create("alice", {"role": "buyer"})
        touched = yield store.sessions.touch(created.session_id)
        self.assertEqual(touched.user_id, "alice")
        self.assertEqual(touched.data, {"role": "buyer"})
        self.assertEqual(touched.session_id, created.session_id)

    @defer.inlineCallbacks
    def test_ids_are_unguessable(self):
        store = yield self.make_store()
        ids = set()
        for _ in range(20):
            session = yield store.sessions.create("bob")
            ids.add(session.session_id)
        self.assertEqual(len(ids), 20)
        self.assertTrue(all(len(i) >= 40 for i in ids), ids)

    @defer.inlineCallbacks
    def test_unknown_session(self):
        store = yield self.make_store()
        yield self.assertFailure(store.sessions.touch("no-such-session"), SessionNotFound)

    @defer.inlineCallbacks
    def test_ids_naming_other_keys_are_no_sessions(self):
        store = yield self.make_store()
        yield store.sessions.create("buyer:1")
        for sent in ("user:buyer:1", "", "x" * 43 + ":", 42):
            yield self.assertFailure(store.sessions.touch(sent), SessionNotFound)
            self.assertFalse((yield store.sessions.delete(sent)))

    @defer.inlineCallbacks
    def test_delete(self):
        store = yield self.make_store()
        session = yield store.sessions.create("carol")
        self.assertTrue((yield store.sessions.delete(session.session_id)))
        self.assertFalse((yield store.sessions.delete(session.session_id)))
        yield self.assertFailure(store.sessions.touch(session.session_id), SessionNotFound)

    @defer.inlineCallbacks
    def test_sessions_of_lists_only_that_users_live_sessions(self):
        store = yield self.make_store()
        first = yield store.sessions.create("dave")
        second = yield store.sessions.create("dave")
        yield store.sessions.create("erin")
        gone = yield store.sessions.create("dave")
        yield store.sessions.delete(gone.session_id)
        listed = yield store.sessions.sessions_of("dave")
        self.assertEqual(sorted(s.session_id for s in listed),
                         sorted([first.session_id, second.session_id]))

    @defer.inlineCallbacks
    def test_expiry_slides_on_touch(self):
        store = yield self.make_store()
        ttl = self.short_ttl
        session = yield store.sessions.create("frank", ttl=ttl)
        yield self.let_time_pass(ttl * 0.6)
        yield store.sessions.touch(session.session_id)
        yield self.let_time_pass(ttl * 0.6)
        # 1.2 ttl after creation, alive only because the touch slid it.
        yield store.sessions.touch(session.session_id)
        yield self.let_time_pass(ttl * 1.3)
        yield self.assertFailure(store.sessions.touch(session.session_id), SessionNotFound)
        self.assertEqual((yield store.sessions.sessions_of("frank")), [])


class LedgerContract:
    @defer.inlineCallbacks
    def test_open_account(self):
        store = yield self.make_store()
        self.assertTrue((yield store.ledger.open_account("a", 100)))
        self.assertFalse((yield store.ledger.open_account("a", 999)))
        self.assertEqual((yield store.ledger.balance("a")), 100)

    @defer.inlineCallbacks
    def test_unknown_account(self):
        store = yield self.make_store()
        yield store.ledger.open_account("a", 10)
        yield self.assertFailure(store.ledger.balance("zz"), UnknownAccount)
        yield self.assertFailure(store.ledger.deposit("zz", 1), UnknownAccount)
        yield self.assertFailure(store.ledger.withdraw("zz", 1), UnknownAccount)
        yield self.assertFailure(store.ledger.transfer("a", "zz", 1), UnknownAccount)
        yield self.assertFailure(store.ledger.transfer("zz", "a", 1), UnknownAccount)
        yield self.assertFailure(store.ledger.history("zz"), UnknownAccount)
        self.assertEqual((yield store.ledger.balance("a")), 10)

    @defer.inlineCallbacks
    def test_money_operations(self):
        store = yield self.make_store()
        yield store.ledger.open_account("a", 100)
        yield store.ledger.open_account("b")
        self.assertEqual((yield store.ledger.deposit("a", 50)), 150)
        self.assertEqual((yield store.ledger.withdraw("a", 20)), 130)
        self.assertEqual((yield store.ledger.transfer("a", "b", 30)), 100)
        self.assertEqual((yield store.ledger.balance("b")), 30)

    @defer.inlineCallbacks
    def test_never_negative(self):
        store = yield self.make_store()
        yield store.ledger.open_account("a", 5)
        yield store.ledger.open_account("b")
        error = yield self.assertFailure(store.ledger.withdraw("a", 6), InsufficientFunds)
        self.assertEqual(error.balance, 5)
        error = yield self.assertFailure(store.ledger.transfer("a", "b", 6), InsufficientFunds)
        self.assertEqual(error.balance, 5)
        self.assertEqual((yield store.ledger.withdraw("a", 5)), 0)
        self.assertEqual((yield store.ledger.balance("b")), 0)

    @defer.inlineCallbacks
    def test_whole_balance_can_be_spent(self):
        """Moving exactly the balance leaves zero: the boundary is not a refusal."""
        store = yield self.make_store()
        yield store.ledger.open_account("a", 40)
        yield store.ledger.open_account("b", 7)
        self.assertEqual((yield store.ledger.transfer("a", "b", 40)), 0)
        self.assertEqual((yield store.ledger.balance("b")), 47)
        self.assertEqual((yield store.ledger.withdraw("b", 47)), 0)
        error = yield self.assertFailure(store.ledger.transfer("b", "a", 1), InsufficientFunds)
        self.assertEqual(error.balance, 0)

    @defer.inlineCallbacks
    def test_self_transfer_refused(self):
        store = yield self.make_store()
        yield store.ledger.open_account("a", 5)
        yield self.assertFailure(store.ledger.transfer("a", "a", 1), SelfTransfer)
        self.assertEqual((yield store.ledger.balance("a")), 5)

    @defer.inlineCallbacks
    def test_invalid_amounts(self):
        store = yield self.make_store()
        yield store.ledger.open_account("a", 5)
        yield store.ledger.open_account("b", 5)
        for amount in (0, -1, 1.5, True, "3", MAX_BALANCE + 1, None):
            yield self.assertFailure(store.ledger.deposit("a", amount), InvalidAmount)
            yield self.assertFailure(store.ledger.withdraw("a", amount), InvalidAmount)
            yield self.assertFailure(store.ledger.transfer("a", "b", amount), InvalidAmount)
        yield self.assertFailure(store.ledger.open_account("c", -1), InvalidAmount)
        self.assertEqual((yield store.ledger.balance("a")), 5)

    @defer.inlineCallbacks
    def test_balance_cannot_overflow(self):
        store = yield self.make_store()
        yield store.ledger.open_account("rich", MAX_BALANCE - 10)
        yield store.ledger.open_account("other", 20)
        yield self.assertFailure(store.ledger.deposit("rich", 11), BalanceOverflow)
        yield self.assertFailure(store.ledger.transfer("other", "rich", 11), BalanceOverflow)
        self.assertEqual((yield store.ledger.deposit("rich", 10)), MAX_BALANCE)
        self.assertEqual((yield store.ledger.balance("other")), 20)
        # A transfer may fill the target up to the maximum, too.
        yield store.ledger.withdraw("rich", 5)
        self.assertEqual((yield store.ledger.transfer("other", "rich", 5)), 15)
        self.assertEqual((yield store.ledger.balance("rich")), MAX_BALANCE)

    @defer.inlineCallbacks
    def test_large_balances_are_exact(self):
        store = yield self.make_store()
        yield store.ledger.open_account("big", MAX_BALANCE - 1)
        yield store.ledger.open_account("small")
        self.assertEqual((yield store.ledger.transfer("big", "small", 1)), MAX_BALANCE - 2)
        history = yield store.ledger.history("big")
        self.assertEqual(history[0].balance_after, MAX_BALANCE - 2)
        self.assertTrue((yield store.ledger.audit()).balanced)

    @defer.inlineCallbacks
    def test_history_newest_first_and_paged(self):
        store = yield self.make_store()
        yield store.ledger.open_account("a", 100)
        yield store.ledger.open_account("b")
        yield store.ledger.deposit("a", 10)
        yield store.ledger.withdraw("a", 5)
        yield store.ledger.transfer("a", "b", 7)
        history = yield store.ledger.history("a")
        self.assertEqual([(t.kind, t.counterparty, t.amount, t.balance_after) for t in history], [
            ("transfer_out", "b", -7, 98),
            ("withdraw", None, -5, 105),
            ("deposit", None, 10, 110),
            ("open", None, 100, 100),
        ])
        ids = [t.txn_id for t in history]
        self.assertEqual(ids, sorted(ids, reverse=True))
        page = yield store.ledger.history("a", limit=2)
        self.assertEqual(page, history[:2])
        self.assertEqual((yield store.ledger.history("a", limit=1)), history[:1])
        self.assertEqual((yield store.ledger.history("a", limit=3)), history[:3])
        rest = yield store.ledger.history("a", limit=10, before=page[-1].txn_id)
        self.assertEqual(rest, history[2:])
        received = yield store.ledger.history("b")
        self.assertEqual((received[0].kind, received[0].counterparty, received[0].amount),
                         ("transfer_in", "a", 7))

    @defer.inlineCallbacks
    def test_history_pages_hold_fifty_by_default_and_ids_count_from_one(self):
        """Transaction ids are 1, 2, 3... in the order of the operations: never 0."""
        store = yield self.make_store()
        yield store.ledger.open_account("a", 100)
        for _ in range(51):
            yield store.ledger.deposit("a", 1)
        history = yield store.ledger.history("a")
        self.assertEqual([t.txn_id for t in history], list(range(52, 2, -1)))
        older = yield store.ledger.history("a", before=history[-1].txn_id)
        self.assertEqual([t.txn_id for t in older], [2, 1])

    @defer.inlineCallbacks
    def test_idempotent_retry_applies_once(self):
        store = yield self.make_store()
        yield store.ledger.open_account("a", 100)
        yield store.ledger.open_account("b")
        self.assertEqual((yield store.ledger.transfer("a", "b", 30, idempotency_key="s1:7")), 70)
        self.assertEqual((yield store.ledger.transfer("a", "b", 30, idempotency_key="s1:7")), 70)
        self.assertEqual((yield store.ledger.deposit("a", 5, idempotency_key="s1:8")), 75)
        self.assertEqual((yield store.ledger.deposit("a", 5, idempotency_key="s1:8")), 75)
        self.assertEqual((yield store.ledger.balance("a")), 75)
        self.assertEqual((yield store.ledger.balance("b")), 30)
        # A different key is a different operation.
        self.assertEqual((yield store.ledger.deposit("a", 5, idempotency_key="s1:9")), 80)

    @defer.inlineCallbacks
    def test_idempotent_retry_replays_refusal(self):
        store = yield self.make_store()
        yield store.ledger.open_account("a", 10)
        yield self.assertFailure(store.ledger.withdraw("a", 50, idempotency_key="k"), InsufficientFunds)
        yield store.ledger.deposit("a", 100)
        error = yield self.assertFailure(store.ledger.withdraw("a", 50, idempotency_key="k"),
                                         InsufficientFunds)
        self.assertEqual(error.balance, 10)
        self.assertEqual((yield store.ledger.balance("a")), 110)

    @defer.inlineCallbacks
    def test_idempotent_retry_replays_every_kind_of_refusal(self):
        """
        A refused transfer's retry is refused again with the first outcome
        even once it would succeed, and so is a retry against an account
        that has since been opened.
        """
        store = yield self.make_store()
        yield store.ledger.open_account("a", 10)
        yield store.ledger.open_account("b")
        yield self.assertFailure(store.ledger.transfer("a", "b", 50, idempotency_key="t"),
                                 InsufficientFunds)
        yield self.assertFailure(store.ledger.deposit("c", 5, idempotency_key="u"), UnknownAccount)
        yield store.ledger.deposit("a", 100)
        yield store.ledger.open_account("c")
        error = yield self.assertFailure(
            store.ledger.transfer("a", "b", 50, idempotency_key="t"), InsufficientFunds)
        self.assertEqual(error.balance, 10)
        yield self.assertFailure(store.ledger.deposit("c", 5, idempotency_key="u"), UnknownAccount)
        balances = yield defer.gatherResults([store.ledger.balance(name) for name in "abc"])
        self.assertEqual(balances, [110, 0, 0])

    @defer.inlineCallbacks
    def test_idempotency_outcome_expires_after_its_ttl(self):
        """An outcome is replayed within its lifetime, and forgotten after it."""
        store = yield self.make_store()
        ttl = self.short_ttl
        yield store.ledger.open_account("a", 100)
        yield store.ledger.open_account("b")
        self.assertEqual((yield store.ledger.deposit("a", 5, "s:1", ttl)), 105)
        self.assertEqual((yield store.ledger.withdraw("a", 7, "s:2", ttl)), 98)
        self.assertEqual((yield store.ledger.transfer("a", "b", 8, "s:3", ttl)), 90)
        yield self.let_time_pass(ttl * 0.5)
        self.assertEqual((yield store.ledger.deposit("a", 5, "s:1", ttl)), 105)
        self.assertEqual((yield store.ledger.transfer("a", "b", 8, "s:3", ttl)), 90)
        yield self.let_time_pass(ttl * 2)
        self.assertEqual((yield store.ledger.deposit("a", 5, "s:1", ttl)), 95)
        self.assertEqual((yield store.ledger.withdraw("a", 7, "s:2", ttl)), 88)
        self.assertEqual((yield store.ledger.transfer("a", "b", 8, "s:3", ttl)), 80)

    @defer.inlineCallbacks
    def test_audit_balances(self):
        store = yield self.make_store()
        yield store.ledger.open_account("a", 100)
        yield store.ledger.open_account("b", 50)
        yield store.ledger.deposit("a", 25)
        yield store.ledger.withdraw("b", 10)
        yield store.ledger.transfer("a", "b", 60)
        report = yield store.ledger.audit()
        self.assertTrue(report.balanced, report)
        self.assertEqual((report.accounts, report.balance_total, report.opening_total,
                          report.deposit_total, report.withdrawal_total), (2, 165, 150, 25, 10))

    @defer.inlineCallbacks
    def test_running_totals_cannot_overflow(self):
        """
        Totals grow without bound even while balances stay small: moving
        the largest amount in and out more than 1024 times takes them past
        2**63, and every operation and the audit must still be exact.
        """
        store = yield self.make_store()
        yield store.ledger.open_account("churn", MAX_BALANCE)
        yield store.ledger.open_account("bystander", 100)
        rounds = 1030
        for _ in range(rounds):
            yield store.ledger.withdraw("churn", MAX_BALANCE)
            yield store.ledger.deposit("churn", MAX_BALANCE)
        self.assertEqual((yield store.ledger.deposit("bystander", 1)), 101)
        report = yield store.ledger.audit()
        self.assertTrue(report.balanced, report)
        self.assertEqual((report.opening_total, report.deposit_total, report.withdrawal_total),
                         (MAX_BALANCE + 100, rounds * MAX_BALANCE + 1, rounds * MAX_BALANCE))
        self.assertGreater(report.deposit_total, 2**63)

    @defer.inlineCallbacks
    def test_concurrent_transfers_conserve_money(self):
        """
        Hundreds of concurrent operations from several store clients (separate
        connections, for Redis) among a few accounts: no money is created or
        lost, and no balance goes negative.
        """
        stores = yield self.make_clients(4)
        accounts = [f"acct{i}" for i in range(4)]
        for account in accounts:
            yield stores[0].ledger.open_account(account, 100)
        operations = []
        for i in range(240):
            # Each client's operations draw on every account: a client's
            # commands may reach the backend as one batch, and a batch of
            # debits from one account would mostly be refused.
            ledger = stores[(i // 4) % len(stores)].ledger
            source, target = accounts[i % 4], accounts[(i * 7 + 1) % 4]
            if source == target:
                operations.append(ledger.deposit(source, 1 + i % 5))
            elif i % 11 == 0:
                operations.append(ledger.withdraw(source, 1 + i % 30))
            else:
                operations.append(ledger.transfer(source, target, 1 + i % 40))
        results = yield defer.DeferredList(operations, consumeErrors=True)
        refusals = [r for ok, r in results if not ok]
        for failure in refusals:
            failure.trap(InsufficientFunds)
        self.assertGreater(len(results) - len(refusals), 100)
        report = yield stores[0].ledger.audit()
        self.assertTrue(report.balanced, report)
        balances = yield defer.gatherResults([stores[0].ledger.balance(a) for a in accounts])
        self.assertTrue(all(b >= 0 for b in balances), balances)
        self.assertEqual(sum(balances), report.expected_total)


def _clashing_names(id_space, count, prefix="user"):
    """``count`` names sharing one home slot in ``id_space``, and that slot."""
    by_home = {}
    n = 0
    while True:
        name = f"{prefix}{n}"
        names = by_home.setdefault(home_slot(name, id_space), [])
        names.append(name)
        if len(names) == count:
            return names, home_slot(name, id_space)
        n += 1


class DirectoryContract:
    @defer.inlineCallbacks
    def test_same_name_same_id(self):
        first, second = yield self.make_clients(2)
        user_id = yield first.directory.user_id_for("alice", FULL_ID_SPACE)
        self.assertEqual(user_id, home_slot("alice", FULL_ID_SPACE))
        self.assertEqual((yield first.directory.user_id_for("alice", FULL_ID_SPACE)), user_id)
        self.assertEqual((yield second.directory.user_id_for("alice", FULL_ID_SPACE)), user_id)

    @defer.inlineCallbacks
    def test_names_are_unicode_exact(self):
        store = yield self.make_store()
        name = "j\u00f6rg \u2603"
        self.assertEqual((yield store.directory.user_id_for(name, FULL_ID_SPACE)),
                         home_slot(name, FULL_ID_SPACE))
        self.assertEqual((yield store.directory.user_id_for(name, FULL_ID_SPACE)),
                         home_slot(name, FULL_ID_SPACE))

    @defer.inlineCallbacks
    def test_collisions_probe_to_the_next_free_id(self):
        store = yield self.make_store()
        (a, b, c), home = _clashing_names(8, 3)
        self.assertEqual((yield store.directory.user_id_for(a, 8)), home)
        self.assertEqual((yield store.directory.user_id_for(b, 8)), (home + 1) % 8)
        self.assertEqual((yield store.directory.user_id_for(c, 8)), (home + 2) % 8)
        self.assertEqual((yield store.directory.user_id_for(a, 8)), home)

    @defer.inlineCallbacks
    def test_probing_wraps_around_the_id_space(self):
        self.patch(directory_rules, "fnv1a_32", lambda data: 7)
        store = yield self.make_store()
        ids = []
        for name in ("p", "q", "r"):
            ids.append((yield store.directory.user_id_for(name, 8)))
        self.assertEqual(ids, [7, 0, 1])

    @defer.inlineCallbacks
    def test_probing_in_the_full_id_space(self):
        """Probe lengths are bounded by the ids claimed, not the 2**32 space."""
        self.patch(directory_rules, "fnv1a_32", lambda data: 5)
        store = yield self.make_store()
        ids = []
        for n in range(20):
            ids.append((yield store.directory.user_id_for(f"n{n}", FULL_ID_SPACE)))
        self.assertEqual(ids, list(range(5, 25)))

    @defer.inlineCallbacks
    def test_reserved_id_is_never_given_out(self):
        store = yield self.make_store()
        self.patch(directory_rules, "fnv1a_32", lambda data: RESERVED_ID)
        self.assertEqual((yield store.directory.user_id_for("unlucky", FULL_ID_SPACE)), 0)
        self.assertEqual((yield store.directory.user_id_for("next", FULL_ID_SPACE)), 1)
        self.patch(directory_rules, "fnv1a_32", lambda data: RESERVED_ID - 1)
        self.assertEqual((yield store.directory.user_id_for("top", FULL_ID_SPACE)), RESERVED_ID - 1)
        self.assertEqual((yield store.directory.user_id_for("over", FULL_ID_SPACE)), 2)

    @defer.inlineCallbacks
    def test_full_id_space_is_refused(self):
        store = yield self.make_store()
        ids = set()
        for n in range(4):
            ids.add((yield store.directory.user_id_for(f"n{n}", 4)))
        self.assertEqual(ids, {0, 1, 2, 3})
        yield self.assertFailure(store.directory.user_id_for("one too many", 4), DirectoryFull)
        self.assertIn((yield store.directory.user_id_for("n0", 4)), ids)

    @defer.inlineCallbacks
    def test_id_spaces_are_separate_directories(self):
        store = yield self.make_store()
        for n in range(4):
            yield store.directory.user_id_for(f"n{n}", 4)
        self.assertEqual((yield store.directory.user_id_for("later", 1024)), home_slot("later", 1024))
        self.assertEqual((yield store.directory.user_id_for("n0", 1024)), home_slot("n0", 1024))

    @defer.inlineCallbacks
    def test_invalid_arguments_are_refused(self):
        store = yield self.make_store()
        for id_space in (0, -1, FULL_ID_SPACE + 1, True, 8.0, "8"):
            yield self.assertFailure(store.directory.user_id_for("a", id_space), ValueError)
        yield self.assertFailure(store.directory.user_id_for(b"a", 8), TypeError)

    @defer.inlineCallbacks
    def test_concurrent_claims_give_distinct_ids(self):
        """
        More names than ids, claimed at once through several store clients
        (separate connections, for Redis): every id goes to exactly one name,
        the rest are refused, and every client agrees afterwards.
        """
        stores = yield self.make_clients(4)
        names = [f"c{n}" for n in range(300)]
        claims = [stores[n % 4].directory.user_id_for(name, 256) for n, name in enumerate(names)]
        results = yield defer.DeferredList(claims, consumeErrors=True)
        given = {}
        for name, (ok, result) in zip(names, results):
            if ok:
                given[name] = result
            else:
                result.trap(DirectoryFull)
        self.assertEqual(sorted(given.values()), list(range(256)))
        for n, (name, user_id) in enumerate(sorted(given.items())):
            self.assertEqual((yield stores[n % 4].directory.user_id_for(name, 256)), user_id)

    @defer.inlineCallbacks
    def test_a_new_store_object_finds_the_same_ids(self):
        """
        A restarted process (a new store on the same backend) asking in
        another order gets the ids first given, collisions included.
        """
        first = yield self.make_store()
        names, home = _clashing_names(1024, 3, prefix="restart")
        given = []
        for name in names:
            given.append((yield first.directory.user_id_for(name, 1024)))
        self.assertEqual(given, [home, (home + 1) % 1024, (home + 2) % 1024])
        second = yield self.make_store()
        again = {}
        for name in reversed(names):
            again[name] = yield second.directory.user_id_for(name, 1024)
        self.assertEqual([again[name] for name in names], given)


class HistoryRetentionContract:
    """
    A ledger that keeps only part of each account's history still audits
    exactly: dropped entries move into a checkpoint.
    """

    @defer.inlineCallbacks
    def test_keeps_the_newest_entries(self):
        store = yield self.make_store_keeping(HistoryRetention(entries=3))
        yield store.ledger.open_account("a", 100)
        for amount in range(1, 7):
            yield store.ledger.deposit("a", amount)
        yield store.ledger.withdraw("a", 10)
        history = yield store.ledger.history("a", limit=50)
        self.assertEqual([(t.kind, t.amount, t.balance_after) for t in history],
                         [("withdraw", -10, 111), ("deposit", 6, 121), ("deposit", 5, 115)])
        report = yield store.ledger.audit()
        self.assertTrue(report.balanced, report)
        self.assertEqual((report.opening_total, report.deposit_total, report.withdrawal_total),
                         (100, 21, 10))

    @defer.inlineCallbacks
    def test_longer_histories_are_cut_in_steps(self):
        """Keeping 32 entries, an account holds up to 32 // 16 more between two cuts."""
        store = yield self.make_store_keeping(HistoryRetention(entries=32))
        yield store.ledger.open_account("a", 1)
        for _ in range(33):
            yield store.ledger.deposit("a", 1)
        self.assertEqual(len((yield store.ledger.history("a", limit=100))), 34)
        yield store.ledger.deposit("a", 1)
        history = yield store.ledger.history("a", limit=100)
        self.assertEqual([t.balance_after for t in history], list(range(35, 3, -1)))
        self.assertTrue((yield store.ledger.audit()).balanced)

    @defer.inlineCallbacks
    def test_transfers_with_short_histories_audit_exactly(self):
        store = yield self.make_store_keeping(HistoryRetention(entries=2))
        for account in ("a", "b", "c"):
            yield store.ledger.open_account(account, 50)
        for i in range(30):
            source, target = "abc"[i % 3], "abc"[(i + 1) % 3]
            yield store.ledger.transfer(source, target, 1 + i % 4)
            if i % 5 == 0:
                yield store.ledger.deposit(target, 2)
                yield store.ledger.withdraw(source, 1)
        report = yield store.ledger.audit()
        self.assertTrue(report.balanced, report)
        self.assertEqual(report.balance_total, report.expected_total)
        for account in "abc":
            self.assertEqual(len((yield store.ledger.history(account))), 2)

    @defer.inlineCallbacks
    def test_a_lost_write_still_shows_in_the_audit(self):
        """The checkpoint does not hide a balance that disagrees with the history."""
        store = yield self.make_store_keeping(HistoryRetention(entries=2))
        yield store.ledger.open_account("a", 10)
        for _ in range(4):
            yield store.ledger.deposit("a", 1)
        yield self.corrupt_balance(store, "a", 1)
        self.assertFalse((yield store.ledger.audit()).balanced)

    @defer.inlineCallbacks
    def test_keeps_entries_of_the_last_period(self):
        ttl = self.short_ttl
        store = yield self.make_store_keeping(HistoryRetention(seconds=ttl))
        yield store.ledger.open_account("a", 5)
        yield store.ledger.deposit("a", 1)
        yield self.let_time_pass(ttl * 1.5)
        yield store.ledger.deposit("a", 2)
        history = yield store.ledger.history("a")
        self.assertEqual([(t.kind, t.amount) for t in history], [("deposit", 2)])
        report = yield store.ledger.audit()
        self.assertTrue(report.balanced, report)
        self.assertEqual(report.balance_total, 8)

    @defer.inlineCallbacks
    def test_an_age_limit_keeps_every_entry_of_the_last_period(self):
        store = yield self.make_store_keeping(HistoryRetention(seconds=self.short_ttl))
        yield store.ledger.open_account("a", 5)
        for amount in range(1, 5):
            yield store.ledger.deposit("a", amount)
        history = yield store.ledger.history("a")
        self.assertEqual([t.amount for t in history], [4, 3, 2, 1, 5])

    @defer.inlineCallbacks
    def test_old_entries_go_a_few_per_operation(self):
        """
        An operation looks at its account's AGE_CHECKS oldest entries only,
        so a long history of old entries goes over the next operations,
        not all at once.
        """
        ttl = self.short_ttl
        store = yield self.make_store_keeping(HistoryRetention(seconds=ttl))
        yield store.ledger.open_account("a", 5)
        for amount in range(1, 5):
            yield store.ledger.deposit("a", amount)
        yield self.let_time_pass(ttl * 1.5)
        kept = []
        for amount in (10, 20, 30):
            yield store.ledger.deposit("a", amount)
            kept.append([t.amount for t in (yield store.ledger.history("a"))])
        self.assertEqual(AGE_CHECKS, 2)
        self.assertEqual(kept, [[10, 4, 3, 2], [20, 10, 4], [30, 20, 10]])
        self.assertTrue((yield store.ledger.audit()).balanced)

    @defer.inlineCallbacks
    def test_with_both_limits_young_entries_go_only_beyond_the_count(self):
        store = yield self.make_store_keeping(HistoryRetention(entries=3, seconds=self.short_ttl))
        yield store.ledger.open_account("a", 5)
        for amount in range(1, 4):
            yield store.ledger.deposit("a", amount)
            history = yield store.ledger.history("a")
            self.assertEqual(len(history), min(amount + 1, 3))
        self.assertEqual([t.amount for t in history], [3, 2, 1])


class DirectoryLeaseContract:
    """
    Leased claims: anonymous names hold their id only while they keep
    renewing it, and never more ids than the lease limit allows.
    """

    @defer.inlineCallbacks
    def test_an_ended_lease_frees_its_id_for_any_name(self):
        store = yield self.make_store()
        ttl = self.short_ttl
        (first, second, newcomer), home = _clashing_names(8, 3, prefix="lease")
        self.assertEqual((yield store.directory.user_id_for(first, 8, lease=ttl)), home)
        self.assertEqual((yield store.directory.user_id_for(second, 8)), (home + 1) % 8)
        yield store.directory.user_id_for(second, 8, lease=ttl)  # changes nothing: permanent
        yield self.let_time_pass(ttl * 1.5)
        # `first` holds nothing now: a new name probing from the same home gets its id ...
        self.assertEqual((yield store.directory.user_id_for(newcomer, 8, lease=ttl)), home)
        # ... the permanent claim outlived the lease, and `first` probes afresh.
        self.assertEqual((yield store.directory.user_id_for(first, 8, lease=ttl)), (home + 2) % 8)

    @defer.inlineCallbacks
    def assertStillHeld(self, store, holder, newcomer, home):
        """``holder`` still has ``home``: ``newcomer``, of the same home, probes past it."""
        ttl = self.short_ttl
        self.assertEqual((yield store.directory.user_id_for(newcomer, 8, lease=ttl)), (home + 1) % 8)
        self.assertEqual((yield store.directory.user_id_for(holder, 8, lease=ttl)), home)

    @defer.inlineCallbacks
    def test_a_renewed_lease_lives_on(self):
        store = yield self.make_store()
        ttl = self.short_ttl
        (first, second), home = _clashing_names(8, 2, prefix="renew")
        self.assertEqual((yield store.directory.user_id_for(first, 8, lease=ttl)), home)
        yield self.let_time_pass(ttl * 0.6)
        self.assertEqual((yield store.directory.user_id_for(first, 8, lease=ttl)), home)
        yield self.let_time_pass(ttl * 0.6)
        yield self.assertStillHeld(store, first, second, home)

    @defer.inlineCallbacks
    def test_a_permanent_claim_keeps_a_leased_names_id_for_good(self):
        store = yield self.make_store()
        ttl = self.short_ttl
        (first, second), home = _clashing_names(8, 2, prefix="keep")
        self.assertEqual((yield store.directory.user_id_for(first, 8, lease=ttl)), home)
        self.assertEqual((yield store.directory.user_id_for(first, 8)), home)
        yield self.let_time_pass(ttl * 1.5)
        yield self.assertStillHeld(store, first, second, home)

    @defer.inlineCallbacks
    def test_the_lease_limit_keeps_ids_for_permanent_names(self):
        store = yield self.make_store()
        ttl = self.short_ttl
        for n in range(3):
            yield store.directory.user_id_for(f"anonymous{n}", 4, lease=ttl, lease_limit=3)
        yield self.assertFailure(
            store.directory.user_id_for("one more", 4, lease=ttl, lease_limit=3), DirectoryFull)
        # Names already holding a lease renew it at the limit; a permanent name still fits.
        yield store.directory.user_id_for("anonymous0", 4, lease=ttl, lease_limit=3)
        ids = [(yield store.directory.user_id_for("with password", 4))]
        for n in range(3):
            ids.append((yield store.directory.user_id_for(
                f"anonymous{n}", 4, lease=ttl, lease_limit=3)))
        self.assertEqual(sorted(ids), [0, 1, 2, 3])
        yield self.assertFailure(store.directory.user_id_for("no room", 4), DirectoryFull)
        yield self.let_time_pass(ttl * 1.5)
        yield store.directory.user_id_for("one more", 4, lease=ttl, lease_limit=3)
        yield store.directory.user_id_for("no room", 4)
        yield store.directory.user_id_for("late", 4)
        yield self.assertFailure(store.directory.user_id_for("now full", 4), DirectoryFull)

    @defer.inlineCallbacks
    def test_a_space_filled_by_leases_empties_when_they_end(self):
        store = yield self.make_store()
        ttl = self.short_ttl
        ids = set()
        for n in range(4):
            ids.add((yield store.directory.user_id_for(f"flood{n}", 4, lease=ttl)))
        self.assertEqual(ids, {0, 1, 2, 3})
        yield self.assertFailure(store.directory.user_id_for("real", 4), DirectoryFull)
        yield self.let_time_pass(ttl * 1.5)
        self.assertEqual((yield store.directory.user_id_for("real", 4)), home_slot("real", 4))

    @defer.inlineCallbacks
    def test_invalid_leases_are_refused(self):
        store = yield self.make_store()
        for lease, limit in ((0, None), (-1, None), (True, None), ("5", None), (5, -1), (5, 1.5)):
            yield self.assertFailure(
                store.directory.user_id_for("a", 8, lease=lease, lease_limit=limit), ValueError)


class InterfaceContract:
    @defer.inlineCallbacks
    def test_provides_every_interface_it_claims(self):
        """
        Every domain object has every method and attribute its interface
        names, with compatible signatures (``verifyObject``), so a backend
        cannot miss an operation that only one system calls.
        """
        store = yield self.make_store()
        verifyObject(IStore, store)
        for interface, domain in [(ISessionStore, store.sessions), (ILedger, store.ledger),
                                  (IDirectory, store.directory),
                                  (ICustomerStore, store.customers),
                                  (ICatalogStore, store.catalog)]:
            self.assertTrue(verifyObject(interface, domain))


class StoreContract(SessionContract, LedgerContract, DirectoryContract, DirectoryLeaseContract,
                    InterfaceContract, HistoryRetentionContract):
    """Everything a backend must do."""
