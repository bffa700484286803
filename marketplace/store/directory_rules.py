"""
Directory rules shared by every backend: which user id a name gets.

User ids are u32 on the wire while accounts are named by users, so each name
is given a stable id: 32-bit FNV-1a of the UTF-8 name modulo the id space,
then linear probing (id + 1, wrapping) past ids already taken.  An id once
claimed stays its name's for good, so the same claims in the same order give
the same ids on every backend.  The backends differ only in where the table
lives and how a claim is made atomic.

``RESERVED_ID`` (0xFFFFFFFF) is never given out: the u32 wire formats use
it for "nobody" (TXN_HISTORY's no-counterparty id), so a user holding it
would read as none.  It is in range only for the full 2**32 id space.
"""

from __future__ import annotations

FNV_OFFSET_BASIS = 0x811C9DC5
FNV_PRIME = 0x01000193

#: Every u32: the id space unless a profile narrows it.
FULL_ID_SPACE = 1 << 32

#: The id the wire formats read as "nobody"; never claimed.
RESERVED_ID = 0xFFFFFFFF


def fnv1a_32(data: bytes) -> int:
    value = FNV_OFFSET_BASIS
    for byte in data:
        value = ((value ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return value


def check_id_space(id_space) -> int:
    """Refuse anything but an int in ``1..FULL_ID_SPACE`` (bools included)."""
    if type(id_space) is not int or not 0 < id_space <= FULL_ID_SPACE:
        raise ValueError(f"id space must be an integer in 1..{FULL_ID_SPACE}: {id_space!r}")
    return id_space


def check_name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"names are strings: {name!r}")
    return name


def home_slot(name: str, id_space: int) -> int:
    """Where probing for ``name`` starts."""
    return fnv1a_32(name.encode("utf-8")) % id_space


def reserved_in(id_space: int) -> bool:
    """Whether ``RESERVED_ID`` falls inside ``id_space`` (and so is skipped)."""
    return RESERVED_ID < id_space


def capacity(id_space: int) -> int:
    """How many names ``id_space`` can hold."""
    return id_space - 1 if reserved_in(id_space) else id_space


def full_message(id_space: int) -> str:
    return f"all {capacity(id_space)} user ids of the id space {id_space} are taken"
