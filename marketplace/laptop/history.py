"""
A checker for histories of orders and reads against one customer record.

The record is a max-register (orders only ever raise the last order number),
so a history is consistent with one serial order when, for every customer:

- a read never misses an order acknowledged before the read started;
- a read never returns an order that was not yet submitted when it ended,
  nor one that was never submitted;
- reads never go back in time: a read that starts after another ended
  returns at least what that one returned;
- the final record (if given) holds every acknowledged order.

Operations are recorded with start and end times from one clock; failed or
unanswered operations count as "maybe applied", which the rules allow for.
"""

from collections import defaultdict
from typing import Dict, Iterable, List, Optional

import attrs


@attrs.frozen
class Operation:
    customer_id: int
    kind: str  # "order" or "read"
    start: float
    end: float
    ok: bool
    #: the order number for orders; the value read (None: no record) for reads
    value: Optional[int]


class History:
    def __init__(self):
        self.operations: List[Operation] = []

    def order(self, customer_id, order_number, start, end, ok) -> None:
        self.operations.append(Operation(customer_id, "order", start, end, ok, order_number))

    def read(self, customer_id, value, start, end, ok=True) -> None:
        self.operations.append(Operation(customer_id, "read", start, end, ok, value))


def check_history(
    operations: Iterable[Operation], final_records: Optional[Dict[int, Optional[int]]] = None
) -> List[str]:
    """Every violation found, as readable sentences; empty when consistent."""
    by_customer = defaultdict(list)
    for operation in operations:
        by_customer[operation.customer_id].append(operation)
    problems = []
    for customer, ops in sorted(by_customer.items()):
        problems.extend(_check_customer(customer, ops, final_records))
    return problems


def _value(read: Operation) -> int:
    return -1 if read.value is None else read.value


def _check_customer(customer, ops, final_records) -> List[str]:
    problems = []
    orders = [op for op in ops if op.kind == "order"]
    submitted = {op.value for op in orders}
    first_submitted = {}
    for op in orders:
        first_submitted[op.value] = min(op.start, first_submitted.get(op.value, op.start))
    reads = sorted((op for op in ops if op.kind == "read" and op.ok), key=lambda op: op.start)
    # Sweep in start order, folding in every acknowledged order and every
    # read that ended before the current read started.
    finished = sorted(
        [op for op in orders if op.ok] + reads, key=lambda op: op.end
    )
    position = 0
    highest_acked = highest_read = -1
    for read in reads:
        while position < len(finished) and finished[position].end < read.start:
            done = finished[position]
            if done.kind == "order":
                highest_acked = max(highest_acked, done.value)
            else:
                highest_read = max(highest_read, _value(done))
            position += 1
        value = _value(read)
        if value < highest_acked:
            problems.append(
                f"customer {customer}: read at {read.start:.6f} returned {read.value} "
                f"but order {highest_acked} was acknowledged before it started"
            )
        if value < highest_read:
            problems.append(
                f"customer {customer}: read at {read.start:.6f} returned {read.value}, "
                f"older than {highest_read} read before it"
            )
        if read.value is not None:
            if read.value not in submitted:
                problems.append(f"customer {customer}: read returned {read.value}, never ordered")
            elif first_submitted[read.value] > read.end:
                problems.append(
                    f"customer {customer}: read returned {read.value} before it was ordered"
                )
    acked = [op.value for op in orders if op.ok]
    if final_records is not None and acked:
        final = final_records.get(customer)
        if final is None or final < max(acked):
            problems.append(
                f"customer {customer}: final record {final} lost acknowledged order {max(acked)}"
            )
    return problems
