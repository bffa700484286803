"""
Every file the documentation names exists in the repository.

The rule, so that a reader can predict what is checked:

  - Documents: README.md and every ``docs/**/*.md``.
  - Markdown link targets (``[text](target)``) outside code, except URLs,
    are paths relative to the document, and must exist; a ``#fragment``
    must name a heading of the Markdown file it points into, the document
    itself for a bare ``#fragment`` (GitHub's anchors: lower case,
    punctuation dropped, spaces as hyphens).
  - In code (inline code spans and fenced blocks), a relative path is a
    path from the repository root, and must exist.  A relative path is a
    word with a slash that begins with one of the repository's top-level
    directories (``tapfiles/x.tac``, ``marketplace/<system>/``), or whose
    last part has a file extension (``wire/format.md``, ``memory/x.py``).
    Placeholders (``<system>``, ``...``, ``*``) stand for any name: at
    least one file must match.
  - Not checked: words without a slash (``main.csv``, ``branchA.csv``: files
    a reader creates), words that begin with ``./``, ``/``, ``~`` or ``$``
    (the reader's own files), endpoint strings and URLs (``tcp:...``,
    ``https://...``), and paths the repository ignores (``.gitignore``:
    build output, runtime data such as ``laptop-data/``).
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re

from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_PLACEHOLDER = re.compile(r"<[^<>/]*>|\.\.\.|…")


def ignored_patterns() -> list[str]:
    """The root .gitignore's patterns, without their trailing slashes."""
    with open(os.path.join(ROOT, ".gitignore"), encoding="utf-8") as lines:
        return [line.strip().rstrip("/") for line in lines
                if line.strip() and not line.startswith("#")]


def is_ignored(path: str, patterns: list[str]) -> bool:
    """
    Whether .gitignore covers C{path}: a pattern with a slash matches a
    leading part of the path, one without matches any of its components.
    """
    parts = path.strip("/").split("/")
    for pattern in patterns:
        if "/" in pattern:
            depth = pattern.count("/") + 1
            if fnmatch.fnmatch("/".join(parts[:depth]), pattern):
                return True
        elif any(fnmatch.fnmatch(part, pattern) for part in parts):
            return True
    return False


def top_level_directories(patterns: list[str]) -> list[str]:
    return sorted(name for name in os.listdir(ROOT)
                  if os.path.isdir(os.path.join(ROOT, name))
                  and name != ".git" and not is_ignored(name, patterns))


def documents() -> list[str]:
    found = [os.path.join(ROOT, "README.md")]
    found += glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
    return sorted(found)


def split_code(text: str) -> tuple[list[str], str]:
    """The document's code (fenced blocks, inline spans) and its prose."""
    code = [match.group(2) for match in _FENCE.finditer(text)]
    prose = _FENCE.sub("", text)
    code += [match.group(2) for match in _CODE_SPAN.finditer(prose)]
    return code, _CODE_SPAN.sub("", prose)


_PATH_WORD = re.compile(r"(?<![\w./~$:@<>*-])([\w.<>*-]+(?:/[\w.<>*-]*)+)")
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,4}$")


def code_paths(code: str, top_dirs: list[str]) -> list[str]:
    """The relative paths among the words of C{code} (see the module's rule)."""
    paths = []
    for match in _PATH_WORD.finditer(code):
        path = match.group(1).rstrip(".:")
        if path.startswith("./"):
            continue
        if path.split("/", 1)[0] in top_dirs or _EXTENSION.search(path):
            paths.append(path)
    return paths


def link_targets(prose: str) -> list[tuple[str, str]]:
    """C{(path, fragment)} of every link that is not a URL; the path is empty for an in-page anchor."""
    targets = []
    for match in _LINK.finditer(prose):
        target = match.group(1)
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
            continue
        path, _, fragment = target.partition("#")
        targets.append((path, fragment))
    return targets


def anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown file's headings, as GitHub makes them."""
    found = set()
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t]*#*$", _FENCE.sub("", markdown), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower())
        found.add(slug.replace(" ", "-"))
    return found


def exists(path: str) -> bool:
    """Whether C{path} (absolute) names a file or directory, placeholders matching any name."""
    if _PLACEHOLDER.search(path) or "*" in path:
        return bool(glob.glob(_PLACEHOLDER.sub("*", path)))
    return os.path.exists(path)


def missing_paths() -> list[str]:
    """Every path the documents name that does not exist, as C{"doc: path"}."""
    patterns = ignored_patterns()
    top_dirs = top_level_directories(patterns)
    missing = []
    for document in documents():
        with open(document, encoding="utf-8") as source:
            code, prose = split_code(source.read())
        named = os.path.relpath(document, ROOT)
        for block in code:
            for path in code_paths(block, top_dirs):
                if not is_ignored(path, patterns) and not exists(os.path.join(ROOT, path)):
                    missing.append(f"{named}: {path}")
        for path, fragment in link_targets(prose):
            resolved = os.path.normpath(os.path.join(os.path.dirname(document), path)) if path else document
            if not exists(resolved):
                missing.append(f"{named}: link {path}")
            elif fragment and resolved.endswith(".md"):
                with open(resolved, encoding="utf-8") as target:
                    if fragment not in anchors(target.read()):
                        missing.append(f"{named}: link {path}#{fragment}")
    return missing


class DocumentedPathsTests(unittest.TestCase):
    def test_every_named_path_exists(self):
        self.assertEqual(missing_paths(), [])

    def test_the_rule_finds_paths_in_code_and_links(self):
        """The extraction itself: what counts as a path, and what does not."""
        code, prose = split_code(
            "See [the branch](docs/branch.md#main) and [web](https://x.org/a.md).\n"
            "Run `twistd -ny tapfiles/x.tac` with `branchA.csv` or `./b/c.csv`.\n"
            "Read `store/memory/`, `wire/format.md`, `p50/p95/p99` and `tcp:h/x.py`.\n"
            "```\n$ benchmarks/run.py --out=benchmarks/y.csv, docs/<system>.md /etc/x.pem\n```\n")
        paths = [path for block in code for path in code_paths(block, ["benchmarks", "docs", "tapfiles"])]
        self.assertEqual(sorted(paths), [
            "benchmarks/run.py", "benchmarks/y.csv", "docs/<system>.md", "tapfiles/x.tac",
            "wire/format.md"])
        self.assertEqual(link_targets(prose), [("docs/branch.md", "main")])

    def test_anchors_are_githubs(self):
        self.assertEqual(
            anchors("# Top\n## Where ours differs, on `purpose`\n```\n# not a heading\n```\n"),
            {"top", "where-ours-differs-on-purpose"})

    def test_a_missing_path_is_reported(self):
        self.assertFalse(exists(os.path.join(ROOT, "tapfiles", "no-such.tac")))
        self.assertTrue(exists(os.path.join(ROOT, "docs", "<system>.md")))
        self.assertFalse(exists(os.path.join(ROOT, "docs", "<system>.txt")))

    def test_ignored_paths_are_not_repository_paths(self):
        patterns = ["laptop-data/", "twisted/plugins/dropin.cache", "*.egg-info/"]
        patterns = [pattern.rstrip("/") for pattern in patterns]
        self.assertTrue(is_ignored("laptop-data/replica-0", patterns))
        self.assertTrue(is_ignored("twisted/plugins/dropin.cache", patterns))
        self.assertFalse(is_ignored("twisted/plugins/marketplace_plugins.py", patterns))
