# -*- test-case-name: tests.test_net -*-
"""
TLS settings of every server: forward-secret key exchange only.

Twisted's C{ssl:} endpoint builds a C{CertificateOptions} with Twisted's
default cipher list, which on TLS 1.2 still accepts static-RSA suites
(C{AES128-SHA} and the like).  With those, the session keys travel
encrypted under the server's long-term RSA key: whoever records the traffic
today and obtains that key later reads every session.  The endpoint string
has no cipher parameter, so L{forward_secret_only} narrows the context the
endpoint built, before it accepts a single connection:

  - TLS 1.2 with ECDHE or DHE key exchange and an AEAD cipher (AES-GCM,
    ChaCha20-Poly1305) only; DHE needs C{dhParameters=} in the string, ECDHE
    works with any certificate;
  - TLS 1.3, whose suites are all forward secret, unchanged;
  - nothing older than TLS 1.2 (Twisted's default minimum, enforced here
    again so that an C{sslmethod=} in the string cannot lower it).
"""

from __future__ import annotations

from OpenSSL import SSL
from twisted.internet import endpoints

FORWARD_SECRET_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL"
"""OpenSSL cipher string for TLS 1.2: ephemeral key exchange, AEAD ciphers."""


def forward_secret_only(endpoint):
    """
    Restrict a TLS server endpoint (as C{endpoints.serverFromString} makes
    for C{ssl:}) to forward-secret suites; any other endpoint is returned
    unchanged.

    The context is reached through the endpoint's context factory, which
    Twisted keeps in a private attribute: if a Twisted release moves it, this
    raises rather than let the server start with the default suites.
    """
    if not isinstance(endpoint, endpoints.SSL4ServerEndpoint):
        return endpoint
    context = endpoint._sslContextFactory.getContext()
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_cipher_list(FORWARD_SECRET_CIPHERS)
    return endpoint
