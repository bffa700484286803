"""
Sessions held in this process.

Expiry is checked against the injected clock on every access, so a session is
never served past its timeout; :meth:`MemorySessions.prune` drops sessions
nobody asks for again and is run periodically by the store service.
"""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import implementer

from marketplace.store.errors import SessionNotFound
from marketplace.store.interfaces import ISessionStore
from marketplace.store.records import Session
from marketplace.store.sessionids import DEFAULT_SESSION_TTL, new_session_id


@implementer(ISessionStore)
class MemorySessions:
    def __init__(self, clock):
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._expires_at: dict[str, float] = {}
        self._by_user: dict[str, set[str]] = {}

    def create(self, user_id, data=None, ttl=None):
        ttl = DEFAULT_SESSION_TTL if ttl is None else float(ttl)
        now = self._clock.seconds()
        session = Session(new_session_id(), str(user_id), dict(data or {}), ttl, now)
        self._sessions[session.session_id] = session
        self._expires_at[session.session_id] = now + ttl
        self._by_user.setdefault(session.user_id, set()).add(session.session_id)
        return defer.succeed(session)

    def touch(self, session_id):
        session = self._live(session_id)
        if session is None:
            return defer.fail(SessionNotFound(f"no such session: {session_id!r}"))
        self._expires_at[session_id] = self._clock.seconds() + session.ttl
        return defer.succeed(session)

    def delete(self, session_id):
        existed = self._live(session_id) is not None
        self._forget(session_id)
        return defer.succeed(existed)

    def sessions_of(self, user_id):
        ids = sorted(self._by_user.get(str(user_id), ()))
        live = [s for s in (self._live(i) for i in ids) if s is not None]
        return defer.succeed(live)

    def prune(self) -> int:
        """Drop every expired session; returns how many were dropped."""
        now = self._clock.seconds()
        expired = [i for i, at in self._expires_at.items() if at <= now]
        for session_id in expired:
            self._forget(session_id)
        return len(expired)

    def _live(self, session_id) -> Session | None:
        expires_at = self._expires_at.get(session_id)
        if expires_at is None:
            return None
        if expires_at <= self._clock.seconds():
            self._forget(session_id)
            return None
        return self._sessions[session_id]

    def _forget(self, session_id) -> None:
        session = self._sessions.pop(session_id, None)
        self._expires_at.pop(session_id, None)
        if session is not None:
            owned = self._by_user.get(session.user_id)
            if owned is not None:
                owned.discard(session_id)
                if not owned:
                    del self._by_user[session.user_id]
