"""
The trading chatroom in one process, as the compatibility deployment the
existing clients expect: port 9000, accounts 0..1023 with 100000 each.

    twistd --pidfile= -ny tapfiles/tradechat.tac
    TRADECHAT_STORE=redis://127.0.0.1:6379/0 twistd --pidfile= -ny tapfiles/tradechat.tac

The store comes from $TRADECHAT_STORE (default: the embedded store); every
other setting is the plugin's default (see ``twistd tradechat --help``).
"""

import os

from twisted.application.service import Application

from marketplace.tradechat.tap import Options, makeService

options = Options()
options.parseOptions([
    "--listen", "tcp:9000",
    "--compat",
    "--store", os.environ.get("TRADECHAT_STORE", "memory"),
])
application = Application("tradechat")
makeService(options).setServiceParent(application)
