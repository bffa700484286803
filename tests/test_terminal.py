"""Tests for L{marketplace.terminal}."""

from twisted.trial import unittest

from marketplace.terminal import printable


class PrintableTests(unittest.TestCase):
    def test_plain_text_is_unchanged(self):
        self.assertEqual(printable("red mug, 4.50 € – ünïcode \\ ok"),
                         "red mug, 4.50 € – ünïcode \\ ok")

    def test_controls_become_visible_escapes(self):
        self.assertEqual(printable("a\rb\nc\td"), "a\\rb\\nc\\td")
        self.assertEqual(printable("\x1b[2J\x1b]0;title\x07"), "\\x1b[2J\\x1b]0;title\\x07")
        self.assertEqual(printable("\x00\x7f\x85\x9b"), "\\x00\\x7f\\x85\\x9b")
        self.assertEqual(printable("x\u2028y\u2029z"), "x\\u2028y\\u2029z")

    def test_no_control_character_survives(self):
        shown = printable("".join(map(chr, range(0x3000))))
        self.assertFalse([c for c in shown if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0
                          or c in "\u2028\u2029"])
