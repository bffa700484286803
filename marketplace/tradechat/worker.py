# -*- test-case-name: tests.tradechat.test_workers_integration -*-
"""
One worker process of C{twistd tradechat --workers N}, as its master starts
it: C{python -m marketplace.tradechat.worker TRADECHAT-OPTIONS}, with the
master's listening socket as descriptor 3 (see L{marketplace.supervisor}).
"""

from __future__ import annotations

import sys

from marketplace.options import parse_command_line
from marketplace.supervisor import LISTEN_FD
from marketplace.tradechat.tap import Options, worker_report, worker_service
from marketplace.worker import run_worker


def main(argv=None) -> int:
    from twisted.internet import reactor
    options = parse_command_line(Options(), argv)
    root = worker_service(options, LISTEN_FD, reactor)
    return run_worker(root, lambda: worker_report(root), reactor)


if __name__ == "__main__":
    sys.exit(main())
