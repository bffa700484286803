"""
The history checker: it accepts what one serial order explains and names
each kind of violation it exists to catch.
"""

from twisted.trial import unittest

from marketplace.laptop.history import History, check_history


def problems(build, final=None):
    history = History()
    build(history)
    return check_history(history.operations, final)


class HistoryCheckerTests(unittest.TestCase):
    def test_consistent_history(self):
        def build(h):
            h.order(1, 0, 0.0, 1.0, True)
            h.read(1, 0, 1.5, 2.0)
            h.order(1, 1, 2.0, 3.0, True)
            h.read(1, 0, 2.5, 2.6)  # concurrent with order 1: the old value is allowed
            h.read(1, 1, 2.5, 3.5)  # ... and so is the new one
            h.order(1, 2, 4.0, 5.0, False)  # failed: may or may not have happened
            h.read(1, 2, 6.0, 6.5)
            h.read(2, None, 0.0, 1.0)

        self.assertEqual(problems(build, {1: 2}), [])

    def test_read_missing_an_acknowledged_order(self):
        def build(h):
            h.order(1, 4, 0.0, 0.5, True)
            h.order(1, 5, 0.5, 1.0, True)
            h.read(1, 4, 2.0, 3.0)

        self.assertEqual(len(problems(build)), 1)
        self.assertIn("acknowledged before it started", problems(build)[0])

    def test_read_of_unknown_after_acknowledged_order(self):
        def build(h):
            h.order(1, 0, 0.0, 1.0, True)
            h.read(1, None, 2.0, 3.0)

        self.assertIn("acknowledged before it started", problems(build)[0])

    def test_read_going_back_in_time(self):
        def build(h):
            h.order(1, 1, 0.0, 10.0, True)
            h.order(1, 0, 0.0, 0.5, False)
            h.read(1, 1, 1.0, 2.0)
            h.read(1, 0, 3.0, 4.0)

        found = problems(build)
        self.assertEqual(len(found), 1)
        self.assertIn("older than 1 read before it", found[0])

    def test_read_of_the_future_or_of_nothing(self):
        def future(h):
            h.read(1, 3, 0.0, 1.0)
            h.order(1, 3, 2.0, 3.0, True)

        def never(h):
            h.order(1, 3, 0.0, 1.0, True)
            h.read(1, 4, 2.0, 3.0)

        self.assertIn("before it was ordered", problems(future)[0])
        self.assertIn("never ordered", problems(never)[0])

    def test_final_record_must_hold_acknowledged_orders(self):
        def build(h):
            h.order(1, 7, 0.0, 1.0, True)
            h.order(2, 3, 0.0, 1.0, True)

        self.assertEqual(problems(build, {1: 7, 2: 3}), [])
        found = problems(build, {1: 6})
        self.assertEqual(len(found), 2)
        self.assertIn("lost acknowledged order 7", found[0])
        self.assertIn("final record None", found[1])
