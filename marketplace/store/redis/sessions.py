"""
Sessions in Redis.  Expiry is Redis's own (``PEXPIRE``, slid on every touch),
so sessions outlive any one process and need no sweeper.  Each user's set of
session ids expires with the longest-lived of its sessions (its expiry
slides with theirs), and every create drops a few ids whose session is gone.
"""

from __future__ import annotations

import json
import time

from twisted.internet import defer
from zope.interface import implementer

from marketplace.store.errors import SessionNotFound
from marketplace.store.interfaces import ISessionStore
from marketplace.store.records import Session
from marketplace.store.redis.scripts import lua
from marketplace.store.sessionids import DEFAULT_SESSION_TTL, is_session_id, new_session_id


def _session(session_id: str, flat_fields) -> Session:
    fields = dict(zip(flat_fields[::2], flat_fields[1::2]))
    return Session(session_id, fields["user"], json.loads(fields["data"]),
                   int(fields["ttl_ms"]) / 1000.0, float(fields["created"]))


@implementer(ISessionStore)
class RedisSessions:
    def __init__(self, connection):
        self._redis = connection
        self._session = connection.prefix + "session:"
        self._user_sessions = connection.prefix + "session:user:"

    def create(self, user_id, data=None, ttl=None):
        ttl = DEFAULT_SESSION_TTL if ttl is None else float(ttl)
        session = Session(new_session_id(), str(user_id), dict(data or {}), ttl, time.time())
        return self._redis.script(
            lua("session_create"),
            [self._session + session.session_id, self._user_sessions + session.user_id],
            [session.user_id, max(1, round(ttl * 1000)), repr(session.created_at),
             json.dumps(session.data), session.session_id, self._session],
            parse=lambda _: session)

    def touch(self, session_id):
        def parse(fields):
            if not fields:
                raise SessionNotFound(f"no such session: {session_id!r}")
            return _session(session_id, fields)
        if not is_session_id(session_id):
            return defer.fail(SessionNotFound(f"no such session: {session_id!r}"))
        return self._redis.script(lua("session_touch"), [self._session + session_id],
                                  [self._user_sessions], parse=parse)

    def delete(self, session_id):
        if not is_session_id(session_id):
            return defer.succeed(False)
        return self._redis.script(lua("session_delete"), [self._session + session_id],
                                  [self._user_sessions, session_id], parse=lambda removed: removed == 1)

    def sessions_of(self, user_id):
        return self._redis.script(
            lua("session_list"), [self._user_sessions + str(user_id)], [self._session],
            parse=lambda live: sorted((_session(session_id, fields) for session_id, fields in live),
                                      key=lambda s: s.session_id))
