"""
The CLI sessions in docs/market.md, replayed on a fresh marketplace: every
command typed there gives the output shown (session ids and times aside), so
a reader who types them on a fresh system sees the same.
"""

from __future__ import annotations

import os
import re

from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from marketplace.market.cli import buyer, seller
from marketplace.market.cli.shell import Shell
from tests.market.market_harness import REPO, client, start_market

_PROMPT = re.compile(r"^(seller|buyer)\*?> ?(.*)$")


def cli_sessions() -> dict[str, list[tuple[str, str]]]:
    """
    The doc's CLI transcripts, by program: (typed line, output until the
    next prompt) pairs, in order.
    """
    with open(os.path.join(REPO, "docs", "market.md"), encoding="utf-8") as f:
        section = f.read().split("## CLI sessions", 1)[1].split("\n## ", 1)[0]
    sessions = {}
    for block in re.findall(r"```\n\$ (market-\w+)\n(.*?)```", section, re.S):
        program, body = block
        steps = []
        for line in body.splitlines()[1:]:  # the banner comes first
            prompt = _PROMPT.match(line)
            if prompt:
                steps.append([prompt.group(2), []])
            elif steps:
                steps[-1][1].append(line)
        sessions[program] = [(typed, "\n".join(output)) for typed, output in steps]
    return sessions


def normalized(text: str) -> str:
    text = re.sub(r"session \S+", "session SESSION", text)
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "TIME UTC", text).rstrip()


class DocumentedSessionsTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def replay(self, title, commands, port, steps):
        shell = Shell(title, commands, client(self, port))
        transport = StringTransport()
        shell.makeConnection(transport)
        for typed, expected in steps:
            if typed == "quit":
                continue
            transport.clear()
            pending = shell.run_line(typed)
            if pending is not None:
                yield pending
            self.assertEqual(normalized(transport.value().decode()), normalized(expected),
                             f"{title}> {typed}")

    @defer.inlineCallbacks
    def test_the_seller_then_the_buyer_session_on_a_fresh_system(self):
        sessions = cli_sessions()
        self.assertEqual(set(sessions), {"market-seller", "market-buyer"})
        market = yield start_market(self)
        yield self.replay("seller", seller.COMMANDS, market.ports["seller-front"],
                          sessions["market-seller"])
        yield self.replay("buyer", buyer.COMMANDS, market.ports["buyer-front"],
                          sessions["market-buyer"])
