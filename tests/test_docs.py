"""
What the README and the docs promise a newcomer holds: the shared options
table says exactly which plugin takes which option, and every documented
``twistd`` command can run next to another from one directory.
"""

from __future__ import annotations

import glob
import io
import os
import re
import sys

from twisted.application.service import IServiceMaker
from twisted.trial import unittest

from marketplace import __version__

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(relative: str) -> str:
    with open(os.path.join(PROJECT, relative), encoding="utf-8") as f:
        return f.read()


def plugins() -> dict:
    """Every plugin of the dropin, by name."""
    from twisted.plugins import marketplace_plugins
    return {maker.tapname: maker for maker in vars(marketplace_plugins).values()
            if IServiceMaker.providedBy(maker)}


def shared_options_table() -> dict[str, set[str]]:
    """The README's shared options table: option -> the plugins it names."""
    section = read("README.md").split("## Shared options", 1)[1]
    table = {}
    for row in re.findall(r"(?m)^\| `(--[\w-]+)`.*\| ([\w, -]+) \|$", section):
        option, names = row
        table[option] = {name.strip() for name in names.split(",")}
    return table


def long_options(maker) -> set[str]:
    options = maker.options()
    return {"--" + name.rstrip("=") for name in options.longOpt}


class SharedOptionsTableTests(unittest.TestCase):
    def test_every_plugin_prints_the_projects_version(self):
        for name, maker in plugins().items():
            out = io.StringIO()
            self.patch(sys, "stdout", out)
            self.assertRaises(SystemExit, maker.options().parseOptions, ["--version"])
            self.assertIn(__version__, out.getvalue(), name)
            self.assertNotIn("Twisted", out.getvalue(), name)

    def test_the_table_says_which_plugin_takes_which_option(self):
        table = shared_options_table()
        self.assertEqual(set(table), {"--listen", "--max-connections",
                                      "--max-connections-per-address", "--store",
                                      "--store-timeout", "--metrics"})
        makers = plugins()
        for option, named in table.items():
            self.assertLessEqual(named, set(makers), option)
            taking = {name for name, maker in makers.items() if option in long_options(maker)}
            self.assertEqual(taking, named, option)


#: Where commands a reader copies are written.
DOCUMENTS = [os.path.join(PROJECT, "README.md"), *sorted(glob.glob(os.path.join(PROJECT, "docs", "*.md"))),
             *sorted(glob.glob(os.path.join(PROJECT, "tapfiles", "*.tac")))]

_FOREGROUND_TWISTD = re.compile(r"\btwistd(?:\s+-[-\w=]*)*\s+(?:-\w*n\w*|--nodaemon)\b[^\n`]*")


class DocumentedCommandsTests(unittest.TestCase):
    def test_every_foreground_twistd_leaves_no_pidfile(self):
        """
        Two documented ``twistd -n`` commands run from one directory: the
        second must not refuse because the first wrote ``twistd.pid``.
        """
        commands = []
        for document in DOCUMENTS:
            with open(document, encoding="utf-8") as f:
                text = f.read()
            for command in _FOREGROUND_TWISTD.findall(text):
                commands.append(command)
                self.assertIn("--pidfile=", command, f"{os.path.basename(document)}: {command}")
        self.assertGreater(len(commands), 10)

    def test_pidfile_is_ignored_by_git(self):
        self.assertIn("twistd.pid", read(".gitignore").split())
