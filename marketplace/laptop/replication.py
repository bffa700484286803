# -*- test-case-name: tests.laptop.test_replication,tests.laptop.test_hostile_replica,tests.laptop.test_failure_detection -*-
"""
Primary-backup replication over numbered views, as a state machine with no
sockets: messages come in through ``receive``, go out through the ``send``
callable, and time comes from an injected ``IReactorTime``.  Tests drive it
over simulated networks with ``task.Clock``; ``service.py`` wires it to TCP.

The scheme (README, "Laptop orders: replication"):

- Views are numbered; a view has at most one primary because a replica
  becomes primary of view v only with votes from a majority of the
  *configured* replicas, and each replica votes at most once per view
  (the vote is persisted, unless a replica runs ``--memory-only``).
- A replica votes only for a candidate whose log is at least as up to date
  as its own (last entry's view, then length), so a new primary holds every
  committed entry.  It starts with a no-op entry of its view; committing it
  commits everything before it.
- Elections start when no primary has been heard from for the election
  timeout; lower replica ids time out first.  A pre-vote round (would you
  vote for me?) comes first, so a replica that was frozen or cut off cannot
  depose a working primary by bumping the view when it comes back.  A
  refused pre-vote carries the refuser's view, which an asker behind it
  adopts, so a lower view never keeps the longest log from winning.
- The primary commits an entry once every *live* backup and a majority of
  the configured replicas hold it.  A backup is live once it holds every
  committed entry and answers; one silent for the backup timeout, or whose
  link drops, leaves the live set, so a frozen backup delays commits by at
  most that timeout.
- Backups reject entries from older views and answer with their view; a
  deposed primary learns it that way and can commit nothing, since no
  majority accepts its entries.  A primary that has not heard from a
  majority for the election timeout steps down by itself.
- A backup whose missing entries were compacted away gets the snapshot in
  chunks, one at a time; it installs it only once it holds every chunk,
  all from one view's primary, and drops the chunks it has when it adopts
  a new view.
- Reads are answered by the primary from committed state once a round of
  messages sent after the read arrived was acknowledged by a majority in
  its view (so a deposed primary cannot serve a stale read).
- Any replica accepts customer requests; a backup forwards them to the
  primary, re-routes them when the primary or its view changes, and
  forwards again what stays unanswered for the retransmit interval (links
  drop messages while down or congested).  Orders are idempotent per
  (customer, order number), so re-routing and resending are safe.

Links between replicas are authenticated, but a replica can be buggy or
compromised, so every message is checked before it touches any state
(``_admissible`` and the handlers): it must name its sender as the sender,
stay within the view limit, be well formed; entries and snapshots come only
from the primary of the current view, never rewrite a committed entry, and
a snapshot never takes back a committed order; what a backup reports is
never believed beyond what was sent to it.  A refused message is counted
(``laptop_refused_*``) and changes nothing.
"""

import itertools
import random
from typing import Callable, Dict, List, Optional, Sequence, Union

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from protocols.laptop import (
    FORWARD_OK,
    FORWARD_RETRY,
    MAX_VIEW,
    OPCODE_NOOP,
    OPCODE_SET_LAST_ORDER,
    TYPE_ORDER,
    TYPE_READ,
    AppendEntries,
    AppendReply,
    Entry,
    ForwardReply,
    ForwardRequest,
    InstallSnapshot,
    SnapshotReply,
    VoteReply,
    VoteRequest,
    claimed_sender,
)

from marketplace.laptop.log import ReplicatedLog
from marketplace.laptop.state import OrderBook
from marketplace.laptop.storage import MemoryStorage
from marketplace.metrics import Counters

# A replica's role is always one of these three objects, so `is` compares
# roles as `==` does; and as strings "candidate" sorts first and "primary"
# last (the `# equivalent:` marks on role comparisons below rest on this).
FOLLOWER = "follower"
CANDIDATE = "candidate"
PRIMARY = "primary"


@attrs.frozen
class Timeouts:
    """
    The failure detector's knobs, in seconds.  Failover takes at most
    ``election + (replicas - 1) * election_stagger + jitter`` plus one
    round trip: with the defaults and three replicas, under 2 s.
    """

    heartbeat: float = 0.05
    backup: float = 0.4
    election: float = 1.0
    election_stagger: float = 0.25
    request: float = 5.0
    retransmit: float = 1.0


class RequestFailed(Exception):
    """A customer request could not be committed within the request timeout."""


@attrs.frozen
class ReadResult:
    last_order: Optional[int]
    admin_id: int


class _PeerProgress:
    """What the primary knows about one backup."""

    def __init__(self, next_index: int, now: float):
        self.next_index = next_index
        #: the highest index sent to it in this view: what it may claim to hold.
        # Read as ``max(-1, min(claim, sent_through))``, so a start of -2 is
        # the same (NumberReplacer's other mutant, ``-0``, is run: it is
        # USub_Not's ``not 1`` again, and killed as that is).
        self.sent_through = -1  # equivalent: USub_Invert, NumberReplacer+1
        self.match_index = -1
        self.in_flight_since: Optional[float] = None
        self.heard_at = now
        # A read needs round 1 at least, so any start below 1 confirms none:
        # -1 is the same.  (NumberReplacer's other mutant, 1, confirms a read
        # on a round never acknowledged: test_replication_requests kills it.)
        self.acked_round = 0  # equivalent: NumberReplacer-1
        #: the snapshot (its last index) being sent to it in chunks, and how
        #: many of its records it said it holds
        self.snapshot_index: Optional[int] = None
        self.snapshot_received = 0  # pragma: no mutate (read only once a first chunk set it)


class _SnapshotAssembly:
    """
    The chunks of one snapshot a backup has received so far, from one
    primary in one view.  Installed only once complete; dropped when the
    view changes or a chunk of another snapshot comes.
    """

    __slots__ = ("key", "total", "records")

    def __init__(self, message: InstallSnapshot):
        self.key = (message.view, message.primary_id, message.last_index, message.last_view)
        self.total = message.total
        self.records: list = []

    def matches(self, message: InstallSnapshot) -> bool:
        return self.key == (
            message.view, message.primary_id, message.last_index, message.last_view
        ) and self.total == message.total


class _Waiter:
    """
    Completion callbacks of one forwarded request being served by this
    primary.  Every waiter, this one and ``_CustomerRequest``, has
    ``done(last_order, admin_id)`` (``last_order`` is None for orders) and
    ``retry()``.
    """

    __slots__ = ("done", "retry")

    def __init__(self, done: Callable[[Optional[int], int], None], retry: Callable[[], None]):
        self.done = done
        self.retry = retry


class _CustomerRequest:
    """
    A request from one of this replica's own customers, until it is
    answered: exactly one of ``on_done(result)`` and ``on_failed(error)``
    is called.  While this replica is primary the request is its own
    waiter, so serving an order allocates no callbacks besides it.
    """

    __slots__ = (
        "tag", "request_type", "customer_id", "order_number", "deadline", "on_done", "on_failed",
        "routed_to", "sent_at", "retry_call", "_replica",
    )

    def __init__(self, replica, tag, request_type, customer_id, order_number, deadline, on_done,
                 on_failed):
        self._replica = replica
        self.tag = tag
        self.deadline = deadline
        self.request_type = request_type
        self.customer_id = customer_id
        self.order_number = order_number
        self.on_done = on_done
        self.on_failed = on_failed
        self.routed_to: Optional[int] = None
        #: when it was last forwarded to ``routed_to``
        self.sent_at = 0.0  # pragma: no mutate (read only once a forward set it)
        self.retry_call = None

    def done(self, last_order: Optional[int], admin_id: int) -> None:
        """
        Served, by this replica as primary (as its waiter) or by the primary
        it was forwarded to: answer the customer.
        """
        # A request type is TYPE_ORDER (1) or TYPE_READ (2): small ints, and
        # only orders are <= TYPE_ORDER.
        outcome = (
            admin_id
            if self.request_type == TYPE_ORDER  # equivalent: Eq_LtE, Eq_Is
            else ReadResult(last_order, admin_id)
        )
        self._replica._finish_request(self.tag, outcome)

    def retry(self) -> None:
        """Waiter: this replica stepped down before serving it; route it to the new primary."""
        self._replica._reroute(self.tag)

    def retry_pending(self) -> bool:
        """Whether it waits, after a refusal, to be routed again at a set time."""
        return self.retry_call is not None and self.retry_call.active()

    def cancel_retry(self) -> None:
        """Drop the wait for another try after a refusal: answered, expired or routed meanwhile."""
        if self.retry_pending():
            self.retry_call.cancel()


class Replica:
    log = Logger()

    #: entries per AppendEntries message (catch-up goes in chunks this size)
    max_batch = 4096
    #: records per InstallSnapshot chunk: 512 KiB, well within one frame
    #: (``protocols.laptop.MAX_SNAPSHOT_RECORDS``)
    snapshot_chunk = 65536
    #: seconds the next batch waits at most for the orders of the customers
    #: the last commit answered (see ``_hold_until``)
    batch_hold = 0.001

    def __init__(
        self,
        replica_id: int,
        peer_ids: Sequence[int],
        clock,
        send: Callable[[int, object], bool],
        storage=None,
        timeouts: Timeouts = Timeouts(),
        rng: Optional[random.Random] = None,
        counters=None,
        compact_threshold: int = 200_000,
    ):
        self.replica_id = replica_id
        self.peer_ids = tuple(sorted(peer_ids))
        self.majority = (len(self.peer_ids) + 1) // 2 + 1
        self._clock = clock
        self._send = send
        self._storage = storage if storage is not None else MemoryStorage()
        self.timeouts = timeouts
        self._random = rng if rng is not None else random.Random()
        self._counters = counters if counters is not None else Counters()
        self.compact_threshold = compact_threshold

        # `start` sets from storage and the clock the lines marked
        # `# pragma: no mutate` below before anything reads them.
        self.view = 0  # pragma: no mutate
        self.voted_for: Optional[int] = None
        self.role = FOLLOWER
        self.primary_id: Optional[int] = None
        self.book = OrderBook()
        self.replicated_log = ReplicatedLog()
        self.commit_index = -1  # pragma: no mutate
        self._snapshot_records: tuple = ()

        self._last_contact = 0.0  # pragma: no mutate
        #: when the heartbeat tick last ran: a late one means this replica
        #: itself was not running (a long batch, a pause of the process)
        self._last_tick_at = 0.0  # pragma: no mutate
        self._primary_heard_at: Optional[float] = None
        self._election_span = 0.0  # pragma: no mutate
        self._pre_votes: set = set()
        self._votes: set = set()

        self._peers: Dict[int, _PeerProgress] = {}
        self.live: set = set()
        self._round = 0
        self._persisted_index = -1  # pragma: no mutate
        # Read only by a primary, which set it when it became one.
        self._view_start_index = -1  # pragma: no mutate
        #: a snapshot arriving in chunks (backups only)
        self._snapshot_assembly: Optional[_SnapshotAssembly] = None
        # log index -> what to tell once it commits: forwarded requests'
        # _Waiter and this replica's own _CustomerRequest alike.
        self._order_waiters: Dict[int, List[Union[_Waiter, _CustomerRequest]]] = {}
        self._read_waiters: List[tuple] = []
        self._pending_orders: Dict[int, tuple] = {}
        self._flush_call = None
        #: orders the last commit answered: as many are likely to come back
        # (until a commit sets it, only `target < 2` reads it: 1 and -1 are the same)
        self._batch_target = 0  # equivalent: NumberReplacer
        #: the log index with which a held batch is full (None: not held)
        self._full_at = None
        #: the AppendEntries last sent, for the next backup that lacks the same
        self._last_append = None

        self._requests: Dict[int, _CustomerRequest] = {}
        #: tags tell this replica's requests apart, and need do no more (a
        #: forwarded request's tag is "of its choosing": docs/protocols/laptop.md)
        self._tags = itertools.count()
        self._tick_call = None
        self._running = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        recovered = self._storage.load()
        self.view = recovered.view
        self.voted_for = recovered.voted_for
        self.replicated_log = ReplicatedLog(
            recovered.snapshot_index, recovered.snapshot_view, recovered.entries
        )
        self.book = OrderBook(recovered.records)
        self._snapshot_records = tuple(recovered.records)
        self.commit_index = recovered.snapshot_index
        self._persisted_index = self.replicated_log.last_index
        self._running = True
        self._last_contact = self._last_tick_at = self._clock.seconds()
        self._draw_election_span()
        self._tick_call = self._clock.callLater(self.timeouts.heartbeat, self._tick)

    def stop(self) -> None:
        self._running = False
        for call in (self._tick_call, self._flush_call):
            if call is not None and call.active():
                call.cancel()
        self._tick_call = self._flush_call = None
        # A follower or candidate stepping down would only forget its
        # primary, which a stopped replica never reads again (`<=`).
        if self.role == PRIMARY:  # equivalent: Eq_Is, Eq_GtE, Eq_LtE (see FOLLOWER)
            self._step_down(None)
        requests, self._requests = self._requests, {}
        for request in requests.values():
            request.cancel_retry()
            self._answer(request.on_failed, RequestFailed("replica stopping"))
        self._storage.close()

    # ------------------------------------------------------------ customer API

    def order(self, customer_id: int, order_number: int) -> defer.Deferred:
        """Commit an order; fires with the id of the primary that committed it."""
        d = defer.Deferred()
        self.place_order(customer_id, order_number, d.callback, d.errback)
        return d

    def read(self, customer_id: int) -> defer.Deferred:
        """A linearizable read of one customer's record; fires with ``ReadResult``."""
        d = defer.Deferred()
        self.read_record(customer_id, d.callback, d.errback)
        return d

    def place_order(self, customer_id: int, order_number: int, on_done, on_failed) -> None:
        """
        ``order`` with plain callbacks, for the customer connections' hot
        path: ``on_done(admin_id)`` once committed, or ``on_failed(error)``
        with a ``RequestFailed``.
        """
        self._submit(TYPE_ORDER, customer_id, order_number, on_done, on_failed)

    def read_record(self, customer_id: int, on_done, on_failed) -> None:
        """``read`` with plain callbacks: ``on_done(ReadResult)`` or ``on_failed(error)``."""
        # The order number of a read is never read (a primary serves a read,
        # forwarded or not, by its customer alone): any value is the same.
        self._submit(TYPE_READ, customer_id, -1, on_done, on_failed)  # pragma: no mutate

    def _submit(self, request_type, customer_id, order_number, on_done, on_failed) -> None:
        if not self._running:
            # Nothing would route it, nor expire it: no tick runs.
            self._answer(on_failed, RequestFailed("replica not running"))
            return
        tag = next(self._tags)
        deadline = self._clock.seconds() + self.timeouts.request
        request = _CustomerRequest(
            self, tag, request_type, customer_id, order_number, deadline, on_done, on_failed
        )
        self._requests[tag] = request
        self._route(request)

    def _finish_request(self, tag: int, result) -> None:
        request = self._requests.pop(tag, None)
        if request is not None:
            request.cancel_retry()
            self._answer(request.on_done, result)

    def _answer(self, callback, outcome) -> None:
        """
        Call a customer's callback.  It runs inside commit and expiry loops,
        so whatever goes wrong in it is logged here and never cuts one short.
        """
        try:
            callback(outcome)
        except Exception:
            self.log.failure("answering a customer request failed")

    def _expire_requests(self, now: float) -> None:
        """
        Fail requests past their deadline.  One sweep per tick instead of a
        timer per request: all share one timeout, so the oldest come first.
        """
        requests = self._requests
        while requests:
            tag = next(iter(requests))
            request = requests[tag]
            if request.deadline > now:
                return
            del requests[tag]
            request.cancel_retry()
            self._counters.increment("laptop_request_timeouts")
            self._answer(
                request.on_failed, RequestFailed("no primary committed the request in time")
            )

    def _route(self, request: _CustomerRequest) -> None:
        # Routed now (a primary became known): the wait after a refusal is
        # over, and its timer would only send the request a second time.
        request.cancel_retry()
        request.routed_to = None
        if not self._running:
            return
        if self.role == PRIMARY:  # equivalent: Eq_Is, Eq_GtE (see FOLLOWER)
            request.routed_to = self.replica_id
            self._serve(request.request_type, request.customer_id, request.order_number, request)
        elif self.primary_id is not None:
            # Not itself: only a primary names itself primary; any other id
            # came from a message, whose sender is never this replica.
            forwarded = ForwardRequest(
                request.tag, request.customer_id, request.order_number, request.request_type
            )
            if self._send(self.primary_id, forwarded):
                request.routed_to = self.primary_id
                request.sent_at = self._clock.seconds()

    def _resend_forwarded(self, now: float) -> None:
        """
        Forward again what the primary has not answered: a link drops
        messages while it is down or congested, and both the request and
        the reply can be lost that way.  One that never left goes at the
        next tick, one unanswered after the retransmit interval again; the
        primary answers a repeat from its record or joins it to the pending
        entry (orders are idempotent per customer and order number).
        """
        retransmit = self.timeouts.retransmit
        for request in list(self._requests.values()):
            if request.retry_pending():
                continue  # refused by a non-primary: rerouted at its own time
            if request.routed_to is None or now - request.sent_at >= retransmit:
                self._route(request)

    def _reroute(self, tag: int) -> None:
        request = self._requests.get(tag)
        if request is not None:
            self._route(request)

    def _reroute_all(self) -> None:
        """Route again every request not with the primary, once one is known or its link is back."""
        for request in list(self._requests.values()):
            if request.routed_to != self.primary_id:
                self._route(request)

    # ------------------------------------------------------------ serving (primary)

    def _serve(self, request_type, customer_id, order_number, waiter) -> None:
        # A request is an order (1) or a read (2), both checked on arrival:
        # `is` compares small ints as `==` does, and only an order is `<=` 1.
        if request_type == TYPE_ORDER:  # equivalent: Eq_Is, Eq_LtE
            self._serve_order(customer_id, order_number, waiter)
        else:
            read_index = max(self.commit_index, self._view_start_index)
            self._read_waiters.append((self._round + 1, read_index, customer_id, waiter))
            self._schedule_flush()

    def _serve_order(self, customer_id: int, order_number: int, waiter) -> None:
        last = self.book.last_order(customer_id)
        if last is not None and order_number <= last:
            self._counters.increment("laptop_repeated_orders")
            waiter.done(None, self.replica_id)
            return
        pending = self._pending_orders.get(customer_id)
        if pending is not None and order_number <= pending[0]:
            self._counters.increment("laptop_repeated_orders")
            self._order_waiters.setdefault(pending[1], []).append(waiter)
            return
        index = self._append(Entry(self.view, OPCODE_SET_LAST_ORDER, customer_id, order_number))
        self._pending_orders[customer_id] = (order_number, index)
        self._order_waiters.setdefault(index, []).append(waiter)

    def _append(self, entry: Entry) -> int:
        index = self.replicated_log.append(entry)
        if self._full_at is not None or (self._flush_call is None and not self._live_backup_busy()):
            # Otherwise the reply that frees the last busy live backup sends
            # this entry, with every other one appended meanwhile.
            self._schedule_flush()
        return index

    def _persist_appended(self) -> None:
        """Write the entries appended since the last flush in one go, before anyone sees them."""
        appended = self.replicated_log.entries_after(self._persisted_index)
        if appended:
            self._storage.append(self._persisted_index + 1, appended)
            self._persisted_index = self.replicated_log.last_index

    def _send_round(self, in_step: bool = False) -> None:
        """
        Send every idle peer what it lacks, as round ``_round + 1``.  With
        ``in_step`` live backups are left out while any of them has a
        message in flight: they move in step, so every batch carries all
        the orders that arrived while the previous one was out, and no
        backup gets a batch of its own that cannot commit before the
        slowest live backup acknowledges it anyway.  Heartbeats (the tick)
        are not in step: a frozen live backup must not silence the others.
        """
        self._persist_appended()
        # Rounds need only grow: they are compared by order, and a read waits
        # for the round after the last one sent, which `+= 2` would pass too.
        # (`+= 0` is run, and killed: reads would wait forever.)
        self._round += 1  # equivalent: NumberReplacer+1
        hold_live = in_step and self._live_backup_busy()
        for peer in self.peer_ids:
            if not (hold_live and peer in self.live):
                self._send_append(peer)

    def _live_backup_busy(self) -> bool:
        """Whether a live backup has not yet answered the last message sent to it."""
        peers = self._peers
        for peer in self.live:
            if peers[peer].in_flight_since is not None:
                return True
        return False

    def _live_backup_behind(self) -> bool:
        """Whether a live backup is L{_behind}."""
        last_index = self.replicated_log.last_index
        peers = self._peers
        return any(self._behind(peers[peer], last_index) for peer in self.live)

    def _behind(self, progress, last_index: int) -> bool:
        """Whether a peer lacks entries, or the latest round (which pending reads need)."""
        # A backup is believed to acknowledge no round beyond the latest (see
        # _answered), so its acknowledged round is below the latest or equal.
        return (
            progress.next_index <= last_index
            or progress.acked_round < self._round  # equivalent: Lt_NotEq
        )

    def _schedule_flush(self) -> None:
        """
        Send what the live backups lack at the end of this reactor turn, or
        within ``batch_hold`` while the batch is held (``_hold_until``); a
        held batch goes at the end of the turn in which it fills up or a
        read comes to wait for its round.
        """
        if not self._running:
            return
        call = self._flush_call
        if call is not None:
            full_at = self._full_at
            # Every append while a batch is held comes here: the log reaches
            # full_at (and the batch goes) before it could pass it.
            if full_at is None or (
                self.replicated_log.last_index < full_at  # equivalent: Lt_NotEq
                and not self._read_waiting()
            ):
                return
            call.cancel()
            self._full_at = None
            self._flush_call = self._clock.callLater(0, self._flush)
            return
        self._full_at = self._hold_until()
        delay = 0 if self._full_at is None else self.batch_hold
        self._flush_call = self._clock.callLater(delay, self._flush)

    def _read_waiting(self) -> bool:
        """Whether a read waits for a round not sent yet."""
        return bool(self._read_waiters) and self._read_waiters[-1][0] > self._round

    def _hold_until(self) -> Optional[int]:
        """
        The log index with which the next batch is full, if it is to wait
        for more orders (else None): while it holds fewer than the last
        commit answered, and no read waits for a round.  In a closed loop
        each customer answered sends its next order a client round trip
        later; sent at once, the batch would go without them and they in
        one of their own, so the backups would get half the orders per
        message, and each message costs them about as much as its orders.
        A lone customer's order still goes at once (one answered, one
        waiting), and nothing waits longer than ``batch_hold``.
        """
        if not self.live or self._read_waiting():
            return None
        peers = self._peers
        sent = min(peers[peer].next_index for peer in self.live)
        full_at = sent + self._batch_target - 1
        if sent <= self.replicated_log.last_index < full_at:
            return full_at
        return None

    def _flush(self) -> None:
        self._flush_call = None
        self._full_at = None
        # Whatever was held goes now.  A target below two holds nothing (one
        # order answered, one waiting: the batch is full), so 1 and -1 are 0.
        self._batch_target = 0  # pragma: no mutate
        # A role is one of the three constants, and "primary" sorts last.
        if self.role != PRIMARY:  # equivalent: NotEq_IsNot, NotEq_Lt
            return
        # Orders gain nothing from reaching one live backup before the
        # slowest, but a read needs only a majority to acknowledge a round:
        # a read waiting for a round not sent yet goes out to every idle peer.
        self._send_round(in_step=not self._read_waiting())
        self._advance_commit()

    def _send_append(self, peer: int) -> None:
        progress = self._peers[peer]
        if progress.in_flight_since is not None:
            return
        self._persist_appended()
        log = self.replicated_log
        if progress.next_index <= log.base_index:
            # The peer's next entry was compacted away: it gets the snapshot,
            # a chunk at a time, each once it acknowledged the one before.
            # Its next index moves on only when it says it installed it.
            # The snapshot's index is the log's base object itself, which
            # only moves forward (to a new commit): `is not` is `!=` here.
            if progress.snapshot_index != log.base_index:  # equivalent: NotEq_IsNot
                progress.snapshot_index = log.base_index
                progress.snapshot_received = 0
            records = self._snapshot_records
            offset = progress.snapshot_received
            message = InstallSnapshot(
                self.view,
                self.replica_id,
                log.base_index,
                log.base_view,
                self._round,
                len(records),
                offset,
                records[offset : offset + self.snapshot_chunk],
            )
            next_index = progress.next_index
            sent_through = log.base_index
        else:
            prev = progress.next_index - 1
            message = self._last_append
            # The last message holds this replica's round, view and commit
            # index objects as they were: each only grows, and is replaced by
            # a new object when it does (so `is` is `==`, and none is above
            # now).  In one view and round the log only grows: the message
            # never holds more entries than the log has after prev.
            if not (
                message is not None
                and message.prev_index == prev
                and message.round == self._round  # equivalent: Eq_Is, Eq_GtE
                and message.view == self.view  # equivalent: Eq_Is, Eq_GtE
                and message.commit_index == self.commit_index  # equivalent: Eq_Is, Eq_GtE
                and len(message.entries)
                == min(log.last_index - prev, self.max_batch)  # equivalent: Eq_GtE
            ):
                # Backups in step get the same message: built (and encoded,
                # see protocols.laptop) once for all of them.
                message = self._last_append = AppendEntries(
                    self.view,
                    self.replica_id,
                    prev,
                    log.view_at(prev),
                    self.commit_index,
                    self._round,
                    log.entries_from(progress.next_index, self.max_batch),
                )
            next_index = progress.next_index + len(message.entries)
            sent_through = next_index - 1
        if self._send(peer, message):
            progress.in_flight_since = self._clock.seconds()
            progress.sent_through = max(progress.sent_through, sent_through)
            # A message never moves a peer's next index back: `>` is `!=`.
            if next_index != progress.next_index:  # equivalent: NotEq_Gt
                # Entries per message show how well replication batches.
                self._counters.increment("laptop_append_messages")
                self._counters.increment("laptop_entries_sent", next_index - progress.next_index)
            progress.next_index = next_index

    def _answered(self, reply) -> Optional[_PeerProgress]:
        """
        A backup answered this primary's last message to it, in this view:
        it is heard from, has nothing in flight and acknowledged the reply's
        round.  Returns its progress, or None for a reply to ignore.
        """
        progress = self._peers.get(reply.replica_id)
        # A role is one of the three constants, "primary" sorting last (and
        # a replica that is no primary has no peers' progress anyway); a
        # reply of a view above this replica's is never passed on to here.
        if (
            self.role != PRIMARY  # equivalent: NotEq_IsNot, NotEq_Lt, NotEq_Gt
            or reply.view != self.view  # equivalent: NotEq_Lt
            or progress is None
        ):
            return None
        progress.heard_at = self._clock.seconds()
        progress.in_flight_since = None
        # A backup acknowledges at most the rounds that were sent: believing
        # more would confirm reads no majority confirmed.
        progress.acked_round = max(progress.acked_round, min(reply.round, self._round))
        return progress

    def _on_append_reply(self, reply: AppendReply) -> None:
        progress = self._answered(reply)
        if progress is None:
            return
        # A backup holds at most what it was sent: believing more would
        # commit entries nobody holds, or send it entries from beyond this log.
        reported = max(-1, min(reply.match_index, progress.sent_through))
        progress.match_index = reported if reply.success else min(
            progress.match_index, reported
        )
        progress.next_index = reported + 1
        if (
            reply.success
            and reply.replica_id not in self.live
            and progress.match_index >= self.commit_index
        ):
            self.live.add(reply.replica_id)
            self._counters.increment("laptop_backup_joined")
            self.log.info(
                "replica {peer} is a live backup in view {view}",
                peer=reply.replica_id,
                view=self.view,
            )
        self._advance_commit()
        self._answer_reads()
        if reply.replica_id in self.live:
            if not self._live_backup_busy() and self._live_backup_behind():
                if self._hold_until() is not None:
                    self._schedule_flush()
                else:
                    self._send_round()
        elif self._behind(progress, self.replicated_log.last_index):
            self._send_append(reply.replica_id)

    def _on_snapshot_reply(self, reply: SnapshotReply) -> None:
        """A backup holds part of the snapshot: send it the next chunk (or again from its count)."""
        progress = self._answered(reply)
        if progress is None:
            return
        if reply.last_index == progress.snapshot_index:
            received = reply.received
            # A backup holds from none to every record of the snapshot.
            counts = range(len(self._snapshot_records) + 1)
            progress.snapshot_received = received if received in counts else 0
        self._answer_reads()
        self._send_append(reply.replica_id)

    def _advance_commit(self) -> None:
        log = self.replicated_log
        last_index = log.last_index
        # Nothing uncommitted (every ack of an idle cluster ends here).  A
        # shortcut: the candidate below is at most last_index, so it is not
        # above the commit index either.
        if last_index <= self.commit_index:  # equivalent: LtE_Lt, LtE_Is, LtE_Eq
            return
        candidate = last_index
        for peer in self.live:
            candidate = min(candidate, self._peers[peer].match_index)
        matches = sorted(
            [last_index] + [progress.match_index for progress in self._peers.values()],
            reverse=True,
        )
        candidate = min(candidate, matches[self.majority - 1])
        # No entry is of a view above the primary's, and those of its own
        # view hold its view object (it appended them all).
        if (
            candidate > self.commit_index
            and log.view_at(candidate) == self.view  # equivalent: Eq_Is, Eq_GtE
        ):
            self._commit_to(candidate)
            self._answer_reads()

    def _answer_reads(self) -> None:
        if not self._read_waiters:
            return
        rounds = sorted(
            [self._round] + [progress.acked_round for progress in self._peers.values()],
            reverse=True,
        )
        confirmed = rounds[self.majority - 1]
        answered = 0
        for needed_round, read_index, customer_id, waiter in self._read_waiters:
            if needed_round > confirmed or read_index > self.commit_index:
                # Reads wait in the order of their rounds and of their read
                # indexes alike: none after this one can be answered either,
                # and `continue` would only look at them.
                break  # pragma: no mutate
            answered += 1
            waiter.done(self.book.last_order(customer_id), self.replica_id)
        del self._read_waiters[:answered]

    def _drop_backup(self, peer: int, why: str) -> None:
        if peer in self.live:
            self.live.discard(peer)
            self._counters.increment("laptop_backup_dropped")
            self.log.warn(
                "replica {peer} left the live set of view {view}: {why}",
                peer=peer,
                view=self.view,
                why=why,
            )
            self._advance_commit()
            # The live backups held back while it had a batch out go on now.
            self._schedule_flush()

    # ------------------------------------------------------------ committing (all roles)

    def _commit_to(self, index: int) -> None:
        log = self.replicated_log
        apply = self.book.apply
        waiters = self._order_waiters
        pending = self._pending_orders
        replica_id = self.replica_id
        first = self.commit_index + 1
        answered = 0
        for i, entry in enumerate(log.entries_from(first, index - first + 1), first):
            apply(entry)
            if pending and pending.get(entry.customer_id, (None, None))[1] == i:
                del pending[entry.customer_id]
            ready = waiters.pop(i, None) if waiters else None
            if ready:
                answered += len(ready)
                for waiter in ready:
                    waiter.done(None, replica_id)
        self.commit_index = index
        # Only a primary has order waiters: a follower's commit answers none,
        # and sets no target.  Were it set (to 0), nothing would read it: a
        # new primary's first flush resets the target before any backup is
        # live to hold a batch for.  A role is one of the three constants,
        # and "primary" sorts last.
        if self.role == PRIMARY:  # equivalent: Eq_Is, Eq_GtE, Eq_LtE
            self._batch_target = answered
        if index - log.base_index >= self.compact_threshold:
            self._compact()

    def _compact(self) -> None:
        log = self.replicated_log
        log.compact(self.commit_index)
        self._snapshot_records = self.book.records()
        self._save_snapshot()
        self._counters.increment("laptop_snapshots")

    def _save_snapshot(self) -> None:
        """Persist the snapshot at the log's base with the entries after it."""
        log = self.replicated_log
        self._storage.save_snapshot(
            log.base_index, log.base_view, self._snapshot_records, log.entries_after(log.base_index)
        )

    # ------------------------------------------------------------ messages

    def receive(self, sender: int, message) -> None:
        """Handle one message from replica ``sender``."""
        if not self._running or not self._admissible(sender, message):
            return
        kind = type(message)
        if kind is AppendEntries:  # equivalent: Is_Eq (classes compare by identity)
            self._on_append(message)
        elif kind is AppendReply:  # equivalent: Is_Eq (classes compare by identity)
            if message.view > self.view:
                self._adopt_view(message.view, None)
            else:
                self._on_append_reply(message)
        elif kind is ForwardRequest:  # equivalent: Is_Eq (classes compare by identity)
            self._on_forward(sender, message)
        elif kind is ForwardReply:  # equivalent: Is_Eq (classes compare by identity)
            self._on_forward_reply(sender, message)
        elif kind is VoteRequest:  # equivalent: Is_Eq (classes compare by identity)
            self._on_vote_request(message)
        elif kind is VoteReply:  # equivalent: Is_Eq (classes compare by identity)
            self._on_vote_reply(message)
        elif kind is InstallSnapshot:  # equivalent: Is_Eq (classes compare by identity)
            self._on_snapshot(message)
        elif kind is SnapshotReply:  # equivalent: Is_Eq (classes compare by identity)
            if message.view > self.view:
                self._adopt_view(message.view, None)
            else:
                self._on_snapshot_reply(message)

    def _admissible(self, sender: int, message) -> bool:
        """
        The checks every message passes before its handler runs: it comes
        from a configured peer, names that peer as its sender (a replica
        speaking as another is refused), and carries a view within limits.
        """
        if sender not in self.peer_ids:
            return self._refuse("unknown_sender")
        claimed = claimed_sender(message)
        if claimed is not None and claimed != sender:
            return self._refuse("impersonation")
        view = getattr(message, "view", 0)  # pragma: no mutate (any default in range passes alike)
        if not 0 <= view <= MAX_VIEW:
            return self._refuse("view_out_of_range")
        return True

    def _refuse(self, why: str) -> bool:
        """Count a message refused for ``why``; it changes nothing.  Returns False."""
        self._counters.increment("laptop_refused_" + why)
        return False

    def peer_lost(self, peer: int) -> None:
        """The link to or from ``peer`` dropped: messages in flight are gone."""
        progress = self._peers.get(peer)
        if progress is not None:  # only a primary has peers' progress
            # It may come back restarted with less than it had: forget what
            # it acknowledged, and probe from the end of the log again.
            progress.in_flight_since = None
            progress.match_index = -1
            progress.next_index = self.replicated_log.last_index + 1
            self._drop_backup(peer, "link lost")
        if peer == self.primary_id:
            # Every request is with the primary or was not sent (a new
            # primary gets them all, see _set_primary): what went is lost.
            for request in self._requests.values():
                request.routed_to = None

    def peer_connected(self, peer: int) -> None:
        """A link to ``peer`` is up: send it what it has been missing."""
        if peer in self._peers:  # only a primary has peers' progress
            self._send_append(peer)
        elif peer == self.primary_id:
            self._reroute_all()

    def _heard_from_primary(self, view: int, primary_id: int) -> None:
        now = self._clock.seconds()
        self._last_contact = now
        self._primary_heard_at = now
        # A message of an older view was refused (_refused_as_stale): `!=` is `>`;
        # "candidate" sorts first of the roles: `<=` is `==`.
        if view > self.view or self.role == CANDIDATE:  # equivalent: Gt_NotEq, Eq_Is, Eq_GtE, Eq_LtE
            self._adopt_view(view, primary_id)
        elif self.primary_id != primary_id:
            self._set_primary(primary_id)

    def _refused_as_stale(self, message) -> bool:
        """
        Refuse a primary's message from an older view, telling the sender the
        current view: this is what keeps a deposed primary from committing.
        """
        if message.view >= self.view:
            return False
        self._send(
            message.primary_id,
            AppendReply(self.view, self.replica_id, False, -1, message.round),
        )
        return True

    def _from_current_primary(self, message) -> bool:
        """
        Whether entries or a snapshot come from the primary of this
        replica's view (or announce a newer view).  A view has one primary:
        once this replica knows it, or is it, nobody else speaks for the view.
        """
        if self._refused_as_stale(message):
            return False
        # An older view was refused just above: `<=` is `==`.  A primary's
        # primary_id is its own id, and a message's its sender's (_admissible),
        # so the second test refuses what `role > PRIMARY` (never true) lets by.
        if message.view == self.view and (  # equivalent: Eq_LtE
            self.role == PRIMARY  # equivalent: Eq_Is, Eq_GtE, Eq_Gt
            or (self.primary_id is not None and message.primary_id != self.primary_id)
        ):
            return self._refuse("second_primary")
        return True

    @staticmethod
    def _well_formed_append(message: AppendEntries) -> bool:
        """
        Indexes that exist, entry views that never decrease and none above
        the message's, known opcodes, and orders a customer could place.
        """
        if message.prev_index < -1 or message.commit_index < -1:
            return False
        if not -1 <= message.prev_view <= message.view:
            return False
        view = message.prev_view
        for entry in message.entries:
            if not view <= entry.view <= message.view:
                return False
            view = entry.view
            # Opcodes 0 and 1 are small ints, one object each: `is` is `==`, `is not` `!=`.
            if entry.opcode == OPCODE_SET_LAST_ORDER:  # equivalent: Eq_Is
                if entry.customer_id < 0 or entry.order_number < 0:
                    return False
            elif entry.opcode != OPCODE_NOOP:  # equivalent: NotEq_IsNot
                return False
        return True

    def _on_append(self, message: AppendEntries) -> None:
        if not self._from_current_primary(message):
            return
        if not self._well_formed_append(message):
            self._refuse("malformed_entries")
            return
        self._heard_from_primary(message.view, message.primary_id)
        log = self.replicated_log
        prev = message.prev_index
        if prev > log.last_index:
            self._reply_append(message, False, log.last_index)
            return
        if prev >= log.base_index and log.view_at(prev) != message.prev_view:
            self._reply_append(message, False, self.commit_index)
            return
        # A prev_index above the log's end was answered just above: `>=` is
        # `==`; and where `>` or `is` fail, the loop below gives the same log, slower.
        if prev == log.last_index:  # equivalent: Eq_GtE, Eq_Gt, Eq_Is
            # The usual case: the entries continue this log exactly.
            first_new = prev + 1
            new_entries = message.entries
            log.extend(new_entries)
        else:
            index = prev
            first_new = None
            for entry in message.entries:
                index += 1
                if index < log.base_index:
                    continue  # folded into the snapshot: nothing left to compare it with
                if first_new is None:
                    if index <= log.last_index:
                        if log.view_at(index) == entry.view:
                            continue
                        if index <= self.commit_index:
                            # Only a faulty primary contradicts a committed
                            # entry; nothing was changed yet.
                            self._refuse("rewrite_committed")
                            return
                        log.truncate_after(index - 1)
                    first_new = index
                log.append(entry)
            # Every entry from first_new to the log's end came with the message.
            new_entries = (
                () if first_new is None else log.entries_from(first_new, len(message.entries))
            )
        if new_entries:
            self._storage.append(first_new, new_entries)
            self._persisted_index = log.last_index
        last_new = prev + len(message.entries)
        commit = min(message.commit_index, last_new)
        # Committing to the commit index again applies nothing, and compacts
        # nothing (the last commit left the log within a compaction threshold
        # of 1 or more): `>=` is `>`.
        if commit > self.commit_index:  # equivalent: Gt_GtE
            self._commit_to(commit)
        self._reply_append(message, True, max(last_new, self.commit_index))

    def _reply_append(self, message, success: bool, match_index: int) -> None:
        self._send(
            message.primary_id,
            AppendReply(self.view, self.replica_id, success, match_index, message.round),
        )

    @staticmethod
    def _well_formed_snapshot(message: InstallSnapshot) -> bool:
        """An index that exists, a view not above the message's, and records a customer could have."""
        return (
            message.last_index >= -1
            and -1 <= message.last_view <= message.view
            and 0 <= message.offset <= message.total
            and all(customer >= 0 and order >= 0 for customer, order in message.records)
        )

    def _keeps_commits(self, records) -> bool:
        """
        Whether a whole snapshot names each customer once and holds every
        committed record at least as far as this replica has it: order
        numbers only grow, so a snapshot covering more of the log cannot
        have less of them.
        """
        book = dict(records)
        # A dict of the records has at most as many: `<` is `!=`.
        if len(book) != len(records):  # equivalent: NotEq_Lt
            return False
        return all(
            customer in book and book[customer] >= order for customer, order in self.book.records()
        )

    def _on_snapshot(self, message: InstallSnapshot) -> None:
        if not self._from_current_primary(message):
            return
        if not self._well_formed_snapshot(message):
            self._refuse("malformed_snapshot")
            return
        self._heard_from_primary(message.view, message.primary_id)
        log = self.replicated_log
        if message.last_index > self.commit_index:
            records = self._assemble_snapshot(message)
            if records is None:
                return
            if not self._keeps_commits(records):
                self._refuse("snapshot_loses_commits")
                return
            # message.last_index > commit_index >= log.base_index: no lower bound.
            keep_suffix = (
                # At the log's end, compact and reset leave the same log: `<` is `<=`.
                message.last_index <= log.last_index  # equivalent: LtE_Lt
                and log.view_at(message.last_index) == message.last_view
            )
            if keep_suffix:
                log.compact(message.last_index)
            else:
                log.reset(message.last_index, message.last_view)
            self.book = OrderBook(records)
            self._snapshot_records = records
            self.commit_index = message.last_index
            self._persisted_index = log.last_index
            self._save_snapshot()
            self._counters.increment("laptop_snapshots_installed")
        else:
            self._snapshot_assembly = None  # it holds all of that snapshot already
        self._send(
            message.primary_id,
            AppendReply(
                self.view, self.replica_id, True, max(message.last_index, self.commit_index),
                message.round,
            ),
        )

    def _assemble_snapshot(self, message: InstallSnapshot) -> Optional[tuple]:
        """
        Add a chunk to the snapshot being received; return all its records
        once complete.  Otherwise tell the primary how many records of it
        this replica holds, from where the next chunk must start (0 after a
        chunk of another snapshot, view or primary), and return None.
        """
        assembly = self._snapshot_assembly
        # An offset below 0 was refused (_well_formed_snapshot): `<=` is `==`.
        if message.offset == 0 or assembly is None or not assembly.matches(message):  # equivalent: Eq_LtE
            assembly = self._snapshot_assembly = _SnapshotAssembly(message)
        count = len(message.records)
        if message.offset == len(assembly.records) and message.offset + count <= assembly.total:
            assembly.records.extend(message.records)
            # The records never pass the total (the test above): `>=` is `==`.
            if len(assembly.records) == assembly.total:  # equivalent: Eq_GtE
                self._snapshot_assembly = None
                return tuple(assembly.records)
        received = len(assembly.records)
        self._send(
            message.primary_id,
            SnapshotReply(self.view, self.replica_id, message.last_index, received, message.round),
        )
        return None

    def _on_forward(self, sender: int, message: ForwardRequest) -> None:
        # Request types are small ints, one object each: `is` is `==`.
        if message.customer_id < 0 or not (
            message.request_type == TYPE_READ  # equivalent: Eq_Is
            or (message.request_type == TYPE_ORDER  # equivalent: Eq_Is
                and message.order_number >= 0)
        ):
            # The forwarding replica's customers were checked there already.
            self._refuse("malformed_forward")
            return
        # A role is one of three str objects, and "primary" sorts last:
        # `is not` and `<` are `!=`.
        if self.role != PRIMARY:  # equivalent: NotEq_IsNot, NotEq_Lt
            self._send(sender, ForwardReply(message.tag, FORWARD_RETRY, -1, -1))
            return
        tag = message.tag

        def done(last, admin_id):
            value = -1 if last is None else last
            self._send(sender, ForwardReply(tag, FORWARD_OK, value, admin_id))

        retry = lambda: self._send(sender, ForwardReply(tag, FORWARD_RETRY, -1, -1))
        self._serve(message.request_type, message.customer_id, message.order_number, _Waiter(done, retry))

    def _on_forward_reply(self, sender: int, message: ForwardReply) -> None:
        request = self._requests.get(message.tag)
        if request is None:
            return
        if request.routed_to != sender:
            self._refuse("unasked_forward_reply")
            return
        # Statuses are small ints, one object each: `is` is `==`.
        if message.status == FORWARD_OK:  # equivalent: Eq_Is
            request.done(None if message.value < 0 else message.value, message.admin_id)
        else:
            # The replica we asked is no primary (any more): wait for the next
            # primary to be known, or try again after a heartbeat.
            request.routed_to = None
            if not request.retry_pending():
                request.retry_call = self._clock.callLater(
                    self.timeouts.heartbeat, self._reroute, message.tag
                )

    # ------------------------------------------------------------ elections

    def _log_is_current(self, last_view: int, last_index: int) -> bool:
        log = self.replicated_log
        return (last_view, last_index) >= (log.last_view, log.last_index)

    def _on_vote_request(self, request: VoteRequest) -> None:
        if request.pre:
            quiet = self._primary_heard_at is None or (
                self._clock.seconds() - self._primary_heard_at >= self.timeouts.election
            )
            granted = (
                request.view > self.view
                and self.role != PRIMARY  # equivalent: NotEq_Lt, NotEq_IsNot
                and quiet
                and self._log_is_current(request.last_view, request.last_index)
            )
            # A refusal carries this replica's own view: an asker behind it
            # adopts it, or it would keep asking for a view that is taken
            # (and may hold the only log a new primary can come from).
            # Nobody adopts the view a pre-vote asks for, so a rejoiner
            # still cannot depose a working primary this way.
            view = request.view if granted else self.view
            self._send(request.candidate_id, VoteReply(view, self.replica_id, granted, True))
            return
        if request.view > self.view:
            self._adopt_view(request.view, None)
        granted = (
            request.view == self.view  # equivalent: Eq_GtE (a higher view was adopted above)
            and self.voted_for in (None, request.candidate_id)
            and self._log_is_current(request.last_view, request.last_index)
        )
        if granted:
            self.voted_for = request.candidate_id
            self._storage.save_vote(self.view, self.voted_for)
            self._last_contact = self._clock.seconds()
        self._send(request.candidate_id, VoteReply(self.view, self.replica_id, granted, False))

    def _on_vote_reply(self, reply: VoteReply) -> None:
        if reply.pre:
            if not reply.granted:
                if reply.view > self.view:
                    self._adopt_view(reply.view, None)
            elif (self.role == FOLLOWER  # equivalent: Eq_Is
                  and reply.view == self.view + 1):
                self._pre_votes.add(reply.replica_id)
                # The count grows by one from below the majority, which starts
                # the election and ends the counting: it never passes it.
                if len(self._pre_votes) >= self.majority:  # equivalent: GtE_Is, GtE_Eq
                    self._start_election()
            return
        # A higher view is adopted here, so below reply.view is not above self.view.
        if reply.view > self.view:
            self._adopt_view(reply.view, None)
        elif (self.role == CANDIDATE  # equivalent: Eq_Is, Eq_LtE
              and reply.view == self.view and reply.granted):  # equivalent: Eq_GtE
            self._votes.add(reply.replica_id)
            if len(self._votes) >= self.majority:  # equivalent: GtE_Is, GtE_Eq (as for pre-votes)
                self._become_primary()

    def _start_pre_vote(self) -> None:
        self._last_contact = self._clock.seconds()
        self._draw_election_span()
        # No view passes MAX_VIEW: a message beyond it is refused, and a
        # replica stands for election only below it.
        if self.view >= MAX_VIEW:  # equivalent: GtE_Eq
            self._counters.increment("laptop_view_limit_reached")
            self.log.error(
                "replica {id} cannot stand for election: view {view} is at the limit {limit}",
                id=self.replica_id, view=self.view, limit=MAX_VIEW,
            )
            return
        # Only a follower or a candidate gets here.
        if self.role == CANDIDATE:  # equivalent: Eq_Is, Eq_LtE, Eq_GtE
            self.role = FOLLOWER
        self._pre_votes = {self.replica_id}
        log = self.replicated_log
        request = VoteRequest(self.view + 1, self.replica_id, log.last_index, log.last_view, True)
        for peer in self.peer_ids:
            self._send(peer, request)
        # One vote so far, its own: a majority only of a lone replica (1 >= m is 1 == m).
        if len(self._pre_votes) >= self.majority:  # equivalent: GtE_Is, GtE_Eq
            self._start_election()

    def _start_election(self) -> None:
        self._pre_votes = set()
        self.view += 1
        self._snapshot_assembly = None
        self.role = CANDIDATE
        self.voted_for = self.replica_id
        self.primary_id = None
        self._storage.save_vote(self.view, self.voted_for)
        self._counters.increment("laptop_elections")
        self._votes = {self.replica_id}
        log = self.replicated_log
        request = VoteRequest(self.view, self.replica_id, log.last_index, log.last_view, False)
        for peer in self.peer_ids:
            self._send(peer, request)
        if len(self._votes) >= self.majority:  # equivalent: GtE_Is, GtE_Eq (as for pre-votes)
            self._become_primary()

    def _become_primary(self) -> None:
        now = self._clock.seconds()
        self.role = PRIMARY
        self._counters.increment("laptop_views_led")
        self.log.info("replica {id} is primary of view {view}", id=self.replica_id, view=self.view)
        log = self.replicated_log
        self._peers = {peer: _PeerProgress(log.last_index + 1, now) for peer in self.peer_ids}
        self.live = set()
        self._pending_orders = {}
        for index in range(self.commit_index + 1, log.last_index + 1):
            entry = log.entry(index)
            # A log holds opcodes 0 and 1 only (small ints: `is` is `==`; none
            # above it for `>=`), and `<=` adds only the no-ops too, under
            # customer -1, which no valid order names.
            if entry.opcode == OPCODE_SET_LAST_ORDER:  # equivalent: Eq_Is, Eq_LtE, Eq_GtE
                self._pending_orders[entry.customer_id] = (entry.order_number, index)
        self._view_start_index = self._append(Entry(self.view, OPCODE_NOOP, -1, -1))
        self._set_primary(self.replica_id)

    def _adopt_view(self, view: int, primary_id: Optional[int]) -> None:
        # Never called with an older view (every caller checks).
        if view > self.view:  # equivalent: Gt_NotEq
            self.view = view
            self.voted_for = None
            self._snapshot_assembly = None  # only the primary of its view may complete it
            self._storage.save_vote(self.view, self.voted_for)
        if self.role != FOLLOWER:  # equivalent: NotEq_IsNot
            self._step_down(primary_id)
        else:
            self._set_primary(primary_id)

    def _step_down(self, primary_id: Optional[int]) -> None:
        was_primary = self.role == PRIMARY  # equivalent: Eq_GtE, Eq_Is
        self.role = FOLLOWER
        self._last_contact = self._clock.seconds()
        if was_primary:
            self._counters.increment("laptop_step_downs")
            self.log.info("replica {id} steps down in view {view}", id=self.replica_id, view=self.view)
            waiters = [w for ws in self._order_waiters.values() for w in ws]
            waiters.extend(read[3] for read in self._read_waiters)
            self._order_waiters = {}
            self._read_waiters = []
            self._pending_orders = {}
            self.live = set()
            self._peers = {}
            self.primary_id = None
            for waiter in waiters:
                waiter.retry()
        self._set_primary(primary_id)

    def _set_primary(self, primary_id: Optional[int]) -> None:
        """
        Follow ``primary_id`` (None: no primary known).  Called only when
        the primary or the view changes, so a known primary is a primary
        of a newer view, or another replica: every request not already with
        it goes to it now, also one that replica refused while it was
        between views.  Without a primary, requests stay where they went.
        """
        self.primary_id = primary_id
        if primary_id is not None:
            self._reroute_all()

    def _draw_election_span(self) -> None:
        rank = max(self.replica_id, 0)
        self._election_span = (
            self.timeouts.election
            + rank * self.timeouts.election_stagger
            + self._random.uniform(0, self.timeouts.election_stagger / 2)
        )

    # ------------------------------------------------------------ timers

    def _tick(self) -> None:
        self._tick_call = self._clock.callLater(self.timeouts.heartbeat, self._tick)
        now = self._clock.seconds()
        stalled = now - self._last_tick_at - self.timeouts.heartbeat
        self._last_tick_at = now
        self._expire_requests(now)
        if self.role == PRIMARY:  # equivalent: Eq_Is, Eq_GtE
            if self.timeouts.backup / 2 <= stalled < self.timeouts.election:
                self._credit_stall(stalled)
            self._check_backups(now)
            return
        if self._requests and self.primary_id is not None:
            self._resend_forwarded(now)
        if now - self._last_contact >= self._election_span:
            self._start_pre_vote()

    def _credit_stall(self, stalled: float) -> None:
        """
        This primary did not run for ``stalled`` seconds (a long batch of
        work, a pause of the whole process): its overdue tick runs before it
        reads what the backups sent meanwhile, so that time is no silence of
        theirs.  Only pauses shorter than the election timeout are credited:
        after a longer one the backups may have elected another primary, and
        this one gives way as before.  Nor are ticks a little late, as on a
        busy machine all the time: crediting those would let a frozen backup
        hold commits up well past the backup timeout.
        """
        now = self._clock.seconds()
        for progress in self._peers.values():
            progress.heard_at = min(progress.heard_at + stalled, now)
        self._counters.increment("laptop_primary_stalls")

    def _check_backups(self, now: float) -> None:
        heard = 1
        for peer, progress in self._peers.items():
            silent = now - progress.heard_at
            if silent < self.timeouts.election:
                heard += 1
            if peer in self.live and silent >= self.timeouts.backup:
                self._drop_backup(peer, "silent for %.2f s" % (silent,))
            if (
                progress.in_flight_since is not None
                and now - progress.in_flight_since >= self.timeouts.retransmit
            ):
                progress.in_flight_since = None
                progress.next_index = progress.match_index + 1
        if heard < self.majority:
            self.log.warn(
                "replica {id} lost contact with a majority; stepping down", id=self.replica_id
            )
            self._step_down(None)
            return
        self._send_round()
        self._answer_reads()
