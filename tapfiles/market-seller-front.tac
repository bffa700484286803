"""
A seller front-end host (stateless: run as many as you like behind one name).

    MARKET_LISTEN=tcp:7010 MARKET_CUSTOMER_DB=tcp:10.0.0.11:7001 \
       MARKET_PRODUCT_DB=tcp:10.0.0.12:7002 \
       MARKET_SERVICE_SECRET=/etc/marketplace/service.secret \
       twistd --pidfile= -ny tapfiles/market-seller-front.tac

It proves the service secret on every connection to the DB services. Every
host of the deployment has the same secret file, mode 0600 (see
docs/security.md, "Marketplace"):

    mkdir -p /etc/marketplace
    (umask 077; head -c 32 /dev/urandom | base64 > /etc/marketplace/service.secret)

Every option of the ``seller-front`` plugin can be set from the environment as
MARKET_<OPTION> (``--store`` is MARKET_STORE, ``--service-secret`` is
MARKET_SERVICE_SECRET), so one file serves every host of this role; see
``twistd seller-front --help`` for the options and their defaults.
"""

from twisted.application.service import Application

from marketplace.market import tap

plugin = tap.seller_front
application = Application("market-seller-front")
plugin.makeService(tap.options_from_environ(plugin.Options)).setServiceParent(application)
