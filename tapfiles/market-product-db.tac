"""
The product-db host: items, stock, the search index, reservations, item feedback.

    MARKET_LISTEN=tcp:7002:interface=10.0.0.12 MARKET_STORE=redis://10.0.0.10:6379/0 \
 \
       twistd --pidfile= -ny tapfiles/market-product-db.tac

Every option of the ``product-db`` plugin can be set from the environment as
MARKET_<OPTION> (``--store`` is MARKET_STORE, ``--customer-db`` is
MARKET_CUSTOMER_DB), so one file serves every host of this role; see
``twistd product-db --help`` for the options and their defaults.
"""

from twisted.application.service import Application

from marketplace.market import tap

plugin = tap.product_db
application = Application("market-product-db")
plugin.makeService(tap.options_from_environ(plugin.Options)).setServiceParent(application)
