"""
Payload checks: exact money, item rules, ids given as numbers or strings.
"""

from decimal import Decimal

from twisted.trial import unittest

from marketplace.market import search, validation
from marketplace.store import market_rules
from marketplace.market.errors import ClientError

LISTING = {"item_name": "Lamp", "category": 2, "keywords": ["Light", "light", "desk"],
           "condition": "Used", "price": Decimal("9.99"), "quantity": 3}


class PriceTests(unittest.TestCase):
    def test_exact_cents_from_every_json_spelling(self):
        for value, cents in [(Decimal("9.99"), 999), (9.99, 999), ("0.1", 10), (12, 1200),
                             ("0", 0), (0.29, 29), (Decimal("1E+2"), 10000)]:
            self.assertEqual(validation.price_cents(value), cents, value)

    def test_refusals(self):
        for value in (-1, "1.234", "abc", True, None, float("nan"), "Infinity", [1], 2**60,
                      1e30, Decimal("1E+30"), "1E+400"):
            self.assertRaises(ClientError, validation.price_cents, value)

    def test_a_price_is_at_most_ten_million(self):
        self.assertEqual(validation.price_cents("10000000.00"), validation.MAX_PRICE_CENTS)
        for value in ("10000000.01", Decimal("90071992547409.91")):
            error = self.assertRaises(ClientError, validation.price_cents, value)
            self.assertEqual(error.message, "'price' must be at most 10000000.00")
        self.assertRaises(ClientError, validation.internal_price_cents,
                          {"price_cents": validation.MAX_PRICE_CENTS + 1})

    def test_a_purchase_total_is_at_most_a_hundred_million(self):
        self.assertEqual(validation.purchase_total(validation.MAX_PURCHASE_CENTS),
                         validation.MAX_PURCHASE_CENTS)
        error = self.assertRaises(ClientError, validation.purchase_total,
                                  validation.MAX_PURCHASE_CENTS + 1)
        self.assertIn("above the maximum of 100000000.00 per purchase", error.message)

    def test_cents_to_decimal_is_exact(self):
        self.assertEqual(validation.cents_to_decimal(1999), Decimal("19.99"))
        self.assertEqual(validation.cents_to_decimal(2**53 - 1), Decimal("90071992547409.91"))


class ItemDraftTests(unittest.TestCase):
    def test_a_listing_is_normalised(self):
        draft = validation.item_draft(LISTING)
        self.assertEqual(draft, validation.ItemDraft("Lamp", 2, ("light", "desk"), False, 999, 3))
        self.assertEqual(validation.item_draft_from_internal(
            {**draft.to_payload()}), draft)

    def test_each_rule_names_its_field(self):
        cases = [({"item_name": ""}, "item_name"), ({"item_name": "n" * 33}, "32"),
                 ({"category": -1}, "category"), ({"keywords": "x" * 9}, "keyword"),
                 ({"keywords": [1]}, "list of strings"), ({"keywords": ["a b"]}, "keyword"),
                 ({"condition": 3}, "condition"), ({"quantity": 1.5}, "quantity")]
        for change, words in cases:
            error = self.assertRaises(ClientError, validation.item_draft, {**LISTING, **change})
            self.assertIn(words, error.message)
        error = self.assertRaises(ClientError, validation.item_draft,
                                  {k: v for k, v in LISTING.items() if k != "price"})
        self.assertEqual(error.message, "missing field 'price'")



class KeywordTests(unittest.TestCase):
    def test_duplicates_count_once(self):
        self.assertEqual(validation.keywords(["a", "A", " b", "c", "d", "e", "a", "E"]),
                         ("a", "b", "c", "d", "e"))

    def test_refused_at_the_first_keyword_over_the_limit(self):
        error = self.assertRaises(ClientError, validation.keywords,
                                  ["a", "b", "c", "d", "e", "f", 1])
        self.assertEqual(error.message, "at most 5 keywords are allowed")

    def test_a_long_list_is_refused_unread(self):
        self.assertEqual(validation.keywords(["red"] * validation.MAX_KEYWORD_ENTRIES), ("red",))
        error = self.assertRaises(ClientError, validation.keywords,
                                  ["red"] * (validation.MAX_KEYWORD_ENTRIES + 1) + [1])
        self.assertIn(f"at most {validation.MAX_KEYWORD_ENTRIES} entries", error.message)

class FieldTests(unittest.TestCase):
    def test_item_ids(self):
        self.assertEqual(validation.item_id({"item_id": "42"}), 42)
        self.assertEqual(validation.item_id({"item_id": 42}), 42)
        for bad in (0, "4x", True, None, 2**60, "-3"):
            self.assertRaises(ClientError, validation.item_id, {"item_id": bad})

    def test_stock_change_is_signed_and_non_zero(self):
        self.assertEqual(validation.stock_change({"quantity": -4}), -4)
        self.assertRaises(ClientError, validation.stock_change, {"quantity": 0})

    def test_boolean_takes_the_first_name_present(self):
        self.assertFalse(validation.boolean({"is_positive": False}, "thumbs_up", "is_positive"))
        self.assertRaises(ClientError, validation.boolean, {"thumbs_up": "yes"}, "thumbs_up")
        error = self.assertRaises(ClientError, validation.boolean, {}, "thumbs_up", "is_positive")
        self.assertIn("'thumbs_up' or 'is_positive'", error.message)


class SearchRuleTests(unittest.TestCase):
    def test_rank_by_score_then_oldest(self):
        self.assertEqual(market_rules.rank({5: 1, 3: 2, 9: 2, 1: 0}), [3, 9, 5, 1])

    def test_page_bounds(self):
        self.assertEqual(search.page_bounds({}), (0, search.DEFAULT_PAGE))
        self.assertEqual(search.page_bounds({"offset": 40, "limit": "10"}), (40, 10))
        self.assertRaises(ClientError, search.page_bounds, {"limit": search.MAX_PAGE + 1})
        self.assertRaises(ClientError, search.page_bounds, {"limit": 0})
