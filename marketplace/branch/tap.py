"""
The C{branch} twistd plugin: serve one branch's sales CSV.

L{branch_listener} is the building block a C{.tac} uses to serve several
branches from one process (see tapfiles/branches.tac).  The aggregator's
plugin is in L{marketplace.branch.aggregator_tap}.
"""

import os

from twisted.application.service import MultiService
from twisted.python import usage

from marketplace.metrics import Counters, export
from marketplace.metrics_endpoint import serve_metrics
from marketplace.net import ConnectionLimits, Listener
from marketplace.options import ServerOptions, listen_option, positive_float
from protocols.branch import MAX_REQUEST, InvalidBranchId, check_branch_id

from .csvsource import BranchSales, SalesFile
from .server import BranchFactory

DEFAULT_PORT = 5001
DEFAULT_LISTEN = f"tcp:{DEFAULT_PORT}"


def _request_limit(value):
    limit = int(value)
    if not len(b"REQUEST\r\n") <= limit <= 65536:
        raise ValueError(f"must be between 9 and 65536 bytes: {value}")
    return limit


_request_limit.coerceDoc = "Bytes, 9 to 65536."


class Options(ServerOptions):
    """
    Options of the C{branch} plugin.
    """

    synopsis = "[options]"
    longdesc = (
        "Serve one branch's sales totals from its CSV file (date,amount rows) "
        "to aggregators: send REQUEST and a newline to get BRANCH_ID, RECORDS "
        "and SUBTOTAL."
    )
    optParameters = [
        listen_option(DEFAULT_LISTEN),
        ["id", None, "A", "Branch id: 1 to 63 printable bytes, no whitespace, commas or quotes, not starting with = + - @."],
        ["csv", None, "branchA.csv", "The branch's sales CSV (re-read whenever it changes)."],
        ["idle-timeout", None, 10.0,
         "Seconds a connection may take to send its request and receive the reply.",
         positive_float],
        ["max-request", None, MAX_REQUEST, "Longest request line accepted.", _request_limit],
    ]

    def postOptions(self):
        super().postOptions()
        try:
            check_branch_id(self["id"])
        except InvalidBranchId as e:
            raise usage.UsageError(f"--id: {e}") from None
        if not self["csv"]:
            raise usage.UsageError("--csv: give the path of the branch's sales CSV")


def branch_listener(
    branch_id,
    csv_path,
    listen=DEFAULT_LISTEN,
    idle_timeout=10.0,
    max_request=MAX_REQUEST,
    counters=None,
    reactor=None,
    limits=ConnectionLimits(),
):
    """
    A L{Listener} serving one branch; several fit in one process.

    A missing CSV is not an error here: the branch answers C{ERROR: cannot
    read CSV} until the file appears.
    """
    if reactor is None:
        from twisted.internet import reactor
    check_branch_id(branch_id)
    counters = export("branch", f"branch {branch_id}", Counters() if counters is None else counters)
    sales = BranchSales(branch_id, SalesFile(os.path.abspath(csv_path)), counters)
    factory = BranchFactory(
        sales, counters, reactor, idle_timeout=idle_timeout, max_request=max_request
    )
    listener = Listener(listen, factory, reactor=reactor, limits=limits, counters=counters)
    listener.setName(f"branch {branch_id}")
    return listener


def makeService(options):
    service = MultiService()
    branch_listener(
        options["id"],
        options["csv"],
        listen=options["listen"],
        idle_timeout=options["idle-timeout"],
        max_request=options["max-request"],
        limits=options.connection_limits(),
    ).setServiceParent(service)
    return serve_metrics(service, options)


def suite_service(suite_options):
    """
    The branch system inside the C{suite} plugin: branch A from
    C{branchA.csv} (in twistd's directory) on the suite's branch port.
    Until that file exists, the branch answers C{ERROR: cannot read CSV}.
    """
    options = Options()
    options.parseOptions(["--listen", suite_options.endpoint(suite_options["branch-port"])])
    return makeService(options)
