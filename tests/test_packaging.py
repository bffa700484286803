"""
Both install modes make ``twistd --help`` list every plugin, from any
directory.

Twisted finds dropins by scanning ``sys.path`` for ``twisted/plugins``
directories, which an editable install can hide (setuptools may map packages
with an import hook instead of a path entry).  Each test installs a copy of
the project into a fresh virtualenv and asks twistd from an unrelated
directory.  The dependencies come from the running interpreter through a
``.pth`` line rather than from the network, which keeps the test offline and
quick.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

from twisted.trial import unittest

from twisted.application.service import IServiceMaker

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_TIMEOUT = 240


def plugin_names() -> set[str]:
    """Every plugin the project's dropin defines."""
    from twisted.plugins import marketplace_plugins
    return {maker.tapname for maker in vars(marketplace_plugins).values()
            if IServiceMaker.providedBy(maker)}


def _copy_project(destination: str) -> str:
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=PROJECT,
                             capture_output=True, text=True, check=True).stdout.split()
    for relative in tracked:
        source = os.path.join(PROJECT, relative)
        if os.path.isfile(source):
            target = os.path.join(destination, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(source, target)
    return destination


class InstallModeTests(unittest.TestCase):
    def install(self, editable: bool) -> tuple[str, str]:
        work = os.path.abspath(self.mktemp())
        source = _copy_project(os.path.join(work, "source"))
        venv = os.path.join(work, "venv")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True,
                       timeout=STEP_TIMEOUT)
        python = os.path.join(venv, "bin", "python")
        venv_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(venv_site, "dependencies.pth"), "w") as pth:
            pth.write(sysconfig.get_paths()["purelib"] + "\n")
        command = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                   "--no-index"]
        command += ["-e", source] if editable else [source]
        subprocess.run(command, check=True, timeout=STEP_TIMEOUT, cwd=work, env=self.clean_env())
        return python, work

    @staticmethod
    def clean_env() -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def assertTwistdListsPlugins(self, python: str, work: str, package_root: str):
        elsewhere = os.path.join(work, "elsewhere")
        os.makedirs(elsewhere)
        run = lambda code, *args: subprocess.run(
            [python, "-c", code, *args], capture_output=True, text=True, cwd=elsewhere,
            env=self.clean_env(), timeout=STEP_TIMEOUT)
        where = run("import marketplace; print(marketplace.__file__)").stdout.strip()
        self.assertTrue(where.startswith(package_root), (where, package_root))
        help_text = run("from twisted.scripts.twistd import run; run()", "--help")
        self.assertEqual(help_text.returncode, 0, help_text.stderr)
        expected = plugin_names()
        self.assertIn("suite", expected)
        for name in expected:
            self.assertRegex(help_text.stdout, rf"(?m)^\s+{name}\s+\S")

    def test_regular_install(self):
        python, work = self.install(editable=False)
        self.assertTwistdListsPlugins(python, work, os.path.join(work, "venv"))

    def test_editable_install(self):
        python, work = self.install(editable=True)
        self.assertTwistdListsPlugins(python, work, os.path.join(work, "source"))
