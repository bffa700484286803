"""
Counters of notable events: bad frames, refused requests, timeouts.

Every protocol counts what it rejects, so an operator can tell a noisy client
from a broken one; counters are plain integers, cheap enough for hot paths.
"""

from collections import Counter


class Counters:
    def __init__(self):
        self.counts = Counter()

    def increment(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)
