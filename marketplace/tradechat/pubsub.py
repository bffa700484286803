# -*- test-case-name: tests.tradechat.test_rooms_contract -*-
"""
Rooms across processes and hosts: chat fan-out through Redis pub/sub.

Every process serving the trading chatroom on one Redis keeps, like
L{LocalRoomHub}, the membership of the users logged in to it, and
subscribes on its own subscriber connection to the channel of each room
that has a member here.  A chat is one C{PUBLISH} of the encoded
broadcast body to the room's channel; Redis hands it to every subscribed
process once, and each delivers it to its own members' connections
exactly as the in-process hub does (encoded once, queued in each outbox,
written at the end of the reactor turn).  So:

- every member receives every message once, whichever process or host
  it is connected to, the sender's own connections included (they get it
  back through Redis like everyone else, so nothing is delivered twice);
- per sender, messages arrive in send order: a connection's requests are
  handled one at a time, CHAT_SEND is answered once Redis has taken the
  PUBLISH, and Redis delivers one channel's messages in the order it took
  them;
- a JOIN is answered once the SUBSCRIBE is confirmed, so a message sent
  after the joiner saw its reply reaches it;
- memory stays bounded: a slow client is the protocol's business
  (C{--max-output-buffer}), and a process that cannot keep up with its
  subscription is disconnected by Redis's own C{client-output-buffer-limit
  pubsub}, then reconnects and subscribes again.

A chat sent while a process's subscriber connection is down (Redis
restarting) does not reach that process's members: delivery is at most
once, never twice.  CHAT_SEND answers SERVER_BUSY while PUBLISH fails, and
JOIN answers SERVER_BUSY when the subscription is not confirmed within the
store timeout (the membership is kept, and subscribed on reconnecting).

Channels are C{<prefix>chat:<db>:<room>} (C{tradechat:chat:0:7} by
default): under the store's key prefix, so deployments sharing a Redis do
not hear each other's rooms, and with the database in the name, since
pub/sub channels are not scoped to Redis's numbered databases.
Whatever arrives on a channel is decoded and checked (body well-formed,
room equal to the channel's) before anyone receives it; anything else is
counted in C{dropped} and logged.
"""

from __future__ import annotations

import txredisapi
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from marketplace.store.errors import StoreUnavailable
from marketplace.store.redis.connection import _QuickReconnectFactory
from marketplace.tradechat.rooms import LocalRoomHub
from protocols.tradechat_bodies import (
    MAX_CHAT_MESSAGE, BadBody, ChatBroadcast, decode_chat_broadcast, encode_chat_broadcast,
)


def room_hub(store, flusher, reactor):
    """The hub for C{store}: in-process on the embedded store, pub/sub on Redis."""
    connection = getattr(store, "connection", None)
    if connection is None:
        return LocalRoomHub(flusher)
    return RedisRoomHub(connection, flusher, reactor)


class _RoomSubscriber(txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern, channel, message):
        self.factory.hub.message_received(channel, message)


class _RoomSubscriberFactory(_QuickReconnectFactory):
    protocol = _RoomSubscriber

    def __init__(self, hub: "RedisRoomHub", address, timeout: float) -> None:
        super().__init__(str(address), None, 1, isLazy=True, charset=None,
                         password=address.password, replyTimeout=timeout, convertNumbers=False)
        self.hub = hub

    def addConnection(self, conn):
        super().addConnection(conn)
        if conn in self.pool:
            self.hub.subscriber_connected(conn)

    def delConnection(self, conn):
        super().delConnection(conn)
        self.hub.subscriber_lost(conn)


class RedisRoomHub(LocalRoomHub, Service):
    """
    L{IRoomHub} over Redis pub/sub; C{connection} is the store's
    L{RedisConnection} (PUBLISH goes through it, and the subscriber
    connection dials the same address with the same timeout).
    """

    log = Logger()

    def __init__(self, connection, flusher, reactor) -> None:
        LocalRoomHub.__init__(self, flusher)
        self._connection = connection
        self._reactor = reactor
        self._prefix = f"{connection.prefix}chat:{connection.address.db}:".encode("ascii")
        self._factory = None
        self._subscriber = None
        self._subscribed: set[int] = set()
        # room -> the token of the SUBSCRIBE last sent for it, until confirmed
        self._subscribing: dict[int, object] = {}
        self._join_waiters: dict[int, list[defer.Deferred]] = {}
        self.dropped = 0

    # Service -------------------------------------------------------------

    def startService(self):
        Service.startService(self)
        address = self._connection.address
        self._factory = _RoomSubscriberFactory(self, address, self._connection.timeout)
        self._factory.startConnecting(self._connection.endpoint())

    def stopService(self):
        Service.stopService(self)
        factory, self._factory = self._factory, None
        if factory is None:
            return None
        return factory.disconnect()

    # IRoomHub ------------------------------------------------------------

    def join(self, user_id: int, room: int):
        """@return: a Deferred firing once this process is subscribed to C{room}."""
        LocalRoomHub.join(self, user_id, room)
        if room in self._subscribed:
            return defer.succeed(None)
        waiter = defer.Deferred()
        # Waiters that timed out during an outage are dropped here, not kept until it ends.
        waiting = [w for w in self._join_waiters.get(room, ()) if not w.called]
        waiting.append(waiter)
        self._join_waiters[room] = waiting
        if room not in self._subscribing:
            self._subscribe(room)
        return waiter.addTimeout(self._connection.timeout, self._reactor,
                                 onTimeoutCancel=self._not_subscribed)

    def _not_subscribed(self, result, timeout):
        raise StoreUnavailable(f"Redis did not confirm a room subscription within {timeout}s")

    def publish(self, room: int, from_user_id: int, message: bytes):
        """@return: a Deferred firing with how many processes Redis delivered it to."""
        payload = encode_chat_broadcast(ChatBroadcast(room, from_user_id, message))
        return self._connection.execute("PUBLISH", self._channel(room), payload)

    def _room_vacated(self, room: int) -> None:
        self._subscribed.discard(room)
        self._subscribing.pop(room, None)
        if self._subscriber is not None:
            self._subscriber.unsubscribe([self._channel(room)]).addErrback(self._command_failed)

    # The subscriber connection -------------------------------------------

    def _channel(self, room: int) -> bytes:
        return self._prefix + str(room).encode("ascii")

    def _subscribe(self, room: int) -> None:
        if self._subscriber is None:
            return  # subscribed on connecting
        token = self._subscribing[room] = object()
        d = self._subscriber.subscribe([self._channel(room)])
        d.addCallbacks(self._confirmed, self._command_failed, callbackArgs=(room, token))

    def _confirmed(self, _reply, room: int, token) -> None:
        # Commands on one connection take effect in order, so only the
        # latest SUBSCRIBE for a room (no UNSUBSCRIBE since) counts.
        if self._subscribing.get(room) is not token:
            return
        del self._subscribing[room]
        self._subscribed.add(room)
        for waiter in self._join_waiters.pop(room, ()):
            waiter.callback(None)

    def _command_failed(self, failure) -> None:
        """A lost connection: subscribing again on reconnecting covers it."""
        self.log.debug("room subscription command failed: {error}",
                       error=failure.getErrorMessage())

    def subscriber_connected(self, subscriber) -> None:
        self._subscriber = subscriber
        for room in list(self._members):
            self._subscribe(room)

    def subscriber_lost(self, subscriber) -> None:
        if self._subscriber is subscriber:
            self._subscriber = None
            self._subscribed.clear()
            self._subscribing.clear()

    def message_received(self, channel, payload) -> None:
        try:
            room = self._room_of(channel)
            broadcast = decode_chat_broadcast(payload)
            if broadcast.room != room:
                raise BadBody(f"a chat for room {broadcast.room} on the channel of room {room}")
            if len(broadcast.message) > MAX_CHAT_MESSAGE:
                raise BadBody(f"a chat message over {MAX_CHAT_MESSAGE} bytes")
        except (BadBody, ValueError, TypeError) as error:
            self.dropped += 1
            self.log.warn("dropped a malformed room message: {error}", error=error)
            return
        LocalRoomHub.publish(self, room, broadcast.from_user_id, broadcast.message)

    def _room_of(self, channel) -> int:
        if not isinstance(channel, bytes) or not channel.startswith(self._prefix):
            raise ValueError(f"a message on an unknown channel {channel!r}")
        return int(channel[len(self._prefix):])
