# -*- test-case-name: tests.tradechat.test_tools -*-
"""
C{tradechat-bench}'s entry point: one load process (L{bench.Bench}) or, with
C{--processes N}, a pool of them (L{benchpool.run_pool}).

It lives apart from both because the pool's children import L{bench} for
its L{bench.Bench}: choosing between them here keeps either module from
importing the other.

    python -m marketplace.tradechat.benchmain --connect tcp:127.0.0.1:9000 ...
"""

import sys

from twisted.internet import task

from marketplace.options import parse_command_line
from marketplace.tradechat.bench import Bench, Options, install_reactor
from marketplace.tradechat.benchpool import run_pool


def main(argv=None) -> None:
    options = parse_command_line(Options(), argv)
    install_reactor(options["reactor"])
    if options["processes"] > 1:
        arguments = sys.argv[1:] if argv is None else argv
        task.react(lambda reactor: run_pool(reactor, options, arguments)
                   .addCallback(_exit_status))
    else:
        task.react(lambda reactor: Bench(reactor, options).run().addCallback(_exit_status))


#: The exit status when the conservation check failed (1: the load could not be set up).
CONSERVATION_FAILED = 3


def _exit_status(conserved: bool) -> None:
    """Exit non-zero when the conservation check failed, so scripts notice."""
    if not conserved:
        raise SystemExit(CONSERVATION_FAILED)


if __name__ == "__main__":
    main()
