"""
Name -> user id directory.

User ids are u32 on the wire while accounts are named by users, so each
name is given a stable id: 32-bit FNV-1a of the UTF-8 name modulo the id
space, with linear probing on collision (the existing server's rule; the
compatibility profile uses an id space of 1024 so that the existing stress
client's random transfer targets all exist).

This implementation keeps the table in process memory.  It is the one piece
of per-user state outside the store; a store-backed directory with the same
Deferred-returning interface is the hook for multi-process workers.
"""

from __future__ import annotations

from twisted.internet import defer

from protocols.tradechat_bodies import NO_COUNTERPARTY

FNV_OFFSET_BASIS = 0x811C9DC5
FNV_PRIME = 0x01000193
FULL_ID_SPACE = 1 << 32


def fnv1a_32(data: bytes) -> int:
    value = FNV_OFFSET_BASIS
    for byte in data:
        value = ((value ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return value


class DirectoryFull(Exception):
    """Every id of the id space is taken."""


class NameDirectory:
    def __init__(self, id_space: int = FULL_ID_SPACE) -> None:
        self.id_space = id_space
        self._ids_by_name: dict[str, int] = {}
        self._names_by_id: dict[int, str] = {}
        if NO_COUNTERPARTY < id_space:
            # TXN_HISTORY encodes "no counterparty" as this id, so a user
            # holding it would read as none; it is never given out.
            self._names_by_id[NO_COUNTERPARTY] = ""

    def user_id_for(self, name: str) -> defer.Deferred:
        """Fire with the id of C{name}, claiming one on first use."""
        try:
            return defer.succeed(self._claim(name))
        except DirectoryFull as error:
            return defer.fail(error)

    def _claim(self, name: str) -> int:
        user_id = self._ids_by_name.get(name)
        if user_id is not None:
            return user_id
        if len(self._names_by_id) >= self.id_space:
            raise DirectoryFull(f"all {self.id_space} user ids are taken")
        user_id = fnv1a_32(name.encode("utf-8")) % self.id_space
        while user_id in self._names_by_id:
            user_id = (user_id + 1) % self.id_space
        self._ids_by_name[name] = user_id
        self._names_by_id[user_id] = name
        return user_id
