# -*- test-case-name: tests.test_metrics -*-
"""
What a process counts, and how Prometheus reads it.

Every protocol and service counts into a L{Counters}: notable events (bad
frames, refusals, timeouts) with C{increment(name)}, and each answered
request with C{request(api, outcome, seconds)} (a count per API and outcome,
and a latency histogram per API).  Recording is plain integer arithmetic on
dictionaries, about a microsecond, so the chat server's hot path can afford
it; nothing is formatted until Prometheus scrapes.

At a scrape, L{CountersCollector} reads every L{Counters} exported with
L{export} (one process-wide registry, L{REGISTRY}) and turns each into
families named after its system::

    marketplace_<system>_events_total{service, event}
    marketplace_<system>_requests_total{service, api, outcome}
    marketplace_<system>_request_duration_seconds{service, api}   (histogram)
    marketplace_<system>_connections_total{service}
    marketplace_<system>_connections_open{service}

A L{Counters}' whole state is also one flat C{name -> int} dictionary
(L{Counters.flat}): a worker process sends it to its master, which adds the
workers' dictionaries up and exports the sum with L{export_flat}, so one
scrape of the master reads every worker.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left
from collections import Counter, defaultdict

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, \
    HistogramMetricFamily

#: Upper bounds (seconds) of the request latency histograms' buckets; a last
#: bucket (+Inf) takes the rest.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Event names a listener counts for every connection it accepts and loses:
#: exported as the C{connections_total} and C{connections_open} families.
CONNECTION_OPENED = "connection_opened"
CONNECTION_CLOSED = "connection_closed"

#: Separator of the parts of a flat name (never in an event name or API).
_SEP = "|"
_REQUESTS = "requests"
_LATENCY = "latency"
_LATENCY_SUM = "latency_us"


def _empty_histogram() -> list:
    """A count per bucket (the last one +Inf)."""
    return [0] * (len(LATENCY_BUCKETS) + 1)


def _empty_recording() -> list:
    """A count per bucket, then the sum of the seconds observed."""
    return _empty_histogram() + [0.0]


class Counters:
    """
    A system's counts in one process: events, and requests by API and
    outcome with their latency.  Label values come from the caller's own
    fixed tables (opcode and API names, status names), never from a peer,
    so the number of series stays bounded.
    """

    def __init__(self):
        self.counts = Counter()
        self._requests = Counter()
        self._latency = defaultdict(_empty_recording)

    def increment(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def request(self, api: str, outcome: str, seconds: float) -> None:
        """One request of C{api} answered with C{outcome} after C{seconds}."""
        self._requests[api, outcome] += 1
        recording = self._latency[api]
        recording[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        recording[-1] += seconds

    def snapshot(self) -> dict[str, int]:
        """The events counted so far (name -> count)."""
        return dict(self.counts)

    def flat(self) -> dict[str, int]:
        """
        Everything counted, as one flat C{name -> int} dictionary: events
        under their own names, requests and latencies under names
        L{unflatten} reads back.
        """
        state = dict(self.counts)
        for (api, outcome), count in self._requests.items():
            state[_SEP.join((_REQUESTS, api, outcome))] = count
        for api, recording in self._latency.items():
            *buckets, seconds = recording
            for index, count in enumerate(buckets):
                if count:
                    state[_SEP.join((_LATENCY, api, str(index)))] = count
            state[_SEP.join((_LATENCY_SUM, api))] = round(seconds * 1_000_000)
        return state


class _Parts:
    """A flat dictionary read back into events, requests and histograms."""

    def __init__(self):
        self.events: dict[str, int] = {}
        self.requests: dict[tuple[str, str], int] = {}
        self.latency: dict[str, list] = defaultdict(_empty_histogram)
        self.latency_us: dict[str, int] = {}


def unflatten(state: dict[str, int]) -> _Parts:
    """The parts of a L{Counters.flat} dictionary (or of a sum of them)."""
    parts = _Parts()
    for name, value in state.items():
        kind, *rest = name.split(_SEP)
        if not rest:
            parts.events[name] = value
        elif kind == _REQUESTS and len(rest) == 2:
            parts.requests[rest[0], rest[1]] = value
        elif kind == _LATENCY and len(rest) == 2 and rest[1].isdigit() \
                and int(rest[1]) <= len(LATENCY_BUCKETS):
            parts.latency[rest[0]][int(rest[1])] = value
        elif kind == _LATENCY_SUM and len(rest) == 1:
            parts.latency_us[rest[0]] = value
    return parts


class CountersCollector:
    """
    A Prometheus collector over exported flat sources, read at scrape time.

    Sources are held weakly: a service that is gone (a test's, say) drops
    out of the scrape instead of being kept alive by it.  Sources with the
    same system and service are added up.
    """

    def __init__(self):
        self._sources: list[tuple[str, str, weakref.ref]] = []

    def add(self, system: str, service: str, read) -> None:
        """Export C{read()} (a flat dictionary) as C{system}'s C{service}."""
        reference = weakref.WeakMethod(read) if hasattr(read, "__self__") else (lambda: read)
        self._sources.append((system, service, reference))

    def _read(self) -> dict[str, dict[str, Counter]]:
        live, totals = [], defaultdict(lambda: defaultdict(Counter))
        for system, service, reference in self._sources:
            read = reference()
            if read is None:
                continue
            live.append((system, service, reference))
            totals[system][service].update(read())
        self._sources = live
        return totals

    def describe(self):
        return []

    def collect(self):
        for system, services in sorted(self._read().items()):
            yield from _families(system, services)


def _families(system: str, services: dict[str, Counter]):
    prefix = f"marketplace_{system}"
    events = CounterMetricFamily(f"{prefix}_events", f"Notable {system} events by name.",
                                 labels=["service", "event"])
    requests = CounterMetricFamily(f"{prefix}_requests", f"{system} requests answered, "
                                   "by API and outcome.", labels=["service", "api", "outcome"])
    latency = HistogramMetricFamily(f"{prefix}_request_duration_seconds",
                                    f"Seconds from a {system} request to its answer.",
                                    labels=["service", "api"])
    connections = CounterMetricFamily(f"{prefix}_connections", "Connections accepted.",
                                      labels=["service"])
    open_now = GaugeMetricFamily(f"{prefix}_connections_open", "Connections open now.",
                                 labels=["service"])
    for service, state in sorted(services.items()):
        parts = unflatten(state)
        opened = parts.events.pop(CONNECTION_OPENED, None)
        closed = parts.events.pop(CONNECTION_CLOSED, 0)
        if opened is not None:
            connections.add_metric([service], opened)
            open_now.add_metric([service], opened - closed)
        for event, count in sorted(parts.events.items()):
            events.add_metric([service, event], count)
        for (api, outcome), count in sorted(parts.requests.items()):
            requests.add_metric([service, api, outcome], count)
        for api, buckets in sorted(parts.latency.items()):
            cumulative, total = [], 0
            for bound, count in zip((*map(repr, LATENCY_BUCKETS), "+Inf"), buckets):
                total += count
                cumulative.append((bound, total))
            latency.add_metric([service, api], cumulative,
                               parts.latency_us.get(api, 0) / 1_000_000)
    return [family for family in (events, requests, latency, connections, open_now)
            if family.samples]


#: The process's one registry: what C{--metrics} serves.  Besides the
#: systems' counters it holds C{prometheus_client}'s standard collectors of
#: the process (CPU, memory, open files), the interpreter and its garbage
#: collector.
REGISTRY = CollectorRegistry(auto_describe=False)
_COLLECTOR = CountersCollector()
REGISTRY.register(_COLLECTOR)
for _standard in (ProcessCollector, PlatformCollector, GCCollector):
    _standard(registry=REGISTRY)


def export(system: str, service: str, counters: Counters) -> Counters:
    """Make C{counters} part of every scrape, as C{system}'s C{service}; returns it."""
    _COLLECTOR.add(system, service, counters.flat)
    return counters


def export_flat(system: str, service: str, read) -> None:
    """
    Make C{read()}, a flat dictionary such as L{Counters.flat} returns (or
    a sum of them), part of every scrape.  A bound method is held weakly.
    """
    _COLLECTOR.add(system, service, read)
