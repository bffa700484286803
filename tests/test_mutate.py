"""
Tests for L{tests.support.mutate}, the driver of C{./dev mutate}: its tables
must name what exists, or a mutation run silently tests nothing.
"""

import argparse
import json
import os

from twisted.python.reflect import namedAny
from twisted.trial import unittest

from tests.support import mutate


class TablesTests(unittest.TestCase):
    def test_every_core_module_and_its_tests_exist(self):
        for module, tests in mutate.CORE.items():
            self.assertTrue(os.path.isfile(os.path.join(mutate.REPO, module)), module)
            for name in tests:
                namedAny(name)

    def test_every_lua_mutant_applies_to_exactly_one_place(self):
        scripts = os.path.join(mutate.REPO, "marketplace", "store", "redis", "scripts")
        for script, text, mutant, _ in mutate.LUA_MUTANTS:
            with open(os.path.join(scripts, script)) as file:
                self.assertEqual(file.read().count(text), 1, (script, text))
            self.assertNotEqual(text, mutant)
            for name in mutate.lua_tests(script):
                namedAny(name)


class TallyTests(unittest.TestCase):
    def test_counts_killed_and_names_survivors(self):
        def line(outcome, line_number, operator="core/NumberReplacer"):
            item = {"mutations": [{"start_pos": [line_number, 4], "operator_name": operator,
                                   "occurrence": 0}]}
            result = None if outcome is None else {"worker_outcome": "normal",
                                                   "test_outcome": outcome}
            return json.dumps([item, result])

        dump = "\n".join([line("killed", 3), line("survived", 7), line("killed", 9),
                          line(None, 11)])
        self.assertEqual(mutate.tally(dump), {
            "killed": 2, "survivors": ["line 7: core/NumberReplacer #0"], "skipped": 1})

    def test_a_survivor_shows_the_lines_its_mutant_changed(self):
        diff = ("--- mutation diff ---\n--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,3 @@\n"
                " x = 1\n-if a > b:\n+if a >= b:\n")
        item = {"mutations": [{"start_pos": [2, 0], "operator_name": "core/Gt_GtE",
                               "occurrence": 0}]}
        dump = json.dumps([item, {"worker_outcome": "normal", "test_outcome": "survived",
                                  "diff": diff}])
        self.assertEqual(mutate.tally(dump)["survivors"],
                         ["line 2: core/Gt_GtE #0\n      -if a > b:\n      +if a >= b:"])


class AnnotationTests(unittest.TestCase):
    def test_annotations_are_found_and_nothing_else(self):
        source = ("def f(a: int | None, b=1 | 2) -> bytes | None:\n"
                  "    x: dict[str, int] = {}\n"
                  "    return a | b\n")
        spans = mutate.annotation_spans(source)
        for start, end, annotated in [((1, 13), (1, 14), True),    # int | None
                                      ((1, 39), (1, 40), True),    # -> bytes | None
                                      ((2, 7), (2, 21), True),     # dict[str, int]
                                      ((1, 25), (1, 26), False),   # the default 1 | 2
                                      ((3, 13), (3, 14), False)]:  # a | b
            self.assertEqual(mutate.inside(spans, start, end), annotated, start)


class LinesTests(unittest.TestCase):
    def test_a_range_of_lines(self):
        self.assertEqual(mutate.line_range("1-200"), (1, 200))
        self.assertEqual(mutate.line_range("7-7"), (7, 7))
        for bad in ("200-1", "0-5", "5", "a-b", "-5", "1-"):
            error = self.assertRaises(argparse.ArgumentTypeError, mutate.line_range, bad)
            self.assertIn(repr(bad), str(error))

    def test_mutants_outside_the_range_are_not_counted(self):
        item = {"mutations": [{"start_pos": [2, 0], "operator_name": "core/X", "occurrence": 0}]}
        outside = {"worker_outcome": "skipped", "output": mutate.OUTSIDE, "test_outcome": None}
        pragma = {"worker_outcome": "skipped", "output": None, "test_outcome": None}
        dump = "\n".join(json.dumps([item, result]) for result in (outside, pragma))
        self.assertEqual(mutate.tally(dump), {"killed": 0, "survivors": [], "skipped": 1})


class EquivalentMarkTests(unittest.TestCase):
    def test_only_the_named_operators_on_the_marked_line(self):
        source = ("x = 1\n"
                  "if a == b:  # equivalent: Eq_LtE, Eq_GtE -- b never exceeds a\n"
                  "    y = 2  # equivalent:\n")
        marks = mutate.equivalent_marks(source)
        self.assertEqual(marks, {2: ("Eq_LtE", "Eq_GtE")})
        for line, operator, marked in [(2, "Eq_LtE", True), (2, "Eq_GtE", True),
                                       (2, "Eq_NotEq", False), (1, "Eq_LtE", False)]:
            name = "core/ReplaceComparisonOperator_" + operator
            self.assertEqual(mutate.is_marked(marks, line, name), marked, (line, operator))

    def test_one_of_a_numbers_two_mutants(self):
        """NumberReplacer's mutants of a number alternate: +1 first, then -1."""
        marks = mutate.equivalent_marks("n += 1  # equivalent: NumberReplacer+1 -- only order counts\n")
        self.assertEqual(marks, {1: ("NumberReplacer+1",)})
        self.assertTrue(mutate.is_marked(marks, 1, "core/NumberReplacer", occurrence=6))
        self.assertFalse(mutate.is_marked(marks, 1, "core/NumberReplacer", occurrence=7))
        marks = mutate.equivalent_marks("n = 0  # equivalent: NumberReplacer-1\n")
        self.assertFalse(mutate.is_marked(marks, 1, "core/NumberReplacer", occurrence=0))
        self.assertTrue(mutate.is_marked(marks, 1, "core/NumberReplacer", occurrence=1))

    def test_an_operator_named_whole(self):
        marks = mutate.equivalent_marks("x = 0  # equivalent: NumberReplacer\n")
        self.assertTrue(mutate.is_marked(marks, 1, "core/NumberReplacer"))
        self.assertFalse(mutate.is_marked(marks, 1, "core/ReplaceUnaryOperator_USub_Not"))
