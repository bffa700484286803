"""
The C{branch-aggregator} twistd plugin: aggregate branches on an interval.

Each run queries every branch at once and appends to main.csv exactly as the
C{branch-aggregate} command does; runs never overlap (the next interval
starts only once the previous run has written its files).
"""

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.logger import Logger

from marketplace.metrics import Counters, export
from marketplace.metrics_endpoint import serve_metrics
from marketplace.options import MetricsOptions, check_client_endpoint, positive_float

from .aggregate import aggregate_into
from .cli import LIMIT_PARAMETERS, limits_from
from .mainfile import LockTimeout, TotalsNotWritten

DEFAULT_BRANCH = "tcp:127.0.0.1:5001"

log = Logger()


class Options(MetricsOptions):
    """
    Options of the C{branch-aggregator} plugin.
    """

    synopsis = "[options] --branch ENDPOINT [--branch ENDPOINT ...]"
    longdesc = (
        "Every --interval seconds, query all branches at once and append their "
        "totals to --main (one row per answering branch) and the run's grand "
        "total to the .totals.csv file next to it."
    )
    optParameters = [
        ["main", None, "main.csv", "The main.csv to append to (created if missing)."],
        ["interval", None, 60.0, "Seconds between the starts of two runs.", positive_float],
    ] + LIMIT_PARAMETERS

    def __init__(self):
        super().__init__()
        self["branches"] = []

    def opt_branch(self, endpoint):
        """
        A branch client endpoint, e.g. tcp:hostA:5001; repeat for each branch
        (default tcp:127.0.0.1:5001).
        """
        check_client_endpoint(endpoint)
        self["branches"].append(endpoint)

    def postOptions(self):
        super().postOptions()
        if not self["branches"]:
            self["branches"] = [DEFAULT_BRANCH]


def aggregate_and_log(main_path, branches, limits, lock_timeout, reactor, counters=None):
    """
    One aggregation run whose every outcome is logged and none raised, so
    the interval timer keeps running after a bad run.  C{counters} counts
    C{runs}, C{branches_answered}, C{branches_failed} and C{runs_not_written}.
    """
    counters = Counters() if counters is None else counters
    counters.increment("runs")

    def collected(results):
        for result in results:
            log.info("branch-aggregator: {line}", line=result.describe())
        failed = sum(1 for result in results if not result.answered)
        counters.increment("branches_answered", len(results) - failed)
        counters.increment("branches_failed", failed)
        if failed:
            log.warn(
                "branch-aggregator: {failed} of {total} branches did not answer",
                failed=failed,
                total=len(results),
            )

    def not_written(failure):
        counters.increment("runs_not_written")
        if failure.check(TotalsNotWritten):
            log.error(
                "branch-aggregator: run's total missing from the totals file: {reason}",
                reason=failure.getErrorMessage(),
            )
        elif failure.check(OSError, LockTimeout):
            log.error(
                "branch-aggregator: cannot write {main}: {reason}",
                main=main_path,
                reason=failure.getErrorMessage(),
            )
        else:
            log.failure("branch-aggregator: run failed", failure)

    d = aggregate_into(main_path, branches, limits, lock_timeout, reactor, collected)
    return d.addCallbacks(lambda _: None, not_written)


def makeService(options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    timer = TimerService(
        options["interval"],
        aggregate_and_log,
        options["main"],
        options["branches"],
        limits_from(options),
        options["lock-timeout"],
        reactor,
        export("branch", "aggregator", Counters()),
    )
    timer.clock = reactor
    timer.setName("branch-aggregator")
    service = MultiService()
    timer.setServiceParent(service)
    return serve_metrics(service, options, reactor)
