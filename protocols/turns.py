"""
Flushing connections' output once per reactor turn.

A server that answers requests and fans chat pushes out to many
connections produces, within one reactor turn, several frames for the same
connection.  Writing each at once would cost a system call per frame;
queueing them in the connection and flushing every queued connection once
the turn's events are handled costs one per connection per turn, and the
frames still leave before the reactor polls again, with no timer delaying
them.
"""

from __future__ import annotations

from typing import Callable, Sequence


class TurnFlusher:
    """
    Runs the flushes scheduled during a reactor turn once its events are
    handled: a zero-delay call, which the reactor runs right after the
    current turn's events and before it polls again.

    Flushes are scheduled as sequences (a room's fan-out: every member
    connection's flush; a reply: its own connection's), and a sequence
    scheduled again in the same turn runs once: a turn with several chats
    to one room flushes its members once, not once per chat.  A connection
    may still be flushed twice (its reply and a fan-out); flushing an
    already flushed connection must be a cheap no-op.
    """

    def __init__(self, clock) -> None:
        self._clock = clock
        # id -> sequence, in the order first scheduled; the sequences are
        # held here until they run, so their ids cannot be reused meanwhile.
        self._pending: dict[int, Sequence[Callable[[], None]]] = {}

    def schedule(self, flushes: Sequence[Callable[[], None]]) -> None:
        """Run each of C{flushes} at the end of this turn (once, however often scheduled)."""
        pending = self._pending
        if not pending:
            self._clock.callLater(0, self._run)
        pending.setdefault(id(flushes), flushes)

    def _run(self) -> None:
        pending, self._pending = self._pending, {}
        for flushes in pending.values():
            for flush in flushes:
                flush()
