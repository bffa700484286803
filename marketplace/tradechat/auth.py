"""
Password authentication bound to the connection's nonce.

The scheme is SCRAM's (RFC 5802) key structure with Argon2id as the
password KDF, so that:

  - the server stores only C{stored_key = SHA256(client_key)}, never
    anything that lets a thief log in without brute-forcing Argon2id;
  - the proof sent on the wire is C{client_key XOR HMAC(stored_key, message)}
    where C{message} binds the account name and this connection's one-time
    nonce, so a passive observer's copy is useless on any other connection;
  - the server does no Argon2id work at login (the client derives its key),
    so a login never blocks the reactor and cannot be used to burn server
    CPU/memory.  Argon2id runs once per password change, in L{hash_password}.

Credentials live in a small file (one account per line) that every server
process reads, so the scheme works unchanged with several worker processes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Mapping, Optional

import attrs
from argon2.low_level import Type, hash_secret_raw

from protocols.tradechat_bodies import (
    MAX_KDF_MEMORY_KIB, MAX_KDF_PARALLELISM, MAX_KDF_TIME_COST, AuthParams,
)

KEY_BYTES = 32
SALT_BYTES = 16
DEFAULT_TIME_COST = 3
DEFAULT_MEMORY_COST_KIB = 64 * 1024
DEFAULT_PARALLELISM = 1
_CLIENT_KEY_LABEL = b"Client Key"
_DECOY_LABEL = b"tradechat-decoy-salt\x00"
"""Separates decoy salts from any other use of the same secret file."""


@attrs.frozen
class Credential:
    """What the server keeps about one password: never the password or its key."""

    name: str
    params: AuthParams
    stored_key: bytes


def derive_client_key(password: str, params: AuthParams) -> bytes:
    """The client-side secret: HMAC(Argon2id(password, salt), "Client Key")."""
    salted = hash_secret_raw(
        password.encode("utf-8"), params.salt,
        time_cost=params.time_cost, memory_cost=params.memory_cost_kib,
        parallelism=params.parallelism, hash_len=KEY_BYTES, type=Type.ID)
    return hmac.digest(salted, _CLIENT_KEY_LABEL, "sha256")


def _stored_key(client_key: bytes) -> bytes:
    return hashlib.sha256(client_key).digest()


def _signed_message(name: str, nonce: int) -> bytes:
    return b"tradechat-login\x00" + name.encode("utf-8") + b"\x00" + nonce.to_bytes(8, "big")


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right))


def make_proof(client_key: bytes, name: str, nonce: int) -> bytes:
    """The LOGIN proof for this connection's nonce (client side)."""
    signature = hmac.digest(_stored_key(client_key), _signed_message(name, nonce), "sha256")
    return _xor(client_key, signature)


def verify_proof(credential: Credential, nonce: int, proof: bytes) -> bool:
    """Check a LOGIN proof against the stored key (server side, constant time)."""
    if len(proof) != KEY_BYTES:
        return False
    signature = hmac.digest(
        credential.stored_key, _signed_message(credential.name, nonce), "sha256")
    return hmac.compare_digest(_stored_key(_xor(proof, signature)), credential.stored_key)


def check_params(time_cost, memory_cost_kib, parallelism) -> None:
    """
    Refuse Argon2id parameters the HELLO reply cannot carry or Argon2id
    rejects (at least 8 KiB of memory per lane): a credential with them
    would make every HELLO for its account fail to encode.
    """
    def check(label, value, low, high):
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"Argon2id {label} must be an integer in {low}..{high}: {value!r}")
    check("time cost", time_cost, 1, MAX_KDF_TIME_COST)
    check("parallelism", parallelism, 1, MAX_KDF_PARALLELISM)
    check("memory (KiB)", memory_cost_kib, 8 * parallelism, MAX_KDF_MEMORY_KIB)


def hash_password(
    name: str,
    password: str,
    time_cost: int = DEFAULT_TIME_COST,
    memory_cost_kib: int = DEFAULT_MEMORY_COST_KIB,
    parallelism: int = DEFAULT_PARALLELISM,
) -> Credential:
    """Make a credential with a fresh random salt (slow on purpose: Argon2id)."""
    check_params(time_cost, memory_cost_kib, parallelism)
    params = AuthParams(os.urandom(SALT_BYTES), time_cost, memory_cost_kib, parallelism)
    return Credential(name, params, _stored_key(derive_client_key(password, params)))


def format_credential(credential: Credential) -> str:
    """One line of a credentials file: name, then argon2id parameters, salt and key."""
    params = credential.params
    return ":".join([
        credential.name, "argon2id", str(params.time_cost), str(params.memory_cost_kib),
        str(params.parallelism), base64.b64encode(params.salt).decode("ascii"),
        base64.b64encode(credential.stored_key).decode("ascii")])


class CredentialFileError(ValueError):
    pass


def parse_credentials(text: str) -> dict[str, Credential]:
    """Parse a credentials file; blank lines and C{#} comments are ignored."""
    credentials = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.rsplit(":", 6)
        if len(fields) != 7 or fields[1] != "argon2id":
            raise CredentialFileError(f"line {number}: expected name:argon2id:t:m:p:salt:key")
        name, _, time_cost, memory_kib, parallelism, salt, key = fields
        try:
            params = AuthParams(base64.b64decode(salt, validate=True), int(time_cost),
                                int(memory_kib), int(parallelism))
            check_params(params.time_cost, params.memory_cost_kib, params.parallelism)
            stored_key = base64.b64decode(key, validate=True)
        except ValueError as error:
            raise CredentialFileError(f"line {number}: {error}") from None
        credentials[name] = Credential(name, params, stored_key)
    return credentials


@attrs.frozen
class Authenticator:
    """
    The login policy: accounts with a credential must prove their password;
    other names may log in with the CRC token alone unless C{require_password}.
    """

    credentials: Mapping[str, Credential] = attrs.field(factory=dict)
    require_password: bool = False
    #: Keys the decoy salts.  Every process of a deployment, and every
    #: restart, must be given the same one (the plugin's C{--decoy-secret}):
    #: with a salt that changed between two HELLOs for the same name, the
    #: name plainly has no password, since a real salt never changes.  The
    #: random default is only for an authenticator without credentials,
    #: where there is nothing to hide.
    decoy_secret: bytes = attrs.field(factory=lambda: os.urandom(32))

    def params_for(self, name: str) -> AuthParams:
        """
        The KDF parameters the client needs for C{name}.  Unknown names get
        decoy parameters, stable for as long as the decoy secret is, so that
        the reply does not reveal which accounts have passwords.
        """
        credential = self.credentials.get(name)
        if credential is not None:
            return credential.params
        salt = hmac.digest(self.decoy_secret, _DECOY_LABEL + name.encode("utf-8"),
                           "sha256")[:SALT_BYTES]
        return AuthParams(salt, DEFAULT_TIME_COST, DEFAULT_MEMORY_COST_KIB, DEFAULT_PARALLELISM)

    def has_password(self, name: str) -> bool:
        """Whether C{name} is an account with a password (and so keeps its user id for good)."""
        return name in self.credentials

    def allows(self, name: str, nonce: int, proof: Optional[bytes]) -> bool:
        """
        Whether this LOGIN may proceed.  A name without a password is let in
        (unless passwords are required) whatever follows its CRC token: the
        existing server ignores those bytes, so refusing them could refuse an
        existing client, and the CRC token alone already lets anyone in there.
        """
        credential = self.credentials.get(name)
        if credential is None:
            return not self.require_password
        return proof is not None and verify_proof(credential, nonce, proof)
