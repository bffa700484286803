"""
The product's twistd plugins: one ServiceMaker per plugin and nothing else, so
``twistd --help`` stays fast and never imports a system it does not run.
"""

from twisted.application.service import ServiceMaker

suite = ServiceMaker(
    "suite", "marketplace.suite",
    "Every system of the product on its default ports, on the embedded store.", "suite")

branch = ServiceMaker(
    "branch", "marketplace.branch.tap",
    "Serve one branch's sales totals from its CSV to aggregators (REQUEST -> BRANCH_ID/RECORDS/SUBTOTAL).",
    "branch")

branch_aggregator = ServiceMaker(
    "branch-aggregator", "marketplace.branch.aggregator_tap",
    "Collect every branch's totals into main.csv on an interval.", "branch-aggregator")

tradechat = ServiceMaker(
    "tradechat", "marketplace.tradechat.tap",
    "Trading chatroom over NS binary frames: login, rooms with live push, deposits, withdrawals, "
    "transfers, history (default tcp:9000).",
    "tradechat")
