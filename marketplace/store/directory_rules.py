"""
Directory rules shared by every backend: which user id a name gets.

User ids are u32 on the wire while accounts are named by users, so each name
is given a stable id: 32-bit FNV-1a of the UTF-8 name modulo the id space,
then linear probing (id + 1, wrapping) past ids already taken.  An id once
claimed stays its name's for good, so the same claims in the same order give
the same ids on every backend.  The backends differ only in where the table
lives and how a claim is made atomic.

A claim is permanent, or leased for a number of seconds (renewed by each
later claim of the same name with a lease).  A leased claim that has expired
is no claim at all: its name holds nothing and its id is free for any name,
exactly as if it had never been claimed, whether or not the backend has
cleaned it up yet.  A permanent claim of a leased name keeps its id and makes
it permanent; a leased claim of a permanently claimed name changes nothing.
With a lease limit, a new leased claim is refused once that many leased
claims are live in the id space, so that leased (anonymous) names can never
take the ids kept for permanent ones.

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


def check_lease(lease, lease_limit) -> None:
    """A lease is None (permanent) or positive seconds; a limit None or an int >= 0."""
    if lease is not None and (isinstance(lease, bool) or not isinstance(lease, (int, float))
                              or not lease > 0):
        raise ValueError(f"a lease is a positive number of seconds: {lease!r}")
    if lease_limit is not None and (type(lease_limit) is not int or lease_limit < 0):
        raise ValueError(f"a lease limit is an integer >= 0: {lease_limit!r}")


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


def leases_full_message(lease_limit: int) -> str:
    return f"all {lease_limit} user ids open to leased names are taken"
