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

customer_db = ServiceMaker(
    "customer-db", "marketplace.market.tap.customer_db",
    "Marketplace customer DB: accounts, sessions, carts, purchase history and ratings.", "customer-db")

product_db = ServiceMaker(
    "product-db", "marketplace.market.tap.product_db",
    "Marketplace product DB: items, stock, search index, purchase reservations, item feedback.",
    "product-db")

payments = ServiceMaker(
    "payments", "marketplace.market.tap.payments",
    "Marketplace payments: card checks (Luhn, expiry, CVV) and a configurable approval policy.",
    "payments")

seller_front = ServiceMaker(
    "seller-front", "marketplace.market.tap.seller_front",
    "Marketplace seller front end (stateless, over customer-db and product-db).", "seller-front")

buyer_front = ServiceMaker(
    "buyer-front", "marketplace.market.tap.buyer_front",
    "Marketplace buyer front end (stateless, over customer-db, product-db and payments).",
    "buyer-front")

laptop_factory = ServiceMaker(
    "laptop-factory", "marketplace.laptop.tap",
    "A replica of the laptop-order service: primary-backup replication over views (default tcp:8080).",
    "laptop-factory")
