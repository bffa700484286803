"""
The customer-db host: accounts, sessions, carts, purchase history, ratings.

    MARKET_LISTEN=tcp:7001:interface=10.0.0.11 MARKET_STORE=redis://10.0.0.10:6379/0 \
 \
       twistd --pidfile= -ny tapfiles/market-customer-db.tac

Every option of the ``customer-db`` plugin can be set from the environment as
MARKET_<OPTION> (``--store`` is MARKET_STORE, ``--customer-db`` is
MARKET_CUSTOMER_DB), so one file serves every host of this role; see
``twistd customer-db --help`` for the options and their defaults.
"""

from twisted.application.service import Application

from marketplace.market import tap

plugin = tap.customer_db
application = Application("market-customer-db")
plugin.makeService(tap.options_from_environ(plugin.Options)).setServiceParent(application)
