"""L{protocols.turns.TurnFlusher}: flushes run once the reactor turn ends, once each."""

import attrs

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

    def test_a_failing_flush_does_not_stop_the_others(self):
        def broken():
            raise RuntimeError("broken connection")

        self.flusher.schedule((self.flush("a"), broken, self.flush("b")))
        self.flusher.schedule((self.flush("c"),))
        self.clock.advance(0)
        self.assertEqual(self.ran, ["a", "b", "c"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_nothing_scheduled_nothing_called(self):
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


@attrs.define
class StepClock:
    """Zero-delay calls run one reactor iteration at a time, as a real reactor does."""

    due: list = attrs.Factory(list)

    def callLater(self, delay, function, *args):
        assert delay == 0
        self.due.append((function, args))

    def iterate(self):
        due, self.due = self.due, []
        for function, args in due:
            function(*args)


class LookAgainTests(unittest.TestCase):
    def test_fan_out_flush_follows_one_more_iteration(self):
        clock = StepClock()
        flusher = TurnFlusher(clock)
        ran = []
        flusher.schedule((lambda: ran.append("early"),), fan_out=True)
        clock.iterate()
        self.assertEqual(ran, [])
        # Arrived during the extra iteration: flushed with the first.
        flusher.schedule((lambda: ran.append("late"),))
        clock.iterate()
        self.assertEqual(ran, ["early", "late"])
        self.assertEqual(clock.due, [])

    def test_every_fan_out_flush_gets_its_own_extra_iteration(self):
        clock = StepClock()
        flusher = TurnFlusher(clock)
        ran = []
        for turn in range(3):
            flusher.schedule((lambda turn=turn: ran.append(turn),), fan_out=True)
            clock.iterate()
            clock.iterate()
        self.assertEqual(ran, [0, 1, 2])

    def test_replies_only_are_flushed_at_once(self):
        clock = StepClock()
        flusher = TurnFlusher(clock)
        ran = []
        flusher.schedule((lambda: ran.append("reply"),))
        clock.iterate()
        self.assertEqual(ran, ["reply"])
        self.assertEqual(clock.due, [])

    def test_a_fan_out_joining_replies_makes_the_turn_look_again(self):
        clock = StepClock()
        flusher = TurnFlusher(clock)
        ran = []
        flusher.schedule((lambda: ran.append("reply"),))
        flusher.schedule((lambda: ran.append("push"),), fan_out=True)
        clock.iterate()
        self.assertEqual(ran, [])
        clock.iterate()
        self.assertEqual(ran, ["reply", "push"])
