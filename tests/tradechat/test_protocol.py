"""
The server protocol over StringTransport and task.Clock: login, every error
path and its counter, money operations, rooms and push, timeouts and the
slow-reader bound.
"""

import gc
import weakref

from twisted.internet import defer
from twisted.trial import unittest

from marketplace.store import (
    MAX_BALANCE, BalanceOverflow, DirectoryFull, StoreUnavailable, UnknownAccount,
)
from protocols.tradechat_bodies import login_token
from protocols import tradechat_bodies as bodies
from protocols.nsframe import (
    FLAG_COMPRESSED, FLAG_OBFUSCATED, FLAG_RESPONSE, HEADER_LEN, Opcode, Status, encode_frame,
)
from protocols.immediate import HIGH_WATER
from protocols.tradechat import error_status
from tests.tradechat.helpers import Harness, WriteCountingTransport


def _balance(frame) -> int:
    return bodies.decode_balance(frame.body)


class LoginTests(unittest.TestCase):
    def setUp(self):
        self.harness = Harness()
        self.peer = self.harness.connect()

    def test_hello_returns_a_fresh_eight_byte_nonce(self):
        first = self.peer.ask(bodies.Hello())
        second = self.peer.ask(bodies.Hello())
        self.assertEqual((first.status, first.flags, len(first.body)), (Status.OK, FLAG_RESPONSE, 8))
        self.assertNotEqual(first.body, second.body)

    def test_login_with_crc_token(self):
        reply = self.peer.login("alice")
        self.assertEqual(reply.balance, 0)
        self.assertEqual(self.harness.rooms.members(0), frozenset())

    def test_same_name_is_the_same_user(self):
        other = self.harness.connect()
        self.assertEqual(self.peer.login("alice").user_id, other.login("alice").user_id)

    def test_login_without_hello_is_unauthorized(self):
        response = self.peer.ask(bodies.Login("alice", 0))
        self.assertEqual(response.status, Status.UNAUTHORIZED)
        self.assertEqual(self.harness.counters.counts["login_refused"], 1)

    def test_wrong_token_is_unauthorized(self):
        nonce = bodies.decode_hello_reply(self.peer.ask(bodies.Hello()).body).nonce
        response = self.peer.ask(bodies.Login("alice", login_token("alice", nonce) ^ 1))
        self.assertEqual(response.status, Status.UNAUTHORIZED)
        self.assertFalse(self.peer.closed)

    def test_nonce_serves_one_attempt(self):
        nonce = bodies.decode_hello_reply(self.peer.ask(bodies.Hello()).body).nonce
        self.peer.ask(bodies.Login("alice", 0))
        response = self.peer.ask(bodies.Login("alice", login_token("alice", nonce)))
        self.assertEqual(response.status, Status.UNAUTHORIZED)

    def test_second_login_on_a_connection_is_refused(self):
        self.peer.login("alice")
        self.peer.ask(bodies.Hello())
        response = self.peer.ask(bodies.Login("bob", 0))
        self.assertEqual(response.status, Status.BAD_PACKET)
        self.assertEqual(self.harness.counters.counts["already_logged_in"], 1)

    def test_operations_before_login_are_unauthorized(self):
        requests = [bodies.Logout(), bodies.JoinRoom(0), bodies.LeaveRoom(0),
                    bodies.ChatSend(0, b"hi"), bodies.Deposit(1), bodies.Withdraw(1),
                    bodies.Transfer(1, 1), bodies.Balance(), bodies.TxnHistory()]
        for request in requests:
            with self.subTest(request):
                response = self.peer.ask(request)
                self.assertEqual((response.status, response.body), (Status.UNAUTHORIZED, b""))
        self.assertEqual(self.harness.counters.counts["unauthorized"], len(requests))
        self.assertFalse(self.peer.closed)

    def test_heartbeat_before_login_is_allowed(self):
        self.assertEqual(self.peer.ask(bodies.Heartbeat()).status, Status.OK)

    def test_logout_ends_the_login_session(self):
        self.alice_account = str(self.peer.login("alice").user_id)
        sessions = self.harness.store.sessions
        self.assertEqual(len(self.successResultOf(sessions.sessions_of(self.alice_account))), 1)
        self.assertEqual(self.peer.ask(bodies.Logout()).status, Status.OK)
        self.assertEqual(self.peer.ask(bodies.Balance()).status, Status.UNAUTHORIZED)
        self.assertEqual(self.successResultOf(sessions.sessions_of(self.alice_account)), [])
        self.peer.login("alice")
        self.assertEqual(self.peer.ask(bodies.Balance()).status, Status.OK)

    def test_closing_the_connection_deletes_the_session(self):
        user_id = self.peer.login("alice").user_id
        sessions = self.harness.store.sessions
        self.assertEqual(len(self.successResultOf(sessions.sessions_of(str(user_id)))), 1)
        self.peer.protocol.connectionLost(None)
        self.assertEqual(self.successResultOf(sessions.sessions_of(str(user_id))), [])

    def test_expired_session_is_unauthorized(self):
        harness = Harness(session_ttl=10.0, idle_timeout=1000.0, login_timeout=1000.0)
        peer = harness.logged_in("alice")
        harness.clock.advance(11)
        response = peer.ask(bodies.Deposit(5))
        self.assertEqual(response.status, Status.UNAUTHORIZED)
        self.assertEqual(harness.counters.counts["unauthorized"], 1)


    def test_room_requests_keep_the_session_alive(self):
        harness = Harness(session_ttl=10.0, idle_timeout=1000.0, login_timeout=1000.0)
        alice = harness.logged_in("alice")
        bob = harness.logged_in("bob")
        for peer in (alice, bob):
            self.assertEqual(peer.ask(bodies.JoinRoom(1)).status, Status.OK)
        for request in (bodies.ChatSend(1, b"hi"), bodies.JoinRoom(2), bodies.LeaveRoom(2)) * 2:
            harness.clock.advance(3)
            self.assertEqual(alice.ask(request).status, Status.OK)
            bob.ask(bodies.Heartbeat())
        # 18 s of room requests alone, far past the 10 s session TTL.
        self.assertEqual(alice.ask(bodies.Balance()).status, Status.OK)
        bob.ask(bodies.ChatSend(1, b"to alice"))
        self.assertEqual(len([f for f in alice.received() if f.opcode == Opcode.CHAT_BROADCAST]), 1)


class BadInputTests(unittest.TestCase):
    def setUp(self):
        self.harness = Harness()
        self.peer = self.harness.connect()
        self.counts = self.harness.counters.counts

    def test_before_login_other_opcodes_are_unauthorized_whatever_the_body(self):
        for opcode, body, flags in ((Opcode.DEPOSIT, (0).to_bytes(8, "big"), 0),
                                    (Opcode.BALANCE, b"x", 0),
                                    (Opcode.TRANSFER, b"", 0),
                                    (Opcode.BALANCE, b"", FLAG_COMPRESSED),
                                    (Opcode.CHAT_BROADCAST, b"", 0),
                                    (0x7777, b"", 0)):
            with self.subTest(opcode=opcode, body=body, flags=flags):
                self.peer.send_raw(encode_frame(opcode, 5, 0, body, flags))
                [response] = self.peer.received()
                self.assertEqual((response.opcode, response.status), (opcode, Status.UNAUTHORIZED))
        self.assertEqual(self.counts["unauthorized"], 6)
        self.assertEqual(self.counts.get("bad_body", 0), 0)
        self.assertFalse(self.peer.closed)

    def test_unknown_opcode_is_bad_packet_and_connection_stays(self):
        self.peer.login("alice")
        self.peer.send_raw(encode_frame(0x7777, 5))
        [response] = self.peer.received()
        self.assertEqual((response.opcode, response.req_id, response.status),
                         (0x7777, 5, Status.BAD_PACKET))
        self.assertFalse(self.peer.closed)
        self.assertEqual(self.counts["unknown_opcode"], 1)

    def test_push_opcode_as_request_is_bad_packet(self):
        self.peer.login("alice")
        self.peer.send_raw(encode_frame(Opcode.CHAT_BROADCAST, 5))
        [response] = self.peer.received()
        self.assertEqual(response.status, Status.BAD_PACKET)

    def test_malformed_bodies_are_bad_packet_and_connection_stays(self):
        self.peer.login("alice")
        bad = [
            (Opcode.JOIN_ROOM, b"\x00"),
            (Opcode.LEAVE_ROOM, b""),
            (Opcode.CHAT_SEND, b"\x00\x00\x00\x05abc"),
            (Opcode.DEPOSIT, (0).to_bytes(8, "big")),
            (Opcode.WITHDRAW, (-5).to_bytes(8, "big", signed=True)),
            (Opcode.TRANSFER, b"\x00" * 11),
            (Opcode.TXN_HISTORY, b"\x00\x00" + b"\x00" * 8),
        ]
        for opcode, body in bad:
            with self.subTest(opcode=opcode):
                self.peer.send_raw(encode_frame(opcode, 9, 0, body))
                [response] = self.peer.received()
                self.assertEqual((response.opcode, response.status), (opcode, Status.BAD_PACKET))
        self.assertEqual(self.counts["bad_body"], len(bad))
        self.assertFalse(self.peer.closed)

    def test_malformed_login_is_bad_packet(self):
        for body in (b"", b"\x00\x00" + b"\x00" * 4, b"\x00\x20" + b"n" * 32 + b"\x00" * 4,
                     b"\x00\x01a\x00\x00\x00"):
            with self.subTest(body=body):
                self.peer.send_raw(encode_frame(Opcode.LOGIN, 3, 0, body))
                [response] = self.peer.received()
                self.assertEqual(response.status, Status.BAD_PACKET)

    def test_an_existing_client_padding_every_body_is_served(self):
        """The existing server ignores bytes after a body's fields; so does this one."""
        tail = b"\x00\xffpadding"
        req_ids = iter(range(1, 100))

        def ask(request):
            opcode, body = bodies.encode_request(request)
            self.peer.send_raw(encode_frame(opcode, next(req_ids), 0, body + tail))
            [response] = [f for f in self.peer.received() if f.is_response]
            return response

        hello = ask(bodies.Hello())
        self.assertEqual((hello.status, len(hello.body)), (Status.OK, 8))
        nonce = bodies.decode_hello_reply(hello.body).nonce
        login = ask(bodies.Login("alice", login_token("alice", nonce)))
        self.assertEqual(login.status, Status.OK)
        for request in (bodies.Heartbeat(), bodies.JoinRoom(7), bodies.ChatSend(7, b"hi"),
                        bodies.Deposit(10), bodies.Withdraw(5), bodies.Balance(),
                        bodies.LeaveRoom(7)):
            with self.subTest(request=request):
                self.assertEqual(ask(request).status, Status.OK)
        self.assertEqual(_balance(ask(bodies.Balance())), 5)
        self.assertEqual(self.counts["bad_body"], 0)

    def test_room_ids_are_the_whole_u16(self):
        """
        The existing server answers BAD_PACKET above room 63; this one takes
        every u16 room (docs/tradechat.md says why): no existing client is
        refused a room the existing server gives it.
        """
        self.peer.login("alice")
        for room in (0, 63, 64, 65535):
            with self.subTest(room=room):
                self.assertEqual(self.peer.ask(bodies.JoinRoom(room)).status, Status.OK)
                self.assertEqual(self.peer.ask(bodies.ChatSend(room, b"x")).status, Status.OK)
                self.assertEqual(self.peer.ask(bodies.LeaveRoom(room)).status, Status.OK)

    def test_checksum_failure_answers_then_closes(self):
        frame = bytearray(encode_frame(Opcode.BALANCE, 42))
        frame[22] ^= 0xFF
        self.peer.send_raw(bytes(frame))
        [response] = self.peer.received()
        self.assertEqual((response.opcode, response.req_id, response.status, response.flags),
                         (Opcode.BALANCE, 42, Status.CHECKSUM_FAIL, FLAG_RESPONSE))
        self.assertTrue(self.peer.closed)
        self.assertEqual(self.counts["checksum_fail"], 1)

    def assertClosedSilently(self, data: bytes, counter: str):
        self.peer.send_raw(data)
        self.assertEqual(self.peer.received(), [])
        self.assertTrue(self.peer.closed)
        self.assertEqual(self.counts[counter], 1)

    def test_bad_magic_closes(self):
        self.assertClosedSilently(b"GET / HTTP/1.1\r\n", "bad_magic")

    def test_bad_version_closes(self):
        frame = encode_frame(Opcode.HELLO, 1)
        self.assertClosedSilently(frame[:2] + b"\x02" + frame[3:], "bad_version")

    def test_bad_header_len_closes(self):
        frame = encode_frame(Opcode.HELLO, 1)
        self.assertClosedSilently(frame[:4] + b"\x00\x10" + frame[6:], "bad_header_len")

    def test_oversize_frame_closes_before_its_body(self):
        header = encode_frame(Opcode.CHAT_SEND, 1, 0, b"x" * 65505)[:32]
        self.assertClosedSilently(header, "frame_too_large")

    def test_configured_frame_limit(self):
        harness = Harness(max_frame_size=64)
        peer = harness.connect()
        peer.send_raw(encode_frame(Opcode.HELLO, 1, 0, b"\x00\x01a"))
        self.assertEqual(len(peer.received()), 1)
        peer.send_raw(encode_frame(Opcode.CHAT_SEND, 2, 0, b"\x00" * 40)[:10])
        self.assertTrue(peer.closed)
        self.assertEqual(harness.counters.counts["frame_too_large"], 1)

    def test_requests_before_a_bad_frame_are_answered(self):
        self.peer.send_raw(encode_frame(Opcode.HEARTBEAT, 1) + encode_frame(Opcode.HEARTBEAT, 2)
                           + b"garbage")
        self.assertEqual([f.req_id for f in self.peer.received()], [1, 2])
        self.assertTrue(self.peer.closed)

    def test_input_after_close_is_ignored(self):
        self.peer.send_raw(b"garbage")
        self.peer.send_raw(encode_frame(Opcode.HEARTBEAT, 1))
        self.assertEqual(self.peer.received(), [])

    def test_compressed_flag_is_bad_packet(self):
        self.peer.send_raw(encode_frame(Opcode.HEARTBEAT, 1, 0, b"", FLAG_COMPRESSED))
        [response] = self.peer.received()
        self.assertEqual(response.status, Status.BAD_PACKET)
        self.assertEqual(self.counts["compressed_unsupported"], 1)

    def test_split_and_pipelined_requests(self):
        stream = b"".join(encode_frame(Opcode.HEARTBEAT, n) for n in range(1, 6))
        for index in range(len(stream)):
            self.peer.send_raw(stream[index:index + 1])
        self.assertEqual([f.req_id for f in self.peer.received()], [1, 2, 3, 4, 5])


class MoneyTests(unittest.TestCase):
    def setUp(self):
        self.harness = Harness(compat=True)
        self.peer = self.harness.connect()
        self.user_id = self.peer.login("alice").user_id

    def test_compat_accounts_open_with_the_existing_balance(self):
        self.assertLess(self.user_id, 1024)
        self.assertEqual(_balance(self.peer.ask(bodies.Balance())), 100000)

    def test_deposit_withdraw_transfer(self):
        self.assertEqual(_balance(self.peer.ask(bodies.Deposit(50))), 100050)
        self.assertEqual(_balance(self.peer.ask(bodies.Withdraw(100))), 99950)
        target = (self.user_id + 1) % 1024
        self.assertEqual(_balance(self.peer.ask(bodies.Transfer(target, 950))), 99000)
        ledger = self.harness.store.ledger
        self.assertEqual(self.successResultOf(ledger.balance(str(target))), 100950)

    def test_obfuscated_request(self):
        response = self.peer.ask(bodies.Deposit(7), flags=FLAG_OBFUSCATED)
        self.assertEqual((response.flags, _balance(response)), (FLAG_RESPONSE, 100007))

    def test_obfuscated_request_with_a_bad_checksum_moves_no_money(self):
        frame = bytearray(encode_frame(Opcode.DEPOSIT, 5, 0, (7).to_bytes(8, "big"),
                                       FLAG_OBFUSCATED))
        frame[-1] ^= 0x01  # the obfuscated amount becomes 6
        self.peer.send_raw(bytes(frame))
        [response] = self.peer.received()
        self.assertEqual((response.req_id, response.status), (5, Status.CHECKSUM_FAIL))
        self.assertTrue(self.peer.closed)
        account = str(self.user_id)
        self.assertEqual(self.successResultOf(self.harness.store.ledger.balance(account)), 100000)

    def test_money_is_keyed_by_login_session_and_req_id(self):
        """The idempotency key names the login session, so no two sessions share one."""
        seen = []
        ledger = self.harness.store.ledger
        for operation in ("deposit", "withdraw", "transfer"):
            real = getattr(ledger, operation)

            def recording(*args, real=real, operation=operation):
                seen.append((operation, args[-2], args[-1]))
                return real(*args)

            self.patch(ledger, operation, recording)
        session_id = self.peer.protocol.state.session_id
        self.assertTrue(session_id)
        self.peer.ask(bodies.Deposit(5), req_id=11)
        self.peer.ask(bodies.Withdraw(5), req_id=12)
        self.peer.ask(bodies.Transfer((self.user_id + 1) % 1024, 5), req_id=13)
        ttl = self.harness.config.session_ttl
        self.assertEqual(seen, [("deposit", f"{session_id}:11", ttl),
                                ("withdraw", f"{session_id}:12", ttl),
                                ("transfer", f"{session_id}:13", ttl)])

    def test_insufficient_funds_carries_the_balance(self):
        response = self.peer.ask(bodies.Withdraw(100001))
        self.assertEqual((response.status, _balance(response)), (Status.INSUFFICIENT_FUNDS, 100000))
        response = self.peer.ask(bodies.Transfer((self.user_id + 1) % 1024, 100001))
        self.assertEqual((response.status, _balance(response)), (Status.INSUFFICIENT_FUNDS, 100000))

    def test_self_transfer_refused(self):
        response = self.peer.ask(bodies.Transfer(self.user_id, 1))
        self.assertEqual((response.status, response.body), (Status.SELF_TRANSFER, b""))
        self.assertEqual(self.harness.counters.counts["self_transfer"], 1)

    def test_transfer_to_unknown_user(self):
        response = self.peer.ask(bodies.Transfer(5000, 1))
        self.assertEqual(response.status, Status.NOT_FOUND)

    def test_deposit_cannot_overflow(self):
        response = self.peer.ask(bodies.Deposit(MAX_BALANCE))
        self.assertEqual(response.status, Status.LIMIT_EXCEEDED)
        response = self.peer.ask(bodies.Deposit(2**63 - 1))
        self.assertEqual(response.status, Status.LIMIT_EXCEEDED)
        self.assertEqual(_balance(self.peer.ask(bodies.Balance())), 100000)

    def test_retried_transfer_debits_once(self):
        target = (self.user_id + 1) % 1024
        first = self.peer.ask(bodies.Transfer(target, 300), req_id=7)
        retry = self.peer.ask(bodies.Transfer(target, 300), req_id=7)
        self.assertEqual((first.status, _balance(first)), (Status.OK, 99700))
        self.assertEqual(retry, first)
        self.assertEqual(_balance(self.peer.ask(bodies.Balance())), 99700)
        self.assertEqual(self.successResultOf(self.harness.store.ledger.balance(str(target))),
                         100300)
        another = self.peer.ask(bodies.Transfer(target, 300), req_id=8)
        self.assertEqual(_balance(another), 99400)

    def test_retry_after_a_lost_store_reply_debits_once(self):
        ledger = self.harness.store.ledger
        target = (self.user_id + 1) % 1024
        real_transfer = ledger.transfer

        def applied_but_reply_lost(*args):
            real_transfer(*args)
            return defer.fail(StoreUnavailable("reply lost"))

        self.patch(ledger, "transfer", applied_but_reply_lost)
        first = self.peer.ask(bodies.Transfer(target, 250), req_id=21)
        self.assertEqual(first.status, Status.SERVER_BUSY)
        ledger.transfer = real_transfer
        retry = self.peer.ask(bodies.Transfer(target, 250), req_id=21)
        self.assertEqual((retry.status, _balance(retry)), (Status.OK, 99750))
        self.assertEqual(self.successResultOf(ledger.balance(str(target))), 100250)

    def test_retried_refusal_replays_the_refusal(self):
        first = self.peer.ask(bodies.Withdraw(200000), req_id=9)
        self.peer.ask(bodies.Deposit(200000), req_id=10)
        retry = self.peer.ask(bodies.Withdraw(200000), req_id=9)
        self.assertEqual(retry, first)

    def test_same_req_id_on_another_login_session_is_a_new_operation(self):
        other = self.harness.connect()
        other.login("alice")
        self.peer.ask(bodies.Deposit(10), req_id=3)
        self.assertEqual(_balance(other.ask(bodies.Deposit(10), req_id=3)), 100020)

    def test_outcomes_are_kept_for_one_session_ttl(self):
        """A login session's retry outcomes are freed one session TTL later."""
        ledger = self.harness.store.ledger
        for req_id in range(1, 51):
            self.peer.ask(bodies.Deposit(1), req_id=req_id)
        for _ in range(4):
            self.harness.clock.advance(74)
            self.peer.ask(bodies.Heartbeat())
        self.assertEqual(_balance(self.peer.ask(bodies.Deposit(1), req_id=50)), 100050)
        self.peer.protocol.connectionLost(None)
        self.harness.clock.advance(4)
        other = self.harness.logged_in("bob")
        other.ask(bodies.Deposit(1), req_id=1)
        self.assertEqual(len(ledger._outcomes), 1)

    def test_history_newest_first_and_paged(self):
        for amount in (1, 2, 3):
            self.peer.ask(bodies.Deposit(amount))
        target = (self.user_id + 1) % 1024
        self.peer.ask(bodies.Transfer(target, 6))
        entries = bodies.decode_history(self.peer.ask(bodies.TxnHistory(2, 0)).body)
        self.assertEqual([(e.kind, e.counterparty, e.amount, e.balance_after) for e in entries],
                         [("transfer_out", target, -6, 100000), ("deposit", None, 3, 100006)])
        rest = bodies.decode_history(
            self.peer.ask(bodies.TxnHistory(10, entries[-1].txn_id)).body)
        self.assertEqual([e.kind for e in rest], ["deposit", "deposit", "open"])
        self.assertEqual(rest[-1].balance_after, 100000)
        default = bodies.decode_history(self.peer.ask(bodies.TxnHistory()).body)
        self.assertEqual(len(default), 5)


class RoomTests(unittest.TestCase):
    def setUp(self):
        self.harness = Harness()
        self.alice = self.harness.logged_in("alice")
        self.bob = self.harness.logged_in("bob")
        for peer in (self.alice, self.bob):
            self.assertEqual(peer.ask(bodies.JoinRoom(1)).status, Status.OK)

    def pushes(self, peer):
        return [bodies.decode_chat_broadcast(f.body) for f in peer.received()
                if f.opcode == Opcode.CHAT_BROADCAST and not f.is_response]

    def test_silent_member_receives_pushes_at_once(self):
        self.alice.ask(bodies.ChatSend(1, b"hello bob"))
        [push] = self.pushes(self.bob)
        self.assertEqual(push, bodies.ChatBroadcast(1, self.alice.protocol.state.user_id,
                                                    b"hello bob"))

    def test_push_frame_is_a_spec_push(self):
        self.alice.send(bodies.ChatSend(1, b"x"))
        [frame] = self.bob.received()
        self.assertEqual((frame.flags, frame.req_id, frame.opcode), (0, 0, Opcode.CHAT_BROADCAST))

    def test_sender_and_all_its_connections_receive(self):
        alice_again = self.harness.logged_in("alice")
        self.alice.ask(bodies.ChatSend(1, b"hi"))
        self.assertEqual(len(self.pushes(alice_again)), 1)
        self.alice.send(bodies.ChatSend(1, b"hi again"))
        self.assertEqual(len(self.pushes(self.alice)), 1)

    def test_one_encoding_written_to_every_transport(self):
        self.alice.send(bodies.ChatSend(1, b"same bytes"))
        self.harness.end_turn()
        alice_bytes = self.alice.transport.value()
        bob_bytes = self.bob.transport.value()
        self.assertTrue(bob_bytes)
        self.assertIn(bob_bytes, alice_bytes)

    def test_order_per_sender_is_preserved(self):
        carol = self.harness.logged_in("carol")
        carol.ask(bodies.JoinRoom(1))
        for n in range(20):
            self.alice.send(bodies.ChatSend(1, b"a%d" % n))
            carol.send(bodies.ChatSend(1, b"c%d" % n))
        pushes = self.pushes(self.bob)
        for sender, prefix in ((self.alice, b"a"), (carol, b"c")):
            sent = [p.message for p in pushes if p.from_user_id == sender.protocol.state.user_id]
            self.assertEqual(sent, [prefix + b"%d" % n for n in range(20)])

    def test_pushes_of_one_turn_reach_a_member_in_one_write(self):
        carol = self.harness.logged_in("carol", WriteCountingTransport())
        carol.ask(bodies.JoinRoom(1))
        carol.transport.writes.clear()
        for n in range(3):
            self.alice.send(bodies.ChatSend(1, b"m%d" % n))
        self.assertEqual(carol.transport.writes, [])
        self.harness.end_turn()
        self.assertEqual(len(carol.transport.writes), 1)
        self.assertEqual([p.message for p in self.pushes(carol)], [b"m0", b"m1", b"m2"])

    def test_pushes_are_flushed_before_the_reactor_polls_again(self):
        clock = self.harness.clock
        self.alice.send(bodies.ChatSend(1, b"now"))
        self.assertEqual(self.bob.transport.value(), b"")
        due = [call for call in clock.getDelayedCalls() if call.getTime() <= clock.seconds()]
        self.assertEqual(len(due), 1)
        clock.advance(0)
        self.assertEqual(len(self.pushes(self.bob)), 1)

    def test_reply_is_written_behind_the_pushes_queued_before_it(self):
        self.alice.send(bodies.ChatSend(1, b"first"))
        self.bob.send(bodies.Balance())
        self.alice.send(bodies.ChatSend(1, b"second"))
        push = (Opcode.CHAT_BROADCAST, False)
        chat_ok = (Opcode.CHAT_SEND, True)
        balance = (Opcode.BALANCE, True)

        def kinds(peer):
            return [(frame.opcode, frame.is_response) for frame in peer.received()]

        self.assertEqual(kinds(self.alice), [push, chat_ok, push, chat_ok])
        self.assertEqual(kinds(self.bob), [push, balance, push])

    def test_order_across_rooms_is_preserved(self):
        carol = self.harness.logged_in("carol")
        for peer in (carol, self.bob):
            peer.ask(bodies.JoinRoom(2))
        self.alice.send(bodies.ChatSend(1, b"one"))
        carol.send(bodies.ChatSend(2, b"two"))
        self.alice.send(bodies.ChatSend(1, b"three"))
        self.assertEqual([p.message for p in self.pushes(self.bob)], [b"one", b"two", b"three"])

    def test_push_queued_before_leaving_is_still_written(self):
        bob_again = self.harness.logged_in("bob")
        self.alice.send(bodies.ChatSend(1, b"before"))
        self.bob.send(bodies.LeaveRoom(1))
        self.alice.send(bodies.ChatSend(1, b"after"))
        self.assertEqual([p.message for p in self.pushes(bob_again)], [b"before"])

    def test_non_members_receive_nothing(self):
        outsider = self.harness.logged_in("outsider")
        self.alice.ask(bodies.ChatSend(1, b"members only"))
        self.assertEqual(self.pushes(outsider), [])

    def test_chat_to_a_room_not_joined_is_unauthorized_and_delivered_to_nobody(self):
        outsider = self.harness.logged_in("outsider")
        self.assertEqual(outsider.ask(bodies.ChatSend(1, b"let me in")).status,
                         Status.UNAUTHORIZED)
        self.assertEqual(self.harness.counters.counts["chat_not_member"], 1)
        self.assertEqual(self.pushes(self.bob), [])
        self.assertEqual(self.pushes(self.alice), [])
        self.assertEqual(outsider.ask(bodies.Balance()).status, Status.OK)

    def test_chat_after_leaving_is_unauthorized(self):
        self.bob.ask(bodies.LeaveRoom(1))
        self.assertEqual(self.bob.ask(bodies.ChatSend(1, b"still here?")).status,
                         Status.UNAUTHORIZED)
        self.assertEqual(self.pushes(self.alice), [])

    def test_leave_stops_pushes(self):
        self.assertEqual(self.bob.ask(bodies.LeaveRoom(1)).status, Status.OK)
        self.alice.ask(bodies.ChatSend(1, b"gone"))
        self.assertEqual(self.pushes(self.bob), [])
        self.assertEqual(self.bob.ask(bodies.LeaveRoom(1)).status, Status.NOT_FOUND)

    def test_last_connection_closing_leaves_rooms(self):
        self.bob.protocol.connectionLost(None)
        self.assertEqual(self.harness.rooms.members(1),
                         frozenset({self.alice.protocol.state.user_id}))

    def test_logout_detaches_the_connection(self):
        self.bob.ask(bodies.Logout())
        self.alice.ask(bodies.ChatSend(1, b"after logout"))
        self.assertEqual(self.pushes(self.bob), [])

    def test_longest_chat_message_push_fits_a_frame(self):
        message = b"m" * bodies.MAX_CHAT_MESSAGE
        self.assertEqual(self.alice.ask(bodies.ChatSend(1, message)).status, Status.OK)
        [push] = self.pushes(self.bob)
        self.assertEqual(len(push.message), bodies.MAX_CHAT_MESSAGE)


class TimeoutTests(unittest.TestCase):
    def test_idle_connection_is_closed(self):
        harness = Harness(idle_timeout=5.0, login_timeout=100.0)
        peer = harness.logged_in("alice")
        harness.clock.advance(4)
        peer.ask(bodies.Heartbeat())
        harness.clock.advance(4)
        self.assertFalse(peer.closed)
        harness.clock.advance(1.5)
        self.assertTrue(peer.closed)
        self.assertEqual(harness.counters.counts["idle_timeout"], 1)

    def assert_login_deadline_closes_after_8s(self, harness, peer):
        """Heartbeats keep the idle timeout (5 s) away; the 8 s login deadline still closes."""
        for _ in range(2):
            harness.clock.advance(3)
            peer.ask(bodies.Heartbeat())
        self.assertFalse(peer.closed)
        harness.clock.advance(3)
        self.assertTrue(peer.closed)
        self.assertEqual(harness.counters.counts["login_timeout"], 1)

    def test_connection_that_never_logs_in_is_closed(self):
        harness = Harness(idle_timeout=5.0, login_timeout=8.0)
        peer = harness.connect()
        self.assert_login_deadline_closes_after_8s(harness, peer)

    def test_silent_connection_that_never_logs_in_is_closed(self):
        harness = Harness(idle_timeout=5.0, login_timeout=8.0)
        peer = harness.connect()
        harness.clock.advance(5)
        self.assertTrue(peer.closed)

    def test_logout_restarts_the_login_deadline(self):
        harness = Harness(idle_timeout=5.0, login_timeout=8.0)
        peer = harness.logged_in("alice")
        for _ in range(4):
            harness.clock.advance(3)
            peer.ask(bodies.Heartbeat())
        self.assertEqual(peer.ask(bodies.Logout()).status, Status.OK)
        self.assert_login_deadline_closes_after_8s(harness, peer)

    def test_expired_session_restarts_the_login_deadline(self):
        harness = Harness(session_ttl=10.0, idle_timeout=5.0, login_timeout=8.0)
        peer = harness.logged_in("alice")
        for _ in range(4):
            harness.clock.advance(3)
            self.assertEqual(peer.ask(bodies.Heartbeat()).status, Status.OK)
        # 12 s, past the first login deadline; now the session ends in the store.
        harness.store.sessions.delete(peer.protocol.state.session_id)
        harness.clock.advance(3)
        self.assertEqual(peer.ask(bodies.Balance()).status, Status.UNAUTHORIZED)
        harness.clock.advance(4)
        peer.ask(bodies.Heartbeat())
        self.assertFalse(peer.closed)
        harness.clock.advance(4)
        self.assertTrue(peer.closed)
        self.assertEqual(harness.counters.counts["login_timeout"], 1)

    def test_login_cancels_the_login_deadline(self):
        harness = Harness(idle_timeout=5.0, login_timeout=8.0)
        peer = harness.logged_in("alice")
        for _ in range(4):
            harness.clock.advance(3)
            peer.ask(bodies.Heartbeat())
        self.assertFalse(peer.closed)

    def test_timers_stop_when_the_connection_is_lost(self):
        harness = Harness()
        peer = harness.connect()
        peer.protocol.connectionLost(None)
        self.assertEqual(harness.clock.getDelayedCalls(), [])


class SlowReaderTests(unittest.TestCase):
    def setUp(self):
        self.harness = Harness(max_output_buffer=10_000)
        self.talker = self.harness.logged_in("talker")
        self.reader = self.harness.logged_in("reader")
        for peer in (self.talker, self.reader):
            peer.ask(bodies.JoinRoom(0))

    def test_reader_that_stops_reading_is_disconnected(self):
        self.reader.protocol.pauseProducing()
        self.assertEqual(self.reader.transport.producerState, "paused")
        for _ in range(20):
            self.talker.send(bodies.ChatSend(0, b"x" * 1000))
        self.harness.end_turn()
        self.assertTrue(self.reader.transport.disconnecting)
        self.assertEqual(self.harness.counters.counts["slow_reader_disconnect"], 1)
        self.assertFalse(self.talker.closed)

    def test_reader_that_catches_up_stays(self):
        for _ in range(5):
            self.reader.protocol.pauseProducing()
            for _ in range(5):
                self.talker.send(bodies.ChatSend(0, b"x" * 1000))
            self.harness.end_turn()
            self.reader.protocol.resumeProducing()
            self.assertEqual(self.reader.transport.producerState, "producing")
        self.assertFalse(self.reader.closed)
        self.assertEqual(len(self.reader.received()), 25)

    def test_protocol_is_registered_as_a_streaming_producer(self):
        self.assertIs(self.reader.transport.producer, self.reader.protocol)
        self.assertTrue(self.reader.transport.streaming)


class OutputBudgetTests(unittest.TestCase):
    """
    The bound on the output queued to all connections together: readers
    that each stay under --max-output-buffer are dropped, most queued
    first, once their sum passes --max-total-output.
    """

    def setUp(self):
        self.harness = Harness(max_output_buffer=10**9, max_total_output=4 * HIGH_WATER)
        self.talker = self.harness.logged_in("talker")
        self.talker.ask(bodies.JoinRoom(0))
        self.readers = []
        for n in range(6):
            reader = self.harness.logged_in(f"reader{n}")
            reader.ask(bodies.JoinRoom(0))
            self.readers.append(reader)

    def chat(self, count, size=1000):
        for _ in range(count):
            self.talker.send(bodies.ChatSend(0, b"x" * size))
        self.harness.end_turn()

    def test_the_sum_is_bounded_by_dropping_the_readers_most_behind(self):
        budget = self.harness.factory.output_budget
        # Readers stop reading one after another: the first to stop has the most queued.
        for reader in self.readers:
            reader.protocol.pauseProducing()
            self.chat(20)
        dropped = [reader for reader in self.readers if reader.transport.disconnecting]
        self.assertTrue(dropped)
        self.assertEqual(dropped, self.readers[:len(dropped)])
        self.assertLessEqual(budget.total, budget.limit)
        self.assertEqual(self.harness.counters.counts["output_budget_disconnect"], len(dropped))
        self.assertEqual(self.harness.counters.counts["slow_reader_disconnect"], 0)
        self.assertFalse(self.talker.closed)
        for reader in self.readers[len(dropped):]:
            self.assertFalse(reader.closed)

    def test_readers_that_drain_give_their_share_back(self):
        budget = self.harness.factory.output_budget
        for _ in range(3):
            for reader in self.readers[:3]:
                reader.protocol.pauseProducing()
            self.chat(10)
            self.assertGreater(budget.total, 3 * HIGH_WATER)
            for reader in self.readers[:3]:
                reader.protocol.resumeProducing()
            self.assertEqual(budget.total, 0)
        self.assertFalse(any(reader.closed for reader in self.readers))
        self.assertEqual(self.harness.counters.counts["output_budget_disconnect"], 0)

    def test_a_closed_connection_frees_its_queued_output_at_once(self):
        """Not at the next cyclic garbage collection, which may be long after."""
        gc.disable()
        self.addCleanup(gc.enable)
        reader = self.readers.pop()
        reader.protocol.pauseProducing()
        self.chat(5)
        transport = weakref.ref(reader.transport)
        protocol = reader.protocol
        del reader
        protocol.connectionLost(None)
        self.assertIsNone(transport())

    def test_a_closed_connection_no_longer_counts(self):
        budget = self.harness.factory.output_budget
        reader = self.readers[0]
        reader.protocol.pauseProducing()
        self.chat(5)
        self.assertGreater(budget.total, 0)
        reader.protocol.connectionLost(None)
        self.assertEqual(budget.total, 0)


class StoreFailureTests(unittest.TestCase):
    """Store and domain failures map to statuses through the one error table."""

    def test_error_table(self):
        cases = [
            (StoreUnavailable("down"), Status.SERVER_BUSY, "store_unavailable"),
            (DirectoryFull("full"), Status.SERVER_BUSY, "directory_full"),
            (defer.TimeoutError(), Status.TIMEOUT, "timeout"),
            (UnknownAccount("x"), Status.NOT_FOUND, "unknown_account"),
            (BalanceOverflow("x"), Status.LIMIT_EXCEEDED, "balance_overflow"),
            (ZeroDivisionError(), Status.INTERNAL, "internal_error"),
        ]
        for error, status, counter in cases:
            with self.subTest(error=error):
                self.assertEqual(error_status(error), (status, counter, b""))

    def test_store_outage_answers_server_busy_and_keeps_the_connection(self):
        harness = Harness()
        peer = harness.logged_in("alice")
        self.patch(harness.store.ledger, "deposit",
                   lambda *args: defer.fail(StoreUnavailable("Redis did not answer")))
        response = peer.ask(bodies.Deposit(5))
        self.assertEqual((response.status, response.body), (Status.SERVER_BUSY, b""))
        self.assertFalse(peer.closed)
        self.assertEqual(harness.counters.counts["store_unavailable"], 1)

    def test_unexpected_error_is_internal_and_logged(self):
        harness = Harness()
        peer = harness.logged_in("alice")
        self.patch(harness.store.ledger, "balance", lambda *args: defer.fail(ZeroDivisionError()))
        self.assertEqual(peer.ask(bodies.Balance()).status, Status.INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_reply_that_cannot_be_encoded_is_answered_internal(self):
        harness = Harness()
        peer = harness.logged_in("alice")
        self.patch(harness.store.ledger, "balance", lambda *args: defer.succeed(2**64))
        response = peer.ask(bodies.Balance())
        self.assertEqual((response.status, response.body), (Status.INTERNAL, b""))
        self.assertEqual(harness.counters.counts["internal_error"], 1)
        self.assertEqual(len(self.flushLoggedErrors()), 1)
        self.assertEqual(peer.ask(bodies.Heartbeat()).status, Status.OK)

    def test_full_compat_directory_refuses_login_with_server_busy(self):
        harness = Harness(compat=True)
        for n in range(1024):
            harness.store.directory.user_id_for(f"user{n}", harness.config.id_space)
        peer = harness.connect()
        nonce = bodies.decode_hello_reply(peer.ask(bodies.Hello()).body).nonce
        response = peer.ask(bodies.Login("late", login_token("late", nonce)))
        self.assertEqual(response.status, Status.SERVER_BUSY)


    def test_failed_provisioning_refuses_every_waiting_login(self):
        harness = Harness(compat=True)
        provisioning = defer.Deferred()
        self.patch(harness.store.ledger, "open_account", lambda *args: provisioning)
        peers = [harness.connect() for _ in range(3)]
        req_ids = []
        for n, peer in enumerate(peers):
            nonce = bodies.decode_hello_reply(peer.ask(bodies.Hello()).body).nonce
            req_ids.append(peer.send(bodies.Login(f"u{n}", login_token(f"u{n}", nonce))))
        provisioning.errback(StoreUnavailable("down"))
        statuses = [[f.status for f in peer.received() if f.req_id == req_id]
                    for peer, req_id in zip(peers, req_ids)]
        self.assertEqual(statuses, [[Status.SERVER_BUSY]] * 3)
        self.assertEqual(harness.counters.counts["store_unavailable"], 3)

class StuckPeerTests(unittest.TestCase):
    def test_closing_connection_that_does_not_flush_is_aborted(self):
        harness = Harness(idle_timeout=5.0)
        peer = harness.logged_in("alice")
        harness.clock.advance(5)
        self.assertTrue(peer.transport.disconnecting)
        self.assertFalse(peer.transport.disconnected)
        harness.clock.advance(10)
        self.assertTrue(peer.transport.disconnected)

    def test_a_timeout_during_a_close_adds_no_second_abort(self):
        harness = Harness(idle_timeout=5.0)
        peer = harness.logged_in("alice")
        peer.send_raw(b"\x00" * HEADER_LEN)
        self.assertTrue(peer.transport.disconnecting)
        harness.clock.advance(5)
        aborts = [call for call in harness.clock.getDelayedCalls()
                  if call.func == peer.transport.abortConnection]
        self.assertEqual(len(aborts), 1)

    def test_nothing_is_written_to_a_closing_connection(self):
        harness = Harness(idle_timeout=5.0)
        peer = harness.logged_in("alice")
        talker = harness.logged_in("talker")
        for connection in (peer, talker):
            connection.ask(bodies.JoinRoom(0))
        harness.clock.advance(4)
        talker.ask(bodies.Heartbeat())
        harness.clock.advance(1)
        self.assertTrue(peer.transport.disconnecting)
        talker.ask(bodies.ChatSend(0, b"too late"))
        self.assertEqual(peer.received(), [])
