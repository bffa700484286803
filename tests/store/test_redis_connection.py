"""
The store's Redis connection protocol on its own, over a string transport
and a clock: what it writes for the commands of a turn, and how the
replies reach their callers.
"""

from __future__ import annotations

import hiredis
import txredisapi
from twisted.internet import task
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from marketplace.store.redis.connection import _PipelinedProtocol


def commands_in(data: bytes) -> list:
    """The commands in C{data}, as Redis would read them."""
    reader = hiredis.Reader(encoding="utf-8")
    reader.feed(data)
    commands = []
    command = reader.gets()
    while command is not False:
        commands.append(command)
        command = reader.gets()
    return commands


class ReplicaWaitTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.protocol = _PipelinedProtocol(clock=self.clock, timeout=5.0, require_primary=False)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def test_the_writes_of_a_turn_share_one_wait_after_them(self):
        """
        However many calls of a turn wait for replicas, one C{WAIT} follows
        the turn's commands, and its reply answers each of them.
        """
        protocol = self.protocol
        first = protocol.send("INCR", "a")
        first_held = protocol.wait_for_replicas(1, 50)
        second = protocol.send("INCR", "b")
        second_held = protocol.wait_for_replicas(1, 50)
        self.clock.advance(0)
        self.assertEqual(commands_in(self.transport.value()),
                         [["INCR", "a"], ["INCR", "b"], ["WAIT", "1", "50"]])
        protocol.dataReceived(b":1\r\n:7\r\n:1\r\n")
        self.assertEqual(self.successResultOf(first), 1)
        self.assertEqual(self.successResultOf(second), 7)
        self.assertEqual(self.successResultOf(first_held), 1)
        self.assertEqual(self.successResultOf(second_held), 1)

    def test_each_turn_has_its_own_wait(self):
        protocol = self.protocol
        protocol.send("INCR", "a")
        protocol.wait_for_replicas(1, 50)
        self.clock.advance(0)
        protocol.send("INCR", "b")
        protocol.wait_for_replicas(2, 50)
        self.clock.advance(0)
        self.assertEqual(commands_in(self.transport.value()),
                         [["INCR", "a"], ["WAIT", "1", "50"], ["INCR", "b"], ["WAIT", "2", "50"]])

    def test_a_wait_refused_fails_every_call_it_answers(self):
        protocol = self.protocol
        protocol.send("INCR", "a")
        held = [protocol.wait_for_replicas(1, 50) for _ in range(2)]
        self.clock.advance(0)
        protocol.dataReceived(b":1\r\n-ERR WAIT cannot be used with replica instances\r\n")
        for d in held:
            self.failureResultOf(d, txredisapi.ResponseError)

    def test_a_connection_lost_before_its_wait_went_out_fails_the_calls_waiting(self):
        protocol = self.protocol
        written = protocol.send("INCR", "a")
        held = protocol.wait_for_replicas(1, 50)
        protocol.connectionLost(Failure(ConnectionLost()))
        self.clock.advance(0)
        self.failureResultOf(written, txredisapi.ConnectionError)
        self.failureResultOf(held, txredisapi.ConnectionError)
        self.assertEqual(self.transport.value(), b"")
