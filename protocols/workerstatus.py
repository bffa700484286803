# -*- test-case-name: tests.tradechat.test_workers -*-
"""
What a worker process tells its master, sans I/O: one JSON object per line
on a pipe the master made.

    {"kind": "ready"}                           accepting connections
    {"kind": "counters", "counters": {...}}     its counters so far (name -> int)

The master decodes every line as if the worker were hostile: a line longer
than L{MAX_LINE}, bad JSON, an unknown kind or a counter that is not a
short name with a non-negative integer is a L{StatusError} the master
counts and drops, and the decoder goes on with the next line.
"""

from __future__ import annotations

import json

import attrs

#: A report holds a worker's events, requests by opcode and outcome, and a
#: latency histogram per opcode and per store call: hundreds of entries, with
#: names such as ``store.requests|directory.user_id_for|StoreUnavailable``.
MAX_LINE = 512 * 1024
MAX_COUNTERS = 4096
MAX_COUNTER_NAME = 128
KINDS = ("ready", "counters")


class StatusError(ValueError):
    """A line that is not a well-formed status message."""


@attrs.frozen
class Status:
    kind: str
    counters: dict = attrs.field(factory=dict, eq=False)


def encode_status(kind: str, counters: dict | None = None) -> bytes:
    message = {"kind": kind}
    if counters is not None:
        message["counters"] = counters
    return json.dumps(message, separators=(",", ":")).encode("ascii") + b"\n"


class StatusDecoder:
    def __init__(self) -> None:
        self._buffer = b""
        self._discarding = False

    def receive(self, data: bytes) -> list:
        """
        The messages completed by C{data}: L{Status} values, and a
        L{StatusError} in place of each bad line.
        """
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        results = []
        for line in lines:
            if self._discarding:
                self._discarding = False  # the end of an overlong line
                continue
            if line:
                results.append(_decode_line(line))
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
            if not self._discarding:
                self._discarding = True
                results.append(StatusError(f"a status line longer than {MAX_LINE} bytes"))
        return results


def _decode_line(line: bytes):
    if len(line) > MAX_LINE:
        return StatusError(f"a status line longer than {MAX_LINE} bytes")
    try:
        message = json.loads(line)
    except ValueError as error:
        return StatusError(f"not JSON: {error}")
    if not isinstance(message, dict) or message.get("kind") not in KINDS:
        return StatusError("not a status message")
    counters = message.get("counters", {})
    if not isinstance(counters, dict) or len(counters) > MAX_COUNTERS:
        return StatusError("counters must be an object of at most "
                           f"{MAX_COUNTERS} entries")
    for name, value in counters.items():
        if (len(name) > MAX_COUNTER_NAME or type(value) is not int or value < 0):
            return StatusError(f"bad counter {name[:MAX_COUNTER_NAME]!r}")
    return Status(message["kind"], counters)
