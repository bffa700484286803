"""
C{tradechat-passwd}: set an account's password in a credentials file.

    tradechat-passwd credentials.txt alice          # prompts twice
    echo secret | tradechat-passwd --stdin credentials.txt alice

The file holds one line per account (name, Argon2id parameters, salt and
the stored key; never the password) and is read by the server's
C{--credentials}.  The line for NAME is replaced if present; the file is
rewritten atomically.
"""

from __future__ import annotations

import getpass
import sys

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


def set_password(path: FilePath, credential: auth.Credential) -> None:
    """Replace or add C{credential}'s line (setContent writes a temp file, then renames)."""
    lines = path.getContent().decode("utf-8").splitlines() if path.exists() else []
    auth.parse_credentials("\n".join(lines))  # refuse to rewrite a file we cannot read
    kept = [line for line in lines
            if not line.strip() or line.lstrip().startswith("#")
            or line.strip().rsplit(":", 6)[0] != credential.name]
    kept.append(auth.format_credential(credential))
    path.setContent(("\n".join(kept) + "\n").encode("utf-8"))


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
