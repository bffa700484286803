"""
A deterministic simulated network of ``Replica`` state machines.

Each replica has its own ``task.Clock`` so a frozen replica's timers stand
still (as under SIGSTOP) and fire late, all at once, when it resumes.
Messages take one step to arrive; partitions drop them silently (as a
black-holing network would), a crashed replica's links report loss (as a
kill -9 does to TCP).
"""

import random

from twisted.internet import task
from twisted.trial.unittest import FailTest

from marketplace.laptop.replication import PRIMARY, Replica, Timeouts
from marketplace.laptop.storage import MemoryStorage, Recovered
from protocols.laptop import FrameTooLarge, decode_replica_message, encode_replica_message

STEP = 0.005


class SimulatedDisk(MemoryStorage):
    """Storage that survives a simulated crash, like ``FileStorage`` does a real one."""

    durable = True

    def __init__(self):
        self.view, self.voted_for = 0, None
        self.snapshot = (-1, -1, ())
        self.entries = []

    def load(self):
        index, view, records = self.snapshot
        return Recovered(self.view, self.voted_for, index, view, records, tuple(self.entries))

    def save_vote(self, view, voted_for):
        self.view, self.voted_for = view, voted_for

    def append(self, first_index, entries):
        del self.entries[first_index - self.snapshot[0] - 1 :]
        self.entries.extend(entries)

    def save_snapshot(self, index, view, records, entries_after):
        self.snapshot = (index, view, tuple(records))
        self.entries = list(entries_after)


class SimulatedNetwork:
    """
    ``wire=True`` sends every message through the codec, as a replica link
    does: one whose frame would be too large is not sent (the send says
    so), and the receiver gets what decoding the frame gives.
    """

    def __init__(self, count=3, timeouts=Timeouts(), seed=0, durable=False, wire=False,
                 **replica_options):
        self.ids = list(range(count))
        self.timeouts = timeouts
        self.now = 0.0
        self.random = random.Random(seed)
        self.clocks = {}
        self.replicas = {}
        self.disks = {i: (SimulatedDisk() if durable else None) for i in self.ids}
        self.down = set()
        self.frozen = {}
        self.blocked = set()
        self.in_flight = []
        self.held = {i: [] for i in self.ids}
        self.primaries_by_view = {}
        #: set to a list to record every message sent, as (source, target, message)
        self.trace = None
        self.wire = wire
        self.replica_options = replica_options
        for i in self.ids:
            self._boot(i)

    def _boot(self, i):
        clock = task.Clock()
        clock.advance(self.now)
        self.clocks[i] = clock
        replica = Replica(
            i,
            [p for p in self.ids if p != i],
            clock,
            lambda peer, message, source=i: self._send(source, peer, message),
            storage=self.disks[i],
            timeouts=self.timeouts,
            rng=random.Random(self.random.random()),
            **self.replica_options,
        )
        self.replicas[i] = replica
        replica.start()

    # ------------------------------------------------------------ faults

    def crash(self, i):
        self.down.add(i)
        self.frozen.pop(i, None)
        self.held[i] = []
        self.in_flight = [m for m in self.in_flight if i not in (m[0], m[1])]
        for peer in self.ids:
            if peer != i and peer not in self.down:
                self.replicas[peer].peer_lost(i)

    def restart(self, i):
        self.down.discard(i)
        self._boot(i)
        for peer in self.ids:
            if peer != i and peer not in self.down:
                self.replicas[peer].peer_connected(i)
                self.replicas[i].peer_connected(peer)

    def freeze(self, i):
        self.frozen[i] = self.now

    def resume(self, i):
        since = self.frozen.pop(i)
        self.clocks[i].advance(self.now - since)
        held, self.held[i] = self.held[i], []
        for source, message in held:
            self._deliver(source, i, message)

    def partition(self, *groups):
        """Only replicas in the same group can talk."""
        self.blocked = {
            (a, b)
            for a in self.ids
            for b in self.ids
            if not any(a in group and b in group for group in groups)
        }

    def heal(self):
        self.blocked = set()

    # ------------------------------------------------------------ running

    def _send(self, source, target, message):
        if target in self.down or source in self.down:
            return False
        if self.wire:
            try:
                frame = encode_replica_message(message)
            except FrameTooLarge:
                return False
            message, _ = decode_replica_message(frame)
        if self.trace is not None:
            self.trace.append((source, target, message))
        self.in_flight.append((source, target, message))
        return True

    def _deliver(self, source, target, message):
        if target in self.down or (source, target) in self.blocked:
            return
        if target in self.frozen:
            self.held[target].append((source, message))
            return
        self.replicas[target].receive(source, message)

    def step(self):
        self.now += STEP
        for i in self.ids:
            if i not in self.down and i not in self.frozen:
                self.clocks[i].advance(STEP)
        batch, self.in_flight = self.in_flight, []
        for source, target, message in batch:
            if source not in self.down:
                self._deliver(source, target, message)
        self._check_one_primary_per_view()

    def _check_one_primary_per_view(self):
        for i, replica in self.replicas.items():
            if i in self.down or replica.role != PRIMARY:
                continue
            leader = self.primaries_by_view.setdefault(replica.view, i)
            if leader != i:
                raise FailTest(
                    f"two primaries in view {replica.view}: {leader} and {i}"
                )

    def run(self, seconds):
        for _ in range(int(round(seconds / STEP))):
            self.step()

    def run_until(self, predicate, limit=10.0):
        """Step until ``predicate()`` holds; fail after ``limit`` simulated seconds."""
        for _ in range(int(limit / STEP)):
            if predicate():
                return self.now
            self.step()
        if predicate():
            return self.now
        raise FailTest(f"condition not reached within {limit} simulated seconds")

    # ------------------------------------------------------------ views of the cluster

    def primary(self):
        """The primary of the highest view among running replicas, if any."""
        best = None
        for i, replica in self.replicas.items():
            if i in self.down or i in self.frozen or replica.role != PRIMARY:
                continue
            if best is None or replica.view > self.replicas[best].view:
                best = i
        return best

    def running(self):
        return [i for i in self.ids if i not in self.down and i not in self.frozen]

    def books(self, ids=None):
        return {i: self.replicas[i].book.records() for i in (ids or self.running())}

    def converged(self, ids=None):
        """Every replica in ``ids`` has committed the primary's whole log."""
        ids = ids or self.running()
        primary = self.primary()
        if primary is None or primary not in ids:
            return False
        last = self.replicas[primary].replicated_log.last_index
        books = set(self.books(ids).values())
        return len(books) == 1 and all(self.replicas[i].commit_index == last for i in ids)
