"""
Internal payload shapes survive the trip between services unchanged.
"""

from twisted.trial import unittest

from marketplace.market import internal
from marketplace.market.errors import ServerError
from marketplace.store.market_records import Item, Reservation, ReservedLine
from protocols.envelope import decode_json, encode_json

ITEM = Item(7, 3, "Lamp", 2, ("light", "desk"), True, 1999, 4, pos=1, neg=2, sold=5)


class InternalPayloadTests(unittest.TestCase):
    def test_reservation_round_trip(self):
        reservation = Reservation("buyer-1:k", "reserved", [ReservedLine(7, 3, 2, 1999)])
        payload = decode_json(encode_json(internal.reservation_to_payload(reservation)))
        self.assertEqual(internal.reservation_from_payload(payload), reservation)

    def test_malformed_reservations_are_server_errors(self):
        self.assertRaises(ServerError, internal.reservation_from_payload, {"lines": [[1]]})

    def test_spec_item_has_exact_price_and_condition(self):
        spec = internal.item_to_spec(ITEM)
        self.assertEqual(encode_json({"price": spec["price"]}), b'{"price":19.99}')
        self.assertEqual((spec["condition"], spec["feedback"]), ("new", {"pos": 1, "neg": 2}))
