"""
The product's twistd plugins: one ServiceMaker per plugin and nothing else, so
``twistd --help`` stays fast and never imports a system it does not run.
"""

from twisted.application.service import ServiceMaker

suite = ServiceMaker(
    "suite", "marketplace.suite",
    "Every system of the product on its default ports, on the embedded store.", "suite")
