# -*- test-case-name: tests.test_net,tests.store.test_redis -*-
"""
Parsing of ``redis://`` and ``rediss://`` store URLs.

``?prefix=P`` puts every key the store writes under ``P`` instead of the
system's own default (``tradechat:``, ``market:``), so that several systems
and deployments share one Redis without touching each other's keys.
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

    @property
    def verified_hostname(self) -> str:
        return self.hostname or self.host

    def __str__(self):
        scheme = "rediss" if self.tls else "redis"
        prefix = "" if self.prefix is None else f"?prefix={self.prefix}"
        return f"{scheme}://{self.host}:{self.port}/{self.db}{prefix}"


def parse_redis_url(url: str) -> RedisAddress:
    """
    Parse ``redis[s]://[:password@]host[:port][/db][?prefix=P][&ca=PEM&hostname=NAME]``.

    @raise ValueError: with a message fit for a command-line user.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis:// or rediss:// URL: {url!r}")
    if not parts.hostname:
        raise ValueError(f"the Redis URL names no host: {url!r}")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"the Redis URL has a bad port: {url!r}") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the Redis database must be a number: {url!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"ca", "hostname", "prefix"}
    if unknown:
        raise ValueError(f"unknown Redis URL options {sorted(unknown)}: {url!r}")
    if parts.scheme == "redis" and set(query) - {"prefix"}:
        raise ValueError(f"ca= and hostname= only apply to rediss:// URLs: {url!r}")
    prefix = query.get("prefix", [None])[-1]
    if prefix is not None:
        check_prefix(prefix)
    return RedisAddress(
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "rediss",
        ca=query.get("ca", [None])[-1] or None,
        hostname=query.get("hostname", [None])[-1] or None,
        prefix=prefix,
    )


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
