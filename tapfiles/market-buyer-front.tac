"""
A buyer front-end host (stateless: run as many as you like behind one name).

    MARKET_LISTEN=tcp:7011 MARKET_CUSTOMER_DB=tcp:10.0.0.11:7001 \
       MARKET_PRODUCT_DB=tcp:10.0.0.12:7002 MARKET_PAYMENTS=tcp:10.0.0.13:7003 \
       MARKET_SERVICE_SECRET=/etc/marketplace/service.secret \
       twistd --pidfile= -ny tapfiles/market-buyer-front.tac

It proves the service secret on every connection to the DB services. Every
host of the deployment has the same secret file, mode 0600 (see
docs/security.md, "Marketplace"):

    mkdir -p /etc/marketplace
    (umask 077; head -c 32 /dev/urandom | base64 > /etc/marketplace/service.secret)

Every option of the ``buyer-front`` plugin can be set from the environment as
MARKET_<OPTION> (``--store`` is MARKET_STORE, ``--service-secret`` is
MARKET_SERVICE_SECRET), so one file serves every host of this role; see
``twistd buyer-front --help`` for the options and their defaults.
"""

from twisted.application.service import Application

from marketplace.market import tap

plugin = tap.buyer_front
application = Application("market-buyer-front")
plugin.makeService(tap.options_from_environ(plugin.Options)).setServiceParent(application)
