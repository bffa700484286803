"""The load tools' latency counting (marketplace.latency)."""

from twisted.trial import unittest

from marketplace.latency import HIGHEST_US, LOWEST_US, LatencyCounts, new_histogram


class LatencyCountsTests(unittest.TestCase):
    def test_fill_moves_the_counts_into_every_histogram_once(self):
        counts = LatencyCounts()
        for value in (100, 100, 250):
            counts.record(value)
        first, second = new_histogram(), new_histogram()
        self.assertEqual(counts.fill(first, second), {100: 2, 250: 1})
        for histogram in (first, second):
            self.assertEqual(histogram.get_total_count(), 3)
            self.assertEqual(histogram.get_count_at_value(100), 2)
        self.assertFalse(counts)
        self.assertEqual(counts.fill(first), {})
        self.assertEqual(first.get_total_count(), 3)

    def test_values_are_clamped_to_the_histograms_range(self):
        counts = LatencyCounts()
        self.assertEqual(counts.record(0), LOWEST_US)
        self.assertEqual(counts.record(-5), LOWEST_US)
        self.assertEqual(counts.record(10 ** 12), HIGHEST_US)
        histogram = new_histogram()
        counts.fill(histogram)
        self.assertEqual(histogram.get_total_count(), 3)
        self.assertTrue(histogram.values_are_equivalent(histogram.get_max_value(), HIGHEST_US))
