"""
Command-line options the plugins share, each taken only by the plugins that
use it.

A server's ``Options`` derives from :class:`ServerOptions` (connection limits,
and the ``--listen`` its own ``optParameters`` add with
``listen_option(default)``, and ``--metrics`` from :class:`MetricsOptions`,
which every plugin takes); a plugin that keeps state in the store also
derives from :class:`StoreOptions` (``--store``, ``--store-timeout``), and
:class:`ServiceOptions` is both.  ``usage.Options`` gathers option tables up
the class hierarchy, so nothing is repeated.
"""

from __future__ import annotations

import os
import sys

from twisted.internet import endpoints
from twisted.python import usage

from marketplace.net import ConnectionLimits
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


def program_name() -> str:
    """The name the running console script was called by."""
    return os.path.basename(sys.argv[0]) or "command"


class ProjectOptions(usage.Options):
    """Options whose ``--version`` prints the project's version, not Twisted's."""

    def opt_version(self):
        """Display the version and exit."""
        from marketplace import __version__
        print(f"{program_name()} {__version__}")
        raise SystemExit(0)


class ProgramOptions(ProjectOptions):
    """
    Options of a console script: its usage line starts with the program's
    name.  Subclasses set ``synopsis`` to what follows the name.
    """

    synopsis = "[options]"

    def getSynopsis(self) -> str:
        return f"Usage: {program_name()} {self.synopsis}"


def parse_command_line(options: usage.Options, argv=None) -> usage.Options:
    """
    Parse a console script's arguments; on a usage error print the usage and
    the error to stderr and exit with L{EXIT_USAGE}, never a traceback.
    """
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as error:
        print(f"{options}\n{program_name()}: {error}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    return options


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(f"must be a positive number of seconds: {value}")
    return number


positive_float.coerceDoc = "Seconds, greater than 0."


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"must be a positive integer: {value}")
    return number


positive_int.coerceDoc = "An integer, 1 or more."


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


#: Endpoint types a ``NAME:PORT`` shorthand can never be mistaken for.
_CLIENT_ENDPOINT_TYPES = frozenset({"tcp", "tls", "ssl", "unix"})


def client_endpoint_argument(description: str) -> str:
    """
    A client endpoint a user typed: ``HOST:PORT`` is taken as
    ``tcp:HOST:PORT``; anything else must be a valid endpoint string.

    @raise usage.UsageError: if it is neither.
    """
    host, colon, port = description.rpartition(":")
    if colon and port.isdigit() and host and ":" not in host \
            and host.lower() not in _CLIENT_ENDPOINT_TYPES:
        description = f"tcp:{description}"
    check_client_endpoint(description)
    return description


class MetricsOptions(ProjectOptions):
    """``--metrics``: where the process serves Prometheus metrics (see ``metrics_endpoint``)."""

    optParameters = [
        ["metrics", None, None,
         "Server endpoint serving Prometheus metrics at /metrics, e.g. "
         "tcp:9100:interface=127.0.0.1 (default: none)."],
    ]

    def postOptions(self):
        super().postOptions()
        if self["metrics"] is not None:
            check_server_endpoint(self["metrics"])


class StoreOptions(ProjectOptions):
    """``--store`` and ``--store-timeout``, for plugins that keep state in the store."""

    optParameters = [
        ["store", None, "memory",
         "Where sessions and balances live: memory (this process only), "
         "redis://HOST:PORT/DB, or rediss://HOST:PORT/DB?ca=CA.pem&hostname=NAME (TLS); "
         "?prefix=P puts this system's keys under P instead of its own prefix."],
        ["store-timeout", None, DEFAULT_STORE_TIMEOUT,
         "Seconds a store call may take before it fails as unavailable.", positive_float],
    ]

    def postOptions(self):
        super().postOptions()
        try:
            check_store_url(self["store"])
        except ValueError as error:
            raise usage.UsageError(f"--store: {error}") from None


class ServerOptions(MetricsOptions):
    """
    A server's ``--listen`` (validated here, added by each plugin with its
    own default) and its connection limits.
    """

    optParameters = [
        ["max-connections", None, None,
         "Most connections the listener keeps open at once; more are closed at once "
         "and counted (default: no limit).", positive_int],
        ["max-connections-per-address", None, None,
         "Most connections one client address may keep open at once (default: no limit).",
         positive_int],
    ]

    def postOptions(self):
        super().postOptions()
        if "listen" in self:
            check_server_endpoint(self["listen"])

    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(self["max-connections"], self["max-connections-per-address"])


class ServiceOptions(ServerOptions, StoreOptions):
    """A server that keeps state in the store."""
