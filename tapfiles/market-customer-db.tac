"""
The customer-db host: accounts, sessions, carts, purchase history, ratings.

    MARKET_LISTEN=tcp:7001:interface=10.0.0.11 MARKET_STORE=redis://10.0.0.10:6379/0 \
       MARKET_SERVICE_SECRET=/etc/marketplace/service.secret \
       twistd --pidfile= -ny tapfiles/market-customer-db.tac

It serves only callers that prove the service secret (the front ends), and
refuses to start on a non-loopback address without one. Every host of the
deployment has the same secret file, mode 0600 (see docs/security.md,
"Marketplace"):

    mkdir -p /etc/marketplace
    (umask 077; head -c 32 /dev/urandom | base64 > /etc/marketplace/service.secret)

Every option of the ``customer-db`` plugin can be set from the environment as
MARKET_<OPTION> (``--store`` is MARKET_STORE, ``--service-secret`` is
MARKET_SERVICE_SECRET), so one file serves every host of this role; see
``twistd customer-db --help`` for the options and their defaults.
"""

from twisted.application.service import Application

from marketplace.market import tap

plugin = tap.customer_db
application = Application("market-customer-db")
plugin.makeService(tap.options_from_environ(plugin.Options)).setServiceParent(application)
