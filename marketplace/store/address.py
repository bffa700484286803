# -*- test-case-name: tests.test_net,tests.store.test_redis -*-
"""
Parsing of ``redis://``, ``rediss://``, ``redis+sentinel://`` and
``rediss+sentinel://`` store URLs.

``?prefix=P`` puts every key the store writes under ``P`` instead of the
system's own default (``tradechat:``, ``market:``), so that several systems
and deployments share one Redis without touching each other's keys.

A Sentinel URL names the sentinels, the service they monitor and the
database; the store asks the sentinels where the primary is.  ``?wait=N``
and ``?wait_ms=T`` say how many replicas must hold a write (and how long to
wait for them) before the store acknowledges it (docs/redis.md, "High
availability").
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import attrs


@attrs.frozen
class RedisAddress:
    """
    Where a Redis server is and how to reach it.

    ``tls`` is set by the ``rediss`` scheme; ``ca`` names a PEM file of
    trusted roots (the platform's roots otherwise) and ``hostname`` the name
    the certificate must carry (the host otherwise).  ``prefix`` is the key
    prefix the URL asks for; None leaves it to the system.
    """

    host: str
    port: int = 6379
    db: int = 0
    password: str | None = None
    tls: bool = False
    ca: str | None = None
    hostname: str | None = None
    prefix: str | None = None
    #: Sentinel mode: the sentinels' ``(host, port)``, the service they monitor.
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    #: Sentinel mode: replicas that must hold a write before it is acknowledged,
    #: and the milliseconds to wait for them.
    wait_replicas: int = 0
    wait_ms: int = 0

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)

    @property
    def verified_hostname(self) -> str:
        return self.hostname or self.host

    def primary_at(self, host: str, port: int) -> "RedisAddress":
        """This address with the primary the sentinels named as its server."""
        return attrs.evolve(self, host=host, port=port)

    def __str__(self):
        scheme = "rediss" if self.tls else "redis"
        prefix = "" if self.prefix is None else f"?prefix={self.prefix}"
        if not self.is_sentinel:
            return f"{scheme}://{self.host}:{self.port}/{self.db}{prefix}"
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"{scheme}+sentinel://{hosts}/{self.service}/{self.db}{prefix}"


#: the port a sentinel listens on when the URL names none
SENTINEL_PORT = 26379

#: the replicas a write waits for, and for how long, unless the URL says
DEFAULT_WAIT_REPLICAS = 1
DEFAULT_WAIT_MS = 500


def parse_redis_url(url: str) -> RedisAddress:
    """
    Parse ``redis[s]://[:password@]host[:port][/db][?prefix=P][&ca=PEM&hostname=NAME]``
    or ``redis[s]+sentinel://[:password@]host[:port][,host[:port]...]/service[/db]``
    with the same options and ``wait=N``, ``wait_ms=T``.

    @raise ValueError: with a message fit for a command-line user.
    """
    parts = urlsplit(url)
    if parts.scheme in ("redis+sentinel", "rediss+sentinel"):
        return _parse_sentinel_url(url, parts)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis://, rediss://, redis+sentinel:// or rediss+sentinel:// "
                         f"URL: {url!r}")
    if not parts.hostname:
        raise ValueError(f"the Redis URL names no host: {url!r}")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"the Redis URL has a bad port: {url!r}") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the Redis database must be a number: {url!r}")
    return RedisAddress(host=parts.hostname, port=port, db=int(path or 0),
                        password=unquote(parts.password) if parts.password else None,
                        **_common_options(url, parts.scheme == "rediss", parts.query, ()))


def _common_options(url: str, tls: bool, query_string: str, also: tuple[str, ...]) -> dict:
    """The query options every scheme shares (and ``also`` the scheme's own), checked."""
    query = parse_qs(query_string, keep_blank_values=True)
    unknown = set(query) - {"ca", "hostname", "prefix", *also}
    if unknown:
        raise ValueError(f"unknown Redis URL options {sorted(unknown)}: {url!r}")
    if not tls and set(query) & {"ca", "hostname"}:
        raise ValueError(f"ca= and hostname= only apply to rediss:// URLs: {url!r}")
    prefix = query.get("prefix", [None])[-1]
    if prefix is not None:
        check_prefix(prefix)
    options = dict(
        tls=tls,
        ca=query.get("ca", [None])[-1] or None,
        hostname=query.get("hostname", [None])[-1] or None,
        prefix=prefix,
    )
    return options | {name: query[name][-1] for name in also if name in query}


def _parse_sentinel_url(url: str, parts) -> RedisAddress:
    userinfo, _, hosts = parts.netloc.rpartition("@")
    password = unquote(userinfo.partition(":")[2]) if userinfo else None
    sentinels = tuple(_sentinel(url, host) for host in hosts.split(","))
    path = parts.path.strip("/").split("/")
    if not path[0] or len(path) > 2:
        raise ValueError(f"a Sentinel URL ends with /SERVICE or /SERVICE/DB: {url!r}")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError(f"the Redis database must be a number: {url!r}")
    options = _common_options(url, parts.scheme == "rediss+sentinel", parts.query, ("wait", "wait_ms"))
    wait_replicas = _whole_number(url, "wait", options.pop("wait", None), DEFAULT_WAIT_REPLICAS, 0)
    wait_ms = _whole_number(url, "wait_ms", options.pop("wait_ms", None), DEFAULT_WAIT_MS, 1)
    host, port = sentinels[0]
    return RedisAddress(host=host, port=port, db=int(path[1]) if len(path) == 2 else 0,
                        password=password or None, sentinels=sentinels, service=path[0],
                        wait_replicas=wait_replicas, wait_ms=wait_ms, **options)


def _sentinel(url: str, host_port: str) -> tuple[str, int]:
    host, colon, port = host_port.rpartition(":")
    if not colon:
        host, port = port, str(SENTINEL_PORT)
    host = host.strip("[]")
    if not host:
        raise ValueError(f"the Sentinel URL names a sentinel without a host: {url!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the Sentinel URL has a bad port {port!r}: {url!r}")
    return host, int(port)


def _whole_number(url: str, name: str, text: str | None, default: int, least: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or int(text) < least:
        raise ValueError(f"{name}= must be a whole number of at least {least}: {url!r}")
    return int(text)


def check_prefix(prefix: str) -> str:
    """
    A key prefix is printable ASCII without spaces, at most 64 characters:
    it appears in every key, and an operator types it into ``redis-cli``.
    The empty prefix is allowed (the keys' names without one).

    @raise ValueError: with a message fit for a command-line user.
    """
    if len(prefix) > 64 or not all("!" <= c <= "~" for c in prefix):
        raise ValueError(f"a key prefix is at most 64 printable ASCII characters without "
                         f"spaces: {prefix!r}")
    return prefix
