"""
C{tradechat-passwd}: set an account's password in a credentials file.

    tradechat-passwd credentials.txt alice          # prompts twice
    echo secret | tradechat-passwd --stdin credentials.txt alice

The file holds one line per account (name, Argon2id parameters, salt and
the stored key; never the password) and is read by the server's
C{--credentials}.  The line for NAME is replaced if present; the file is
rewritten atomically and is readable by its owner only (mode 0600): the
stored keys are what an offline Argon2id guess is checked against.
"""

from __future__ import annotations

import getpass
import os
import sys
import tempfile

from twisted.python import usage
from twisted.python.filepath import FilePath

from marketplace.options import ProgramOptions, parse_command_line
from marketplace.tradechat import auth
from protocols.tradechat_bodies import MAX_NAME_BYTES


class Options(ProgramOptions):
    synopsis = "[options] CREDENTIALS_FILE NAME"
    optFlags = [["stdin", None, "Read the password from the first line of standard input."]]
    optParameters = [
        ["time-cost", None, auth.DEFAULT_TIME_COST, "Argon2id passes.", int],
        ["memory-kib", None, auth.DEFAULT_MEMORY_COST_KIB, "Argon2id memory in KiB.", int],
        ["parallelism", None, auth.DEFAULT_PARALLELISM, "Argon2id lanes.", int],
    ]

    def postOptions(self):
        try:
            auth.check_params(self["time-cost"], self["memory-kib"], self["parallelism"])
        except ValueError as error:
            raise usage.UsageError(str(error)) from None

    def parseArgs(self, path, name):
        if not 1 <= len(name.encode("utf-8")) <= MAX_NAME_BYTES or "\x00" in name:
            raise usage.UsageError(f"NAME must be 1..{MAX_NAME_BYTES} bytes of UTF-8")
        self["path"], self["name"] = path, name


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("new password: ")
    if password != getpass.getpass("again: "):
        raise SystemExit("passwords differ")
    return password


CREDENTIALS_MODE = 0o600


def write_private(path: FilePath, content: bytes) -> None:
    """
    Replace C{path}'s content atomically with a file of mode 0600: a
    temporary file in the same directory is created 0600 (never wider, whatever
    the umask or the old file's mode), written, synced, then renamed over
    C{path}, and the rename is synced.  A reader sees the old file or the new
    one, never a part, and nobody but the owner can ever read either.
    """
    directory = path.parent().path
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.basename()}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), CREDENTIALS_MODE)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path.path)
    except BaseException:
        os.unlink(temporary)
        raise
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def set_password(path: FilePath, credential: auth.Credential) -> None:
    """Replace or add C{credential}'s line, rewriting the file with L{write_private}."""
    lines = path.getContent().decode("utf-8").splitlines() if path.exists() else []
    auth.parse_credentials("\n".join(lines))  # refuse to rewrite a file we cannot read
    kept = [line for line in lines
            if not line.strip() or line.lstrip().startswith("#")
            or line.strip().rsplit(":", 6)[0] != credential.name]
    kept.append(auth.format_credential(credential))
    write_private(path, ("\n".join(kept) + "\n").encode("utf-8"))


def main(argv=None) -> None:
    options = parse_command_line(Options(), argv)
    password = read_password(options["stdin"])
    if not password:
        raise SystemExit("empty password refused")
    credential = auth.hash_password(options["name"], password, options["time-cost"],
                                    options["memory-kib"], options["parallelism"])
    try:
        set_password(FilePath(options["path"]), credential)
    except auth.CredentialFileError as error:
        raise SystemExit(f"{options['path']}: {error}")
    print(f"password set for {options['name']} in {options['path']}")


if __name__ == "__main__":
    main()
