"""
Parsing of ``redis://`` and ``rediss://`` store URLs.
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
    the certificate must carry (the host otherwise).
    """

    host: str
    port: int = 6379
    db: int = 0
    password: str | None = None
    tls: bool = False
    ca: str | None = None
    hostname: str | None = None

    @property
    def verified_hostname(self) -> str:
        return self.hostname or self.host

    def __str__(self):
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


def parse_redis_url(url: str) -> RedisAddress:
    """
    Parse ``redis[s]://[:password@]host[:port][/db][?ca=PEM&hostname=NAME]``.

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
    query = parse_qs(parts.query)
    unknown = set(query) - {"ca", "hostname"}
    if unknown:
        raise ValueError(f"unknown Redis URL options {sorted(unknown)}: {url!r}")
    if parts.scheme == "redis" and query:
        raise ValueError(f"ca= and hostname= only apply to rediss:// URLs: {url!r}")
    return RedisAddress(
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "rediss",
        ca=query.get("ca", [None])[-1],
        hostname=query.get("hostname", [None])[-1],
    )
