"""
C{tradechat-client}: an interactive client for the trading chatroom.

    tradechat-client --connect tcp:127.0.0.1:9000 [--name alice [--password]]

Reads one command per line from standard input and prints chat pushes the
moment they arrive.  It works against this server and the existing one
(which lacks LOGOUT, TXN_HISTORY and passwords: those then report the
server's refusal).  Type C{help} for the commands.

A connection that cannot be made (refused, unknown host, a TLS certificate
from an unknown CA or for another host) is one line on stderr and exit
status 1; so is a piped script in which any command failed.
"""

from __future__ import annotations

import getpass
import inspect
import shlex
import sys
import time

from twisted.internet import defer, stdio, task
from twisted.protocols.basic import LineReceiver

from marketplace.net import describe_connection_failure
from marketplace.options import (
    ProgramOptions,
    client_endpoint_argument,
    parse_command_line,
    positive_float,
    program_name,
)
from marketplace.terminal import printable
from marketplace.tradechat.remote import DEFAULT_REQUEST_TIMEOUT, TradeChatClient, refused_balance
from protocols.nsframe import Status
from protocols.tradechat import ResponseError, code_name

#: Each command's usage line and what it does, in the order help shows them.
USAGE = {
    "login": ("login NAME [PASSWORD]", "log in (a password uses the proof extension)"),
    "logout": ("logout", "end the login, keep the connection"),
    "join": ("join ROOM", "enter a room (0..65535)"),
    "leave": ("leave ROOM", "leave a room"),
    "say": ("say ROOM TEXT...", "chat; every member's connections get it at once"),
    "deposit": ("deposit AMOUNT", "add to your balance"),
    "withdraw": ("withdraw AMOUNT", "take from your balance"),
    "transfer": ("transfer USER_ID AMOUNT", "pay another user"),
    "balance": ("balance", "show your balance"),
    "history": ("history [LIMIT [BEFORE_TXN_ID]]",
                "newest first; page with the last txn id shown"),
    "heartbeat": ("heartbeat", "check the connection"),
}

HELP = "commands:\n" + "\n".join(
    f"  {usage:<33} {summary}" for usage, summary in USAGE.values()) + "\n  help | quit"


def _integer(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{what} must be {low}..{high}")
    return value


def format_push(push) -> str:
    """
    One line for a chat push.  The message is the sender's, shown through
    L{printable}: a carriage return or escape sequence in it must not
    rewrite the C{<user N>} prefix or start a line of its own.
    """
    message = printable(push.message.decode("utf-8", "replace"))
    return f"[room {push.room}] <user {push.from_user_id}> {message}"


def format_history(entries) -> list[str]:
    lines = ["txn_id  kind          counterparty  amount        balance       time (UTC)"]
    for entry in entries:
        counterparty = "-" if entry.counterparty is None else str(entry.counterparty)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.timestamp_ms / 1000))
        lines.append(f"{entry.txn_id:<7} {printable(entry.kind):<13} {counterparty:<13} "
                     f"{entry.amount:<13} {entry.balance_after:<13} {stamp}")
    if not entries:
        lines.append("(no transactions)")
    return lines


class Shell(LineReceiver):
    """Parses command lines, runs them on a L{TradeChatClient}, prints the outcome."""

    delimiter = b"\n"

    def __init__(self, client: TradeChatClient, write, on_quit) -> None:
        self.client = client
        self._write = write
        self._on_quit = on_quit
        self._pending = defer.succeed(None)
        #: a command failed (the exit status is 1)
        self.failed = False
        self._commands = {
            "login": self._login, "logout": self._logout, "join": self._join,
            "leave": self._leave, "say": self._say, "deposit": self._deposit,
            "withdraw": self._withdraw, "transfer": self._transfer, "balance": self._balance,
            "history": self._history, "heartbeat": self._heartbeat,
        }

    def say_line(self, text: str) -> None:
        self._write(text + "\n")

    def lineReceived(self, line: bytes) -> None:
        # One command at a time, in order, as typed or piped in.
        text = line.decode("utf-8", "replace")
        self._pending.addCallback(lambda _: self.run(text))

    def connectionLost(self, reason=None) -> None:
        self._pending.addCallback(lambda _: self._on_quit())

    def run(self, line: str) -> defer.Deferred:
        try:
            words = line.split(None, 2) if line.strip().startswith("say") else shlex.split(line)
        except ValueError as error:
            return self._refuse(f"usage error: {error}")
        if not words:
            return defer.succeed(None)
        command, arguments = words[0].lower(), words[1:]
        if command in ("quit", "exit"):
            self._on_quit()
            return defer.succeed(None)
        if command == "help":
            self.say_line(HELP)
            return defer.succeed(None)
        run = self._commands.get(command)
        if run is None:
            return self._refuse(f"unknown command {command!r}\n{HELP}")
        usage_line = USAGE[command][0]
        try:
            inspect.signature(run).bind(*arguments)
        except TypeError:
            return self._refuse(f"usage: {usage_line}")
        try:
            d = run(*arguments)
        except ValueError as error:
            return self._refuse(f"usage error: {error}\nusage: {usage_line}")
        return self.report(d)

    def _refuse(self, text: str) -> defer.Deferred:
        """A line that cannot run: say why; the exit status will be 1."""
        self.failed = True
        self.say_line(text)
        return defer.succeed(None)

    def report(self, d: defer.Deferred) -> defer.Deferred:
        """Print what C{d} (a command's outcome) fires with, or why it failed."""
        return d.addCallbacks(self._print_result, self._print_error)

    def login(self, name: str, password=None) -> defer.Deferred:
        return self.report(self._login(name, password))

    def _print_result(self, text) -> None:
        if text is not None:
            self.say_line(text)

    def _print_error(self, failure) -> None:
        self.failed = True
        error = failure.value
        if isinstance(error, ResponseError):
            message = f"refused: {code_name(Status, error.status)}"
            balance = refused_balance(error)
            if balance is not None:
                message += f" (balance {balance})"
            self.say_line(message)
        else:
            self.say_line(f"error: {printable(failure.getErrorMessage() or failure.type.__name__)}")

    def _login(self, name, password=None):
        d = self.client.login(name, password)
        return d.addCallback(lambda r: f"logged in as {name}: user {r.user_id}, balance {r.balance}")

    def _logout(self):
        return self.client.logout().addCallback(lambda _: "logged out")

    def _join(self, room):
        room = _integer(room, 0, 0xFFFF, "room")
        return self.client.join(room).addCallback(lambda _: f"joined room {room}")

    def _leave(self, room):
        room = _integer(room, 0, 0xFFFF, "room")
        return self.client.leave(room).addCallback(lambda _: f"left room {room}")

    def _say(self, room, text):
        return self.client.say(_integer(room, 0, 0xFFFF, "room"), text.encode("utf-8"))

    def _deposit(self, amount):
        d = self.client.deposit(_integer(amount, 1, 2**63 - 1, "amount"))
        return d.addCallback(lambda balance: f"balance {balance}")

    def _withdraw(self, amount):
        d = self.client.withdraw(_integer(amount, 1, 2**63 - 1, "amount"))
        return d.addCallback(lambda balance: f"balance {balance}")

    def _transfer(self, to_user_id, amount):
        d = self.client.transfer(_integer(to_user_id, 0, 2**32 - 1, "user id"),
                                 _integer(amount, 1, 2**63 - 1, "amount"))
        return d.addCallback(lambda balance: f"balance {balance}")

    def _balance(self):
        return self.client.balance().addCallback(lambda balance: f"balance {balance}")

    def _history(self, limit="20", before="0"):
        d = self.client.history(_integer(limit, 1, 500, "limit"),
                                _integer(before, 0, 2**64 - 1, "before"))
        return d.addCallback(lambda entries: "\n".join(format_history(entries)))

    def _heartbeat(self):
        return self.client.heartbeat().addCallback(lambda _: "alive")


class Options(ProgramOptions):
    synopsis = "[options]"
    optFlags = [
        ["password", "p", "Prompt for a password and log in with the proof extension."],
        ["encrypt", None, "Obfuscate request bodies (XOR 0xA5; not security: use tls:)."],
    ]
    optParameters = [
        ["connect", "c", "tcp:127.0.0.1:9000",
         "Client endpoint: tcp:HOST:PORT or tls:HOST:PORT:trustRoots=CA_DIR."],
        ["name", "n", None, "Log in as NAME right after connecting."],
        ["heartbeat", None, 30.0, "Seconds between automatic heartbeats.", positive_float],
        ["timeout", None, DEFAULT_REQUEST_TIMEOUT, "Seconds to wait for each reply.", positive_float],
    ]

    def postOptions(self):
        self["connect"] = client_endpoint_argument(self["connect"])


def _fail(options, reason) -> None:
    """Say why the server cannot be used, in one line, and exit with status 1."""
    print(f"{program_name()}: cannot use {options['connect']}: "
          f"{describe_connection_failure(reason)}", file=sys.stderr)
    raise SystemExit(1)


@defer.inlineCallbacks
def _connect(reactor, options, write):
    """
    A client whose connection works: a first heartbeat proves it (a TLS
    handshake only fails once something is sent).
    """
    try:
        client = yield TradeChatClient.connect(
            options["connect"], reactor, options["timeout"],
            on_push=lambda push: (write(format_push(push) + "\n"), sys.stdout.flush()),
            obfuscate=options["encrypt"])
    except Exception as error:
        _fail(options, error)
    try:
        yield client.heartbeat()
    except Exception as error:
        _fail(options, client.protocol.lost_reason or error)
    return client


@defer.inlineCallbacks
def _session(reactor, options):
    write = sys.stdout.write
    client = yield _connect(reactor, options, write)
    done = defer.Deferred()

    def quit():
        if not done.called:
            done.callback(None)

    shell = Shell(client, lambda text: (write(text), sys.stdout.flush()), quit)
    write(f"connected to {options['connect']}; type help for commands\n")
    if options["name"]:
        password = getpass.getpass("password: ") if options["password"] else None
        yield shell.login(options["name"], password)
    heartbeat = task.LoopingCall(lambda: client.heartbeat().addErrback(lambda _: None))
    heartbeat.clock = reactor
    heartbeat.start(options["heartbeat"], now=False)
    def lost(_):
        if not done.called:
            write("connection closed by the server\n")
            quit()

    client.protocol.when_lost().addCallback(lost)
    stdio.StandardIO(shell)
    yield done
    heartbeat.stop()
    yield client.close()
    if shell.failed:
        raise SystemExit(1)


def main(argv=None) -> None:
    options = parse_command_line(Options(), argv)
    task.react(_session, [options])


if __name__ == "__main__":
    main()
