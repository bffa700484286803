"""
branch-aggregate: query branches once and append their totals to main.csv.

    branch-aggregate [options] MAIN_CSV ENDPOINT [ENDPOINT ...]

Prints one status line per branch on stdout.  Exits 0 only if every branch
answered; otherwise 1, with a summary of the failures on stderr.  Exit 2 is
a usage error, 3 means main.csv could not be written (neither main.csv nor
the totals file changed, so the run may be repeated), 4 means main.csv has
the rows but the totals file was not updated (repeating the run would
append the rows again).
"""

import sys

from twisted.internet.task import react
from twisted.python import usage

from marketplace.options import (
    ProgramOptions,
    client_endpoint_argument,
    parse_command_line,
    positive_float,
)

from .aggregate import Limits, aggregate_into
from .mainfile import LockTimeout, TotalsNotWritten, totals_path

EXIT_BRANCHES_FAILED = 1
EXIT_WRITE_FAILED = 3
EXIT_TOTALS_NOT_WRITTEN = 4

_DEFAULT_LIMITS = Limits()

#: Timeout options shared with the long-running aggregator plugin.
LIMIT_PARAMETERS = [
    ["connect-timeout", None, _DEFAULT_LIMITS.connect,
     "Seconds to wait for each branch's TCP connection (a tls: branch's "
     "handshake counts against --reply-timeout).",
     positive_float],
    ["reply-timeout", None, _DEFAULT_LIMITS.reply,
     "Seconds to wait for each branch's complete reply once connected.",
     positive_float],
    ["run-timeout", None, _DEFAULT_LIMITS.run,
     "Seconds the whole collection may take; later branches count as timed out.",
     positive_float],
    ["lock-timeout", None, 10.0,
     "Seconds to wait for main.csv's lock while other aggregators write.",
     positive_float],
]


def limits_from(options):
    """
    The L{Limits} that parsed timeout options ask for.
    """
    return Limits(
        connect=options["connect-timeout"],
        reply=options["reply-timeout"],
        run=options["run-timeout"],
    )


class Options(ProgramOptions):
    synopsis = "[options] MAIN_CSV ENDPOINT [ENDPOINT ...]"
    longdesc = (
        "Query every branch ENDPOINT (tcp:HOST:PORT or tls:HOST:PORT:trustRoots=DIR) "
        "at once and append one row per answering branch to MAIN_CSV (created if "
        "missing); the run's grand total goes to the .totals.csv file next to it. "
        "Exits 0 only if every branch answered."
    )
    optParameters = LIMIT_PARAMETERS

    def parseArgs(self, main_csv, *endpoints):
        if not endpoints:
            raise usage.UsageError("give at least one branch ENDPOINT")
        self["main"] = main_csv
        self["endpoints"] = tuple(client_endpoint_argument(endpoint) for endpoint in endpoints)


def print_branches(results, out):
    """
    One status line per branch, in the order they were given.
    """
    for result in results:
        print(result.describe(), file=out)


def summarize(results, main_path, out, err):
    """
    Print the outcome summary once main.csv is written; return the exit
    status.
    """
    failed = [r for r in results if not r.answered]
    if failed:
        print(
            f"branch-aggregate: {len(failed)} of {len(results)} branches did not "
            f"answer; rows for the other {len(results) - len(failed)} appended to "
            f"{main_path}",
            file=err,
        )
        for result in failed:
            print(f"  {result.describe()}", file=err)
        return EXIT_BRANCHES_FAILED
    print(
        f"{len(results)} of {len(results)} branches answered; appended to "
        f"{main_path}, total in {totals_path(main_path)}",
        file=out,
    )
    return 0


def run(reactor, options, out=sys.stdout, err=sys.stderr):
    """
    Aggregate once; the Deferred fails with C{SystemExit} carrying the status.
    """
    d = aggregate_into(
        options["main"],
        options["endpoints"],
        limits_from(options),
        options["lock-timeout"],
        reactor,
        collected=lambda results: print_branches(results, out),
    )

    def written(results):
        return summarize(results, options["main"], out, err)

    def not_written(failure):
        if failure.check(TotalsNotWritten):
            print(
                f"branch-aggregate: {failure.value}; do not run again for this run "
                f"(it would append the rows a second time)",
                file=err,
            )
            return EXIT_TOTALS_NOT_WRITTEN
        print(f"branch-aggregate: cannot write {options['main']}: {failure.value}", file=err)
        if not failure.check(OSError, LockTimeout):
            failure.printTraceback(err)
        return EXIT_WRITE_FAILED

    def exit_with(status):
        raise SystemExit(status)

    return d.addCallbacks(written, not_written).addCallback(exit_with)


def main(argv=None):
    options = parse_command_line(Options(), argv)
    react(run, (options,))


if __name__ == "__main__":
    main()
