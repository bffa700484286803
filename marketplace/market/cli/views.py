"""
How the CLIs show marketplace replies: tables for lists, fields for records.

Renderers take ``(session_id, payload)`` and tolerate missing keys (shown as
``-``), so a reply from a newer server still prints.
"""

from datetime import datetime, timezone
from decimal import Decimal

from marketplace.market.cli.shell import format_value, format_fields, format_table

ITEM_COLUMNS = [
    ("id", "item_id"),
    ("name", "item_name"),
    ("cat", "category"),
    ("keywords", "keywords"),
    ("new", "condition_is_new"),
    ("price", "price"),
    ("qty", "quantity"),
    ("seller", "seller_id"),
    ("up", "thumbs_up"),
    ("down", "thumbs_down"),
]


def money(value) -> str:
    """An amount with two decimals (4.5 -> 4.50); anything else as it came."""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        amount = Decimal(str(value))
        if amount.is_finite() and amount.adjusted() < 30:
            return f"{amount:.2f}"
    return format_value(value)


def _feedback_columns(item: dict) -> dict:
    """Prices with two decimals, feedback counters in the ``up``/``down`` columns."""
    shown = {**item, "price": money(item.get("price"))}
    feedback = item.get("feedback")
    if isinstance(feedback, dict):
        shown.update(thumbs_up=feedback.get("pos"), thumbs_down=feedback.get("neg"))
    else:
        shown.update(thumbs_up=item.get("thumbs_up", item.get("pos")),
                     thumbs_down=item.get("thumbs_down", item.get("neg")))
    return shown


def items(_session_id, payload: dict) -> str:
    rows = [_feedback_columns(item) for item in payload.get("items", [])]
    text = format_table(rows, ITEM_COLUMNS)
    extra = {k: v for k, v in payload.items() if k != "items"}
    return text + ("\n" + format_fields(extra) if extra else "")


def item(_session_id, payload: dict) -> str:
    shown = _feedback_columns(payload.get("item", payload))
    shown.pop("feedback", None)
    return format_fields(shown)


def registered(_session_id, payload: dict) -> str:
    return f"listed as item {payload.get('item_id')}"


def cart(_session_id, payload: dict) -> str:
    return format_table(payload.get("cart", []), [("item", "item_id"), ("qty", "quantity")])


def purchase(_session_id, payload: dict) -> str:
    rows = [{**row, "price": money(row.get("price"))} for row in payload.get("items", [])]
    lines = format_table(rows, [("item", "item_id"), ("qty", "quantity"), ("unit price", "price")])
    return f"{lines}\npurchase {payload.get('status')}: total {money(payload.get('total'))}"


def _utc(timestamp) -> str:
    """
    A purchase time as UTC: an ISO 8601 string (what the front ends send) or
    POSIX seconds (what older versions of ours sent); anything else as it is.
    """
    moment = None
    if isinstance(timestamp, (int, float, Decimal)) and not isinstance(timestamp, bool):
        moment = datetime.fromtimestamp(float(timestamp), tz=timezone.utc)
    elif isinstance(timestamp, str):
        try:
            moment = datetime.fromisoformat(timestamp)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
    if moment is None:
        return format_value(timestamp)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def purchases(_session_id, payload: dict) -> str:
    rows = [{**row, "purchased_at": _utc(row.get("purchased_at"))}
            for row in payload.get("items", [])]
    return format_table(rows, [("item", "item_id"), ("qty", "quantity"),
                               ("purchased at", "purchased_at")])


def login(session_id, payload: dict) -> str:
    user = payload.get("buyer_id", payload.get("seller_id"))
    return f"logged in (user id {user}); session {session_id or payload.get('session_id')}"


def rating(_session_id, payload: dict) -> str:
    feedback = payload.get("feedback", payload)
    up, down = feedback.get("pos", 0), feedback.get("neg", 0)
    summary = f"thumbs up {up}, thumbs down {down}"
    if "rating" in payload:
        summary += f" (rating {payload['rating']})"
    return summary
