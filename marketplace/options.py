"""
Command-line options every plugin shares.

Each plugin's ``Options`` derives from :class:`ServiceOptions` (``--store``,
``--store-timeout``) and adds ``listen_option(default)`` to its own
``optParameters``; ``usage.Options`` gathers option tables up the class
hierarchy, so nothing is repeated.
"""

from __future__ import annotations

import os
import sys

from twisted.internet import endpoints
from twisted.python import usage

from marketplace.store import DEFAULT_STORE_TIMEOUT, check_store_url
from marketplace.store.ledger_rules import parse_history_keep

#: What a plugin with a ledger keeps of each account's history by default:
#: enough for any client's history pages, and a bounded store (docs/redis.md).
DEFAULT_HISTORY_KEEP = "1000"


def listen_option(default: str) -> list:
    """The ``--listen`` row for a plugin whose default endpoint is ``default``."""
    return ["listen", "l", default,
            "Server endpoint to listen on, e.g. tcp:PORT, tcp:PORT:interface=127.0.0.1, "
            "ssl:PORT:privateKey=key.pem:certKey=cert.pem."]


#: Exit status of a console script given bad options (the shell convention).
EXIT_USAGE = 2


def history_keep_option(default: str = DEFAULT_HISTORY_KEEP) -> list:
    """The ``--history-keep`` option of a plugin whose store keeps a ledger."""
    return ["history-keep", None, parse_history_keep(default),
            "Ledger history each account keeps: N entries, Nd days, N,Nd, or all. "
            "Older entries fold into a checkpoint, so audits stay exact.", parse_history_keep]


def parse_command_line(options: usage.Options, argv=None) -> usage.Options:
    """
    Parse a console script's arguments; on a usage error print the usage and
    the error to stderr and exit with L{EXIT_USAGE}, never a traceback.
    """
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as error:
        program = os.path.basename(sys.argv[0]) or "command"
        print(f"{options}\n{program}: {error}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    return options


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(f"must be a positive number of seconds: {value}")
    return number


positive_float.coerceDoc = "Seconds, greater than 0."


class _NoReactor:
    """Lets endpoint parsers validate a string without touching a reactor."""


def check_server_endpoint(description: str) -> None:
    """@raise usage.UsageError: if ``description`` is no valid server endpoint."""
    try:
        endpoints.serverFromString(_NoReactor(), description)
    except Exception as error:  # parsers raise anything from ValueError to OpenSSL errors
        raise usage.UsageError(f"bad server endpoint {description!r}: {error}") from None


def check_client_endpoint(description: str) -> None:
    """@raise usage.UsageError: if ``description`` is no valid client endpoint."""
    try:
        endpoints.clientFromString(_NoReactor(), description)
    except Exception as error:  # parsers raise anything from ValueError to OpenSSL errors
        raise usage.UsageError(f"bad client endpoint {description!r}: {error}") from None


class ServiceOptions(usage.Options):
    optParameters = [
        ["store", None, "memory",
         "Where sessions and balances live: memory (this process only), "
         "redis://HOST:PORT/DB, or rediss://HOST:PORT/DB?ca=CA.pem&hostname=NAME (TLS); "
         "redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE/DB (rediss+sentinel:// for TLS) "
         "asks those sentinels for the primary and acknowledges a write once ?wait=N replicas "
         "(1) hold it within ?wait_ms=T ms (500); "
         "?prefix=P puts this system's keys under P instead of its own prefix."],
        ["store-timeout", None, DEFAULT_STORE_TIMEOUT,
         "Seconds a store call may take before it fails as unavailable.", positive_float],
    ]

    def postOptions(self):
        try:
            check_store_url(self["store"], self["store-timeout"])
        except ValueError as error:
            raise usage.UsageError(f"--store: {error}") from None
        if "listen" in self:
            check_server_endpoint(self["listen"])
