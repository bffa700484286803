"""
The replicated state machine: each customer's last order number.

Every replica applies the same committed log entries in the same order, so
they all hold the same book.  Applying keeps the maximum order number, which
makes a repeated or late-arriving entry harmless.
"""

from typing import Dict, Iterable, Optional, Tuple

from protocols.laptop import OPCODE_SET_LAST_ORDER, Entry


class OrderBook:
    def __init__(self, records: Iterable[Tuple[int, int]] = ()):
        self._last: Dict[int, int] = dict(records)

    def apply(self, entry: Entry) -> None:
        if entry.opcode == OPCODE_SET_LAST_ORDER:
            if entry.order_number > self._last.get(entry.customer_id, -1):
                self._last[entry.customer_id] = entry.order_number

    def last_order(self, customer_id: int) -> Optional[int]:
        return self._last.get(customer_id)

    def records(self) -> Tuple[Tuple[int, int], ...]:
        """Every (customer, last order), sorted, for snapshots and comparisons."""
        return tuple(sorted(self._last.items()))
