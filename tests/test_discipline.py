"""
Tests for L{protocols.discipline}: the client timers, the reading switch,
the output bound and the close, over a C{StringTransport} and a clock.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from marketplace.metrics import Counters
from protocols.discipline import ClientTimer, Discipline


class ClientTimerTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.fired = []
        self.timer = ClientTimer(self.clock, 10.0, lambda: self.fired.append(self.clock.seconds()))

    def test_fires_after_its_period(self):
        self.timer.start()
        self.clock.advance(10)
        self.assertEqual(self.fired, [10])
        self.assertFalse(self.timer.armed)

    def test_start_restarts_the_period(self):
        self.timer.start()
        self.clock.advance(9)
        self.timer.start()
        self.clock.advance(9)
        self.assertEqual(self.fired, [])
        self.clock.advance(1)
        self.assertEqual(self.fired, [19])

    def test_suspended_time_does_not_count(self):
        self.timer.start()
        self.clock.advance(4)
        self.timer.suspend()
        self.clock.advance(1000)
        self.assertEqual(self.fired, [])
        self.timer.resume()
        self.clock.advance(5.5)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.5)
        self.assertEqual(self.fired, [1010])

    def test_suspend_and_resume_keep_the_reactor_call(self):
        """
        An idle timer is suspended and resumed once per request: that moves
        its one call out by the pause, with no call cancelled or made.
        """
        self.timer.start()
        [call] = self.clock.getDelayedCalls()
        for _ in range(3):
            self.clock.advance(1)
            self.timer.suspend()
            self.clock.advance(2)
            self.timer.resume()
        self.assertEqual(self.clock.getDelayedCalls(), [call])
        self.assertTrue(call.active())
        self.clock.advance(6.5)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.5)
        self.assertEqual(self.fired, [16])

    def test_started_while_suspended_waits_for_resume(self):
        self.timer.suspend()
        self.timer.start()
        self.assertTrue(self.timer.armed)
        self.clock.advance(100)
        self.timer.resume()
        self.clock.advance(10)
        self.assertEqual(self.fired, [110])

    def test_stop(self):
        self.timer.start()
        self.timer.suspend()
        self.timer.stop()
        self.timer.resume()
        self.clock.advance(100)
        self.assertEqual(self.fired, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_without_a_period_never_fires(self):
        timer = ClientTimer(self.clock, None, self.fail)
        timer.start()
        self.assertFalse(timer.armed)


class DisciplineTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.counters = Counters()
        self.transport = StringTransport()
        self.discipline = Discipline(self.transport, self.clock, self.counters,
                                     max_output_buffer=100)
        self.fired = []
        self.timer = self.discipline.timer(10.0, lambda: self.fired.append(True))
        self.timer.start()

    def test_reading_stops_until_every_reason_clears(self):
        self.discipline.stop_reading("backlog")
        self.discipline.output_paused()
        self.assertEqual(self.transport.producerState, "paused")
        self.discipline.stop_reading("backlog", False)
        self.assertEqual(self.transport.producerState, "paused")
        self.discipline.output_resumed()
        self.assertEqual(self.transport.producerState, "producing")

    def test_timers_wait_while_reading_is_stopped(self):
        self.discipline.stop_reading("backlog")
        self.clock.advance(100)
        self.assertEqual(self.fired, [])
        self.discipline.stop_reading("backlog", False)
        self.clock.advance(10)
        self.assertEqual(self.fired, [True])

    def test_timer_made_while_stopped_starts_suspended(self):
        self.discipline.stop_reading("backlog")
        late = []
        timer = self.discipline.timer(1.0, lambda: late.append(True))
        timer.start()
        self.clock.advance(100)
        self.assertEqual(late, [])

    def test_end_of_input_once(self):
        self.assertTrue(self.discipline.end_input())
        self.assertFalse(self.discipline.end_input())
        self.assertFalse(self.timer.armed)

    def test_shutdown_stops_reading_and_ends_the_input_once(self):
        self.assertTrue(self.discipline.shutdown())
        self.assertEqual(self.transport.producerState, "paused")
        self.assertTrue(self.discipline.input_ended)
        self.assertFalse(self.discipline.shutdown())
        self.assertFalse(self.timer.armed)

    def test_shutdown_after_the_client_half_closed_does_nothing_more(self):
        self.discipline.end_input()
        self.assertFalse(self.discipline.shutdown())
        self.assertEqual(self.transport.producerState, "producing")

    def test_reading_never_resumes_after_end_of_input(self):
        """The transport stopped reading at the end; resuming would read it again."""
        self.discipline.end_input()
        resumed = []
        self.transport.resumeProducing = lambda: resumed.append(True)
        self.discipline.output_paused()
        self.discipline.output_resumed()
        self.assertEqual(resumed, [])

    def test_settle_says_when_to_close(self):
        self.assertFalse(self.discipline.settle(owed=False))
        self.discipline.end_input()
        self.assertFalse(self.discipline.settle(owed=True))
        self.assertTrue(self.discipline.settle(owed=False))

    def test_idle_timer_waits_while_replies_are_owed(self):
        """A slow answer is the server's slowness, not an idle client."""
        idled = []
        idle = self.discipline.timer(10.0, lambda: idled.append(True), idle=True)
        idle.start()
        self.clock.advance(4)
        self.discipline.settle(owed=True)
        self.clock.advance(100)
        self.assertEqual((idled, self.fired), ([], [True]))  # the other timer ran on
        self.discipline.settle(owed=False)
        self.clock.advance(5.9)
        self.assertEqual(idled, [])
        self.clock.advance(0.1)
        self.assertEqual(idled, [True])

    def test_idle_timer_made_while_owing_waits(self):
        self.discipline.settle(owed=True)
        idled = []
        self.discipline.timer(1.0, lambda: idled.append(True), idle=True).start()
        self.clock.advance(100)
        self.assertEqual(idled, [])

    def test_idle_timer_waits_for_both_reasons_to_clear(self):
        idled = []
        self.discipline.timer(10.0, lambda: idled.append(True), idle=True).start()
        self.discipline.settle(owed=True)
        self.discipline.stop_reading("backlog")
        self.discipline.settle(owed=False)
        self.clock.advance(100)
        self.assertEqual(idled, [])
        self.discipline.stop_reading("backlog", False)
        self.clock.advance(10)
        self.assertEqual(idled, [True])

    def test_close_unregisters_its_own_producer_only(self):
        self.discipline.register_producer(self)
        self.discipline.close()
        self.assertIsNone(self.transport.producer)
        self.assertTrue(self.transport.disconnecting)
        other = Discipline(StringTransport(), self.clock, self.counters)
        other.close()  # no producer: nothing to unregister, no error
        self.assertTrue(other.transport.disconnecting)

    def test_output_is_bounded_only_while_the_client_does_not_read(self):
        self.assertTrue(self.discipline.wrote(1000))
        self.discipline.output_paused()
        self.assertTrue(self.discipline.wrote(100))
        self.discipline.output_resumed()
        self.discipline.output_paused()
        self.assertTrue(self.discipline.wrote(60))
        self.assertFalse(self.discipline.wrote(41))
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.counters.counts["slow_reader_disconnect"], 1)

    def test_lost_lets_the_transport_go(self):
        self.discipline.lost()
        self.assertIsNone(self.discipline.transport)
        self.discipline.abort("limit")
        self.discipline.close()
        self.discipline.stop_reading("backlog")
        self.assertEqual(self.counters.counts["limit"], 0)

    def test_a_protocol_may_drop_a_slow_reader_its_own_way(self):
        dropped = []
        with capturedLogs() as events:
            self.discipline.drop_slow_reader(5000, lambda: dropped.append(True))
        self.assertEqual([event["size"] for event in events], [5000])
        self.assertEqual(dropped, [True])
        self.assertFalse(self.transport.disconnected)
        self.assertEqual(self.counters.counts["slow_reader_disconnect"], 1)

    def test_abort_counts_once(self):
        self.discipline.abort("limit")
        self.discipline.abort("limit")
        self.assertEqual(self.counters.counts["limit"], 1)
        self.assertFalse(self.timer.armed)
