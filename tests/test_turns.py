"""L{protocols.turns.TurnFlusher}: flushes run once the reactor turn ends, once each."""

from twisted.internet import task
from twisted.trial import unittest

from protocols.turns import TurnFlusher


class TurnFlusherTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.flusher = TurnFlusher(self.clock)
        self.ran = []

    def flush(self, name):
        return lambda: self.ran.append(name)

    def test_flushes_run_when_the_turn_ends_in_order(self):
        a, b = (self.flush("a"),), (self.flush("b1"), self.flush("b2"))
        self.flusher.schedule(a)
        self.flusher.schedule(b)
        self.assertEqual(self.ran, [])
        self.clock.advance(0)
        self.assertEqual(self.ran, ["a", "b1", "b2"])

    def test_one_call_per_turn(self):
        self.flusher.schedule((self.flush("a"),))
        self.flusher.schedule((self.flush("b"),))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_the_same_flushes_scheduled_again_run_once_where_first_scheduled(self):
        room, reply = (self.flush("a"), self.flush("b")), (self.flush("reply"),)
        for _ in range(3):
            self.flusher.schedule(room)
            self.flusher.schedule(reply)
        self.clock.advance(0)
        self.assertEqual(self.ran, ["a", "b", "reply"])

    def test_flushes_scheduled_while_flushing_are_not_lost(self):
        later = (self.flush("later"),)
        self.flusher.schedule((lambda: self.flusher.schedule(later),))
        self.clock.advance(0)
        self.assertEqual(self.ran, ["later"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_nothing_scheduled_nothing_called(self):
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
