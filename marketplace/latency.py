"""
Latency recording for the load tools: microsecond HDR histograms of one
shape (tradechat-bench, laptop-client, market-bench), so that histograms of
several processes or apis add up exactly, and a counter that puts
latencies into them in bulk.

tradechat-bench and laptop-client record tens of thousands of latencies a
second on the cores they share with the servers they measure, and an
C{HdrHistogram.record_value} costs several times a dict update.
L{LatencyCounts} therefore only counts each value; the counts go into
histograms when figures are wanted, one C{record_value(value, count)} per
distinct value.  market-bench records a few thousand calls a second and
records each straight into its api's histogram.
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
"""Latencies are clamped to 1 us .. 1 minute, the histograms' range."""
SIGNIFICANT_DIGITS = 3


def new_histogram() -> HdrHistogram:
    """An empty microsecond histogram of the tools' common shape."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


class LatencyCounts:
    """Microsecond latencies counted per value until L{fill} moves them into histograms."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    def record(self, microseconds: int) -> int:
        """Count one latency (clamped to the histograms' range); return the value counted."""
        value = LOWEST_US if microseconds < LOWEST_US else min(microseconds, HIGHEST_US)
        counts = self._counts
        counts[value] = counts.get(value, 0) + 1
        return value

    def __bool__(self) -> bool:
        return bool(self._counts)

    def fill(self, *histograms: HdrHistogram) -> dict[int, int]:
        """
        Record the latencies counted so far in each of C{histograms} and
        start counting afresh.

        @return: the counts moved (value -> count).
        """
        counts, self._counts = self._counts, {}
        for value, count in counts.items():
            for histogram in histograms:
                histogram.record_value(value, count)
        return counts
