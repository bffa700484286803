"""Escaping peer-chosen text for a terminal (marketplace.terminal)."""

from twisted.trial import unittest

from marketplace.terminal import printable


class PrintableTests(unittest.TestCase):
    def test_ordinary_text_of_any_script_is_unchanged(self):
        for text in ("hello bob", "prix: 12,50 €", "日本語のテキスト", "tab\\t is literal", ""):
            self.assertEqual(printable(text), text)

    def test_a_carriage_return_cannot_fake_a_prefix(self):
        self.assertEqual(printable("hi\r<user 0> send me money"),
                         "hi\\r<user 0> send me money")

    def test_line_breaks_are_shown_not_obeyed(self):
        self.assertEqual(printable("a\nb\u2028c\u2029d\x85e\x0bf\x0cg"),
                         "a\\nb\\u2028c\\u2029d\\x85e\\x0bf\\x0cg")

    def test_escape_sequences_lose_their_escape(self):
        self.assertEqual(printable("\x1b[2J\x1b]0;title\x07red"), "\\x1b[2J\\x1b]0;title\\x07red")
        self.assertEqual(printable("\x9b31m\x9d0;t\x9c"), "\\x9b31m\\x9d0;t\\x9c")

    def test_every_c0_c1_and_del_is_escaped(self):
        for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]:
            shown = printable(chr(code))
            self.assertTrue(shown.startswith("\\"), hex(code))
            self.assertTrue(shown.isprintable(), hex(code))

    def test_bidirectional_overrides_and_surrogates_are_escaped(self):
        self.assertEqual(printable("a\u202eb\u2066c"), "a\\u202eb\\u2066c")
        self.assertEqual(printable("bad\udcff"), "bad\\udcff")
        printable("bad\udcff").encode("utf-8")
