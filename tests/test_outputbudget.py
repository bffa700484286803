"""The process-wide bound on queued output (protocols.outputbudget)."""

from twisted.trial import unittest

from protocols.outputbudget import OutputBudget


class Reader:
    def __init__(self, name):
        self.name = name
        self.shed = 0

    def shed_output(self):
        self.shed += 1

    def __repr__(self):
        return self.name


class OutputBudgetTests(unittest.TestCase):
    def test_the_total_follows_each_connections_latest_figure(self):
        budget = OutputBudget(1000)
        a, b = Reader("a"), Reader("b")
        budget.update(a, 300)
        budget.update(b, 200)
        budget.update(a, 100)
        self.assertEqual(budget.total, 300)
        budget.update(b, 0)
        budget.forget(a)
        budget.forget(a)
        self.assertEqual(budget.total, 0)

    def test_over_the_limit_the_largest_backlogs_go_first_until_within(self):
        budget = OutputBudget(1000)
        readers = {name: Reader(name) for name in "abcde"}
        for name, queued in zip("abcde", (100, 400, 50, 300, 150)):
            budget.update(readers[name], queued)
        self.assertEqual(budget.total, 1000)
        self.assertEqual([r.shed for r in readers.values()], [0] * 5)
        budget.update(readers["c"], 450)  # 1400: c, now the largest, goes, and that is enough
        self.assertEqual({name: r.shed for name, r in readers.items()},
                         {"a": 0, "b": 0, "c": 1, "d": 0, "e": 0})
        self.assertEqual(budget.total, 950)
        budget.update(readers["a"], 700)  # 1550: a (700) is enough
        self.assertEqual(readers["a"].shed, 1)
        self.assertEqual(budget.total, 850)
        self.assertEqual(sum(r.shed for r in readers.values()), 2)

    def test_a_shed_connection_that_reports_again_is_counted_again(self):
        budget = OutputBudget(10)
        reader = Reader("a")
        budget.update(reader, 11)
        self.assertEqual((reader.shed, budget.total), (1, 0))
        budget.forget(reader)
        self.assertEqual(budget.total, 0)

    def test_the_limit_must_be_positive(self):
        self.assertRaises(ValueError, OutputBudget, 0)
