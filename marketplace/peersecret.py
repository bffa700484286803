# -*- test-case-name: tests.test_peerauth -*-
"""
The shared secret that authenticates links between our own processes
(``--replica-secret``, ``--service-secret``), and the rule for when one is
required.

A secret file holds at least 16 bytes (leading and trailing white space is
ignored, so ``head -c 32 /dev/urandom | base64 > FILE`` makes a good one) and
is readable by its owner only, like an ssh key: a secret others can read
authenticates nobody.
"""

from __future__ import annotations

import ipaddress
import os
import stat

from twisted.internet import endpoints

from protocols.peerauth import MIN_SECRET_SIZE

MAX_SECRET_FILE = 4096
"""Bytes a secret file may hold: a secret is a line, not a document."""
MAKE_ONE = "make one with: (umask 077; head -c 32 /dev/urandom | base64 > FILE)"


def load_secret(path: str) -> bytes:
    """
    The secret in ``path``.

    The file is opened without blocking and checked before it is read: a
    FIFO or a device (``/dev/zero``) named by mistake would otherwise hang
    the start or read without end.

    @raise ValueError: with a message fit for a usage error, if the file
        cannot be read, is not a regular file, is readable by group or
        others, or is too short or too long.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise ValueError(f"cannot read the secret file {path!r}: {error.strerror}") from None
    with os.fdopen(descriptor, "rb") as file:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"the secret file {path!r} is not a regular file; {MAKE_ONE}")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(
                f"the secret file {path!r} is readable by others "
                f"(mode {stat.S_IMODE(mode):04o}): chmod 600 it"
            )
        try:
            content = file.read(MAX_SECRET_FILE + 1)
        except OSError as error:
            raise ValueError(f"cannot read the secret file {path!r}: {error.strerror}") from None
    if len(content) > MAX_SECRET_FILE:
        raise ValueError(f"the secret file {path!r} holds more than {MAX_SECRET_FILE} bytes")
    secret = content.strip()
    if len(secret) < MIN_SECRET_SIZE:
        raise ValueError(
            f"the secret file {path!r} holds {len(secret)} bytes, fewer than "
            f"{MIN_SECRET_SIZE}; {MAKE_ONE}"
        )
    return secret


class _NoReactor:
    """Lets the endpoint parser read a string without touching a reactor."""


def _is_loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def is_loopback_client_endpoint(description: str) -> bool:
    """
    Whether a client endpoint string reaches this machine only: a ``unix:``
    socket, or ``tcp:``/``tls:`` to a loopback address or ``localhost``.
    """
    try:
        endpoint = endpoints.clientFromString(_NoReactor(), description)
    except Exception:  # parsers raise anything from ValueError to OpenSSL errors
        return False
    endpoint = getattr(endpoint, "_wrappedEndpoint", endpoint)  # tls: wraps a TCP one
    if isinstance(endpoint, endpoints.UNIXClientEndpoint):
        return True
    host = getattr(endpoint, "_hostText", None) or getattr(endpoint, "_host", None)
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return bool(host) and _is_loopback_host(host)


def is_loopback_endpoint(description: str) -> bool:
    """
    Whether a server endpoint string accepts connections from this machine
    only: a ``unix:`` socket, or ``tcp:``/``ssl:`` bound to a loopback
    interface.  Anything else (no ``interface=``, which means every
    interface; a LAN address; an endpoint type we cannot read) is not.
    """
    try:
        endpoint = endpoints.serverFromString(_NoReactor(), description)
    except Exception:  # parsers raise anything from ValueError to OpenSSL errors
        return False
    if isinstance(endpoint, endpoints.UNIXServerEndpoint):
        return True
    interface = getattr(endpoint, "_interface", None)
    return bool(interface) and _is_loopback_host(interface)
