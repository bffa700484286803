"""
The room hub contract (tests/tradechat/hub_contract.py) on the in-process
hub and on the Redis pub/sub hub, and what only the pub/sub hub does: one
service across hubs (processes, hosts), hostile channel content dropped,
subscriptions restored after Redis restarts.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.trial import unittest

from marketplace.store import StoreUnavailable, make_store
from marketplace.tradechat.pubsub import RedisRoomHub
from marketplace.tradechat.rooms import LocalRoomHub
from protocols import tradechat_bodies as bodies
from protocols.turns import TurnFlusher
from tests.support.redis_server import start_redis
from tests.support.services import start_service
from tests.tradechat.hub_contract import RecordingTarget, RoomHubContract


class LocalRoomHubContractTests(RoomHubContract, unittest.TestCase):
    def make_hub(self):
        return defer.succeed(LocalRoomHub(TurnFlusher(reactor)))


class RedisRoomHubContractTests(RoomHubContract, unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.redis = yield start_redis(self)

    def make_hub(self, store_timeout: float = 2.0, key_prefix: str = ""):
        store = start_service(self, make_store(self.redis.url, store_timeout, reactor, key_prefix))
        hub = start_service(self, RedisRoomHub(store.connection, TurnFlusher(reactor), reactor))
        return defer.succeed(hub)

    @defer.inlineCallbacks
    def test_members_on_hubs_of_one_service_each_receive_once(self):
        first = yield self.make_hub()
        second = yield self.make_hub()
        here = yield self.member(first, 1, 10)
        there = yield self.member(second, 2, 10)
        delivered_to = yield first.publish(10, 1, b"from the first")
        self.assertEqual(delivered_to, 2)  # processes, each once
        yield second.publish(10, 2, b"from the second")
        for target in (here, there):
            yield target.received(2)
            self.assertEqual(target.messages(), [b"from the first", b"from the second"])

    @defer.inlineCallbacks
    def test_deployments_under_other_key_prefixes_do_not_hear_each_other(self):
        eu1 = yield self.make_hub(key_prefix="eu1:")
        eu2 = yield self.make_hub(key_prefix="eu2:")
        yield self.member(eu1, 1, 10)
        yield self.member(eu2, 2, 10)
        self.assertEqual((yield eu1.publish(10, 1, b"only eu1")), 1)

    @defer.inlineCallbacks
    def test_a_hub_subscribes_only_to_rooms_with_a_member_here(self):
        first = yield self.make_hub()
        second = yield self.make_hub()
        yield self.member(first, 1, 10)
        yield self.member(second, 2, 11)
        self.assertEqual((yield first.publish(10, 1, b"x")), 1)
        self.assertEqual((yield first.publish(11, 1, b"y")), 1)
        self.assertEqual((yield first.publish(12, 1, b"z")), 0)

    @defer.inlineCallbacks
    def test_malformed_channel_content_is_dropped_and_counted(self):
        hub = yield self.make_hub()
        target = yield self.member(hub, 1, 10)
        channel = hub._channel(10)
        good = bodies.encode_chat_broadcast(bodies.ChatBroadcast(10, 1, b"fine"))
        wrong_room = bodies.encode_chat_broadcast(bodies.ChatBroadcast(11, 1, b"elsewhere"))
        publish = hub._connection.command
        for payload in (b"", b"\x00" * 5, good[:-1], wrong_room, good):
            yield publish("publish", channel, payload)
        yield target.received(1)
        self.assertEqual(target.messages(), [b"fine"])
        self.assertEqual(hub.dropped, 4)

    @defer.inlineCallbacks
    def test_subscriptions_come_back_after_redis_restarts(self):
        hub = yield self.make_hub(store_timeout=0.5)
        target = yield self.member(hub, 1, 10)
        yield self.redis.kill()
        failure = yield self.assertFailure(hub.publish(10, 1, b"lost"), StoreUnavailable)
        self.assertIn("did not answer", str(failure))
        yield self.redis.restart()
        # A join waits for the subscription, which the hub restores on reconnecting.
        yield self._retry_until_ok(lambda: hub.join(1, 10))
        yield hub.publish(10, 1, b"after the restart")
        yield target.received(1)
        self.assertEqual(target.messages(), [b"after the restart"])

    @defer.inlineCallbacks
    def _retry_until_ok(self, operation, attempts: int = 20):
        for _ in range(attempts):
            try:
                return (yield operation())
            except StoreUnavailable:
                continue
        self.fail(f"still failing after {attempts} attempts")
