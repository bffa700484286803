"""
The README's two set-up commands, ``./dev suite &`` and ``./dev test``, may be
started together on a fresh clone: only one of them builds the virtualenv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap

from twisted.trial import unittest

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: A stand-in for ``python3`` that builds a stand-in virtualenv: its
#: ``pip install -e`` logs when it starts and ends, and while it runs waits
#: (at most 3 s) for another install to start, so two installs at once show
#: as two starts before the first end.
FAKE_PYTHON = textwrap.dedent("""\
    #!/bin/sh
    here=$(dirname "$0")
    log="$FAKE_LOG"
    if [ "$1 $2" = "-m venv" ]; then
        mkdir -p "$3/bin"
        cp "$0" "$3/bin/python"
        printf '#!/bin/sh\\nexit 0\\n' > "$3/bin/twistd"
        chmod +x "$3/bin/twistd"
        exit 0
    fi
    case "$*" in *" -e "*)
        echo start >> "$log"
        for _ in $(seq 30); do
            [ "$(grep -c start "$log")" -gt 1 ] && break
            sleep 0.1
        done
        echo end >> "$log"
    esac
    exit 0
""")


class SetUpCommandsTests(unittest.TestCase):
    def test_two_commands_started_together_install_once(self):
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        shutil.copy(os.path.join(PROJECT, "dev"), root)
        shutil.copy(os.path.join(PROJECT, "setup.cfg"), root)
        python = os.path.join(root, "fake-python")
        with open(python, "w") as f:
            f.write(FAKE_PYTHON)
        os.chmod(python, 0o755)
        log = os.path.join(root, "installs.log")
        env = dict(os.environ, PYTHON=python, FAKE_LOG=log, VENV=".venv")
        runs = [subprocess.Popen([os.path.join(root, "dev"), "suite"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for _ in range(2)]
        self.assertEqual([run.wait(timeout=30) for run in runs], [0, 0])
        with open(log) as f:
            self.assertEqual(f.read().split(), ["start", "end"])
