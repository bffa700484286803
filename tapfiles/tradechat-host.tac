"""
One host of a trading chatroom served by several hosts on one Redis: run
this file on every host, each pointing at the same Redis.  Together they
are one service: one ledger, one login directory, and rooms whose members
on any host (and any worker) receive every message.

    # host A                                  # host B
    TRADECHAT_STORE=redis://10.0.0.5:6379/0 \\   TRADECHAT_STORE=redis://10.0.0.5:6379/0 \\
      twistd --pidfile= -ny tapfiles/tradechat-host.tac      twistd --pidfile= -ny tapfiles/tradechat-host.tac

    # with Prometheus metrics of the host (its master and every worker) on port 9100
    TRADECHAT_STORE=redis://10.0.0.5:6379/0 TRADECHAT_METRICS=tcp:9100 \\
      twistd --pidfile= -ny tapfiles/tradechat-host.tac

$TRADECHAT_STORE (required): the shared Redis, redis:// or rediss://.
$TRADECHAT_LISTEN (default tcp:9000): this host's endpoint.
$TRADECHAT_WORKERS (default 2): worker processes on this host (a master
owns the socket and supervises them; 1 serves in the twistd process).
$TRADECHAT_METRICS (default: none): endpoint serving Prometheus metrics at
/metrics, the sum of all this host's workers (see docs/operations.md).
Every other setting is the plugin's default (``twistd tradechat --help``).
"""

import os

from twisted.application.service import Application

from marketplace.tradechat.tap import Options, makeService

options = Options()
options.parseOptions([
    "--store", os.environ["TRADECHAT_STORE"],
    "--listen", os.environ.get("TRADECHAT_LISTEN", "tcp:9000"),
    "--workers", os.environ.get("TRADECHAT_WORKERS", "2"),
    *(["--metrics", os.environ["TRADECHAT_METRICS"]] if "TRADECHAT_METRICS" in os.environ else []),
])
application = Application("tradechat")
makeService(options).setServiceParent(application)
