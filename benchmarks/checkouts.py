"""
The checkouts a benchmark takes the code under test from: this one by
default, or others named with C{--sources} (a C{git worktree} of an earlier
commit, say), measured in turn (old, new, old, new) so that each pair ran
under the same neighbours' load.
"""

import os
import statistics
import subprocess


def label(source: str) -> str:
    """The checkout's short commit, with C{+} if its tracked files were changed since."""
    revision = subprocess.run(["git", "-C", source, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "-C", source, "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True).stdout.strip()
    return (revision or os.path.basename(os.path.abspath(source))) + ("+" if changed else "")


def labels(sources: list[str]) -> list[str]:
    """
    What names each of C{sources} in a benchmark's output: nothing when
    there is one, else its label, numbered when two checkouts are of one
    commit (an A/A run, which shows the host's drift).
    """
    if len(sources) == 1:
        return [""]
    found = [label(source) for source in sources]
    if len(set(found)) < len(found):
        found = [f"{name}#{n}" for n, name in enumerate(found, 1)]
    return found


def environment(source: str, *first: str) -> dict:
    """
    This process's environment for a process running C{source}'s code:
    C{source} at the head of C{PYTHONPATH}, behind any C{first} paths.
    """
    paths = [*first, os.path.abspath(source), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in paths if path))


def compared(rates, cpus, rate: str, per: str) -> str:
    """
    One run set against another, each list pairing the two's figures of one
    repetition (base, other): C{"1.07x the req/s, 0.93x the CPU a request
    (lower in 2 of 3)"}; the CPU part only where C{cpus} has pairs.
    """
    text = f"{statistics.median(o / b for b, o in rates):.2f}x the {rate}"
    if cpus:
        lower = sum(o < b for b, o in cpus)
        text += (f", {statistics.median(o / b for b, o in cpus):.2f}x the CPU {per} "
                 f"(lower in {lower} of {len(cpus)})")
    return text
