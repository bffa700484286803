"""
The interactive shell both marketplace CLIs run: parse a line, call, print.

Each CLI is only a table of ``Command`` values (see ``buyer`` and ``seller``);
everything else -- argument parsing, the session, help text, tables, errors
and the event loop -- is here.  Lines run one at a time in the order typed; a
line typed while a call is in flight waits for it.

Whatever a server sends is shown through ``marketplace.terminal.printable``:
an item name or an error message cannot move the cursor, overwrite earlier
output or start a fake line.

Nothing a user types or a server does may end the program: bad arguments
print the command's usage, error replies print their code and message, and a
lost or refused connection prints ``SERVICE_UNAVAILABLE`` with the reason
(a TLS failure's included) -- the next command reconnects by itself (see
``rpc.ServiceClient``).  Any of these makes the program's exit status 1, so
a piped script that went wrong says so.
"""

import shlex
import uuid
from decimal import Decimal, InvalidOperation

import attrs
from twisted.internet import defer, stdio
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from zope.interface import implementer

from marketplace.market.errors import (
    ApiError,
    ClientError,
    InvalidSession,
    ServiceUnavailable,
    Timeout,
)
from marketplace.market.rpc import ServiceClient
from marketplace.options import ProgramOptions, client_endpoint_argument, parse_command_line
from marketplace.terminal import printable


class ArgumentError(Exception):
    """A typed argument that cannot be used; the message says why."""


# Converters from a typed word to a payload value.
def whole_number(word: str) -> int:
    try:
        return int(word)
    except ValueError:
        raise ArgumentError(f"{word!r} is not a whole number") from None


def money(word: str) -> Decimal:
    try:
        amount = Decimal(word)
    except InvalidOperation:
        raise ArgumentError(f"{word!r} is not an amount such as 9.99") from None
    if not amount.is_finite():
        raise ArgumentError(f"{word!r} is not an amount such as 9.99")
    return amount


def thumbs(word: str) -> bool:
    choice = word.lower()
    if choice in ("up", "+", "yes", "good"):
        return True
    if choice in ("down", "-", "no", "bad"):
        return False
    raise ArgumentError(f"{word!r} must be up or down")


def yes_no(word: str) -> bool:
    choice = word.lower()
    if choice in ("yes", "y", "true", "1"):
        return True
    if choice in ("no", "n", "false", "0"):
        return False
    raise ArgumentError(f"{word!r} must be yes or no")


def word(text: str) -> str:
    return text


@attrs.frozen
class Arg:
    """A required positional argument filling payload field ``field``."""

    field: str
    label: str
    convert: object = word


@attrs.frozen
class Rest:
    """Every remaining positional argument, as a list in ``field``."""

    field: str
    label: str
    convert: object = word


@attrs.frozen
class Opt:
    """An optional ``field=value`` argument."""

    field: str
    convert: object = word


@attrs.frozen
class Command:
    """
    One CLI command and the api it calls.

    ``render(session_id, payload) -> str`` formats a success.
    ``idempotency_field`` names a payload field that gets a fresh random key,
    reused when the same command is retried after an unknown outcome (lost
    connection, timeout), so a retried purchase is charged once.
    """

    name: str
    api: str
    summary: str
    params: tuple = ()
    render: object = None
    idempotency_field: str | None = None

    @property
    def usage(self) -> str:
        words = [self.name]
        for param in self.params:
            if isinstance(param, Arg):
                words.append(param.label)
            elif isinstance(param, Rest):
                words.append(f"[{param.label} ...]")
            else:
                words.append(f"[{param.field}=VALUE]")
        return " ".join(words)

    def payload(self, words: list[str]) -> dict:
        """The request payload from the words typed after the command name."""
        options = {p.field: p for p in self.params if isinstance(p, Opt)}
        positional = []
        payload = {}
        for typed in words:
            key, equals, value = typed.partition("=")
            if equals and key in options:
                payload[key] = options[key].convert(value)
            else:
                positional.append(typed)
        for param in self.params:
            if isinstance(param, Arg):
                if not positional:
                    raise ArgumentError(f"missing {param.label}")
                payload[param.field] = param.convert(positional.pop(0))
            elif isinstance(param, Rest):
                payload[param.field] = [param.convert(w) for w in positional]
                positional = []
        if positional:
            raise ArgumentError(f"unexpected {' '.join(positional)!r}")
        return payload


def format_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """Rows as an aligned text table; ``columns`` are (heading, key) pairs."""
    if not rows:
        return "(none)"
    cells = [[heading for heading, _ in columns]]
    for row in rows:
        cells.append([format_value(row.get(key)) for _, key in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_value(value) -> str:
    """One value as table-cell text: yes/no, ``-`` for null, lists joined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return " ".join(f"{key}={format_value(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        separator = "; " if any(isinstance(v, dict) for v in value) else ","
        return separator.join(format_value(v) for v in value)
    return str(value)


def format_fields(payload: dict) -> str:
    """A mapping as aligned ``key  value`` lines (the fallback rendering)."""
    if not payload:
        return "ok"
    width = max(len(str(key)) for key in payload)
    return "\n".join(f"{str(key).ljust(width)}  {format_value(value)}"
                     for key, value in payload.items())


@implementer(IHalfCloseableProtocol)
class Shell(LineReceiver):
    """
    The command loop on a line-oriented transport (stdin/stdout in ``main``).

    ``client`` is anything with ``call(api, payload, session_id=...)``
    returning a Deferred of ``(session_id, payload)``.  At the end of input
    the lines already read still run, so a piped script completes.
    """

    delimiter = b"\n"

    def __init__(self, title: str, commands: list[Command], client):
        self.title = title
        self.commands = {command.name: command for command in commands}
        self.client = client
        self.session_id = None
        self.finished = defer.Deferred()
        self._lines = []
        self._busy = False
        self._unsettled = {}  # command name -> (payload, key) whose outcome is unknown
        self._input_ended = False
        #: a command failed (the exit status is 1)
        self.failed = False

    @property
    def prompt(self) -> str:
        return f"{self.title}{'*' if self.session_id else ''}> "

    def connectionMade(self):
        self.say(f"{self.title} client -- type 'help' for commands, 'quit' to leave.")
        self.transport.write(self.prompt.encode())

    def say(self, text: str):
        self.transport.write(text.encode("utf-8", "replace") + b"\n")

    def lineReceived(self, line: bytes):
        self._lines.append(line)
        if not self._busy:
            self._next_line()

    def _next_line(self):
        """Run queued lines; local ones finish at once, a call pauses the queue."""
        while self._lines and not self._busy:
            line = self._lines.pop(0).decode("utf-8", "replace").strip()
            d = self.run_line(line)
            if d is not None:
                self._busy = True
                d.addBoth(self._done)
                return
            self._prompt()
        if self._input_ended and not self._busy:
            self._quit()

    def _done(self, _):
        self._busy = False
        self._prompt()
        self._next_line()

    def _prompt(self):
        if not self.finished.called and not self.transport.disconnecting:
            self.transport.write(self.prompt.encode())

    def lineLengthExceeded(self, line: bytes):
        """An over-long paste is refused, not a reason to end the session."""
        self.say(f"line too long (over {self.MAX_LENGTH} bytes); ignored")
        self._prompt()

    def run_line(self, line: str):
        """Act on one line: a Deferred while a call is in flight, None when done already."""
        if not line or line.startswith("#"):
            return None
        try:
            words = shlex.split(line)
        except ValueError as error:
            return self._refuse(f"cannot read that line: {error}")
        name, arguments = words[0].lower(), words[1:]
        if name in ("quit", "exit"):
            self._quit()
            return None
        if name in ("help", "?"):
            return self._say_only(self.help(arguments[0] if arguments else None))
        command = self.commands.get(name)
        if command is None:
            return self._refuse(f"unknown command {name!r}; type 'help'")
        try:
            payload = command.payload(arguments)
        except ArgumentError as error:
            return self._refuse(f"{error}\nusage: {command.usage}")
        return self._call(command, payload)

    def _say_only(self, text: str):
        """Print a local answer; nothing is in flight afterwards."""
        self.say(text)

    def _refuse(self, text: str):
        """A line that cannot run: say why; the program will exit with status 1."""
        self.failed = True
        self.say(text)

    def _call(self, command: Command, payload: dict):
        key_field = command.idempotency_field
        if key_field:
            previous = self._unsettled.get(command.name)
            key = previous[1] if previous and previous[0] == payload else uuid.uuid4().hex
            self._unsettled[command.name] = (dict(payload), key)
            payload = {**payload, key_field: key}
        try:
            d = self.client.call(command.api, payload, session_id=self.session_id)
        except Exception as error:  # an encoding problem must not end the shell
            return self._refuse(f"cannot send that: {error}")
        d.addCallbacks(self._succeeded, self._failed, callbackArgs=(command,), errbackArgs=(command,))
        return d

    def _succeeded(self, result, command):
        session_id, payload = result
        self._unsettled.pop(command.name, None)
        if command.api == "Login":
            self.session_id = session_id or payload.get("session_id")
        elif command.api == "Logout":
            self.session_id = None
        render = command.render or (lambda _session, data: format_fields(data))
        session_id, payload = _shown(session_id), _shown(payload)
        try:
            self.say(render(session_id, payload))
        except Exception:  # a reply shaped unlike we expect is still shown
            self.say(format_fields(payload))

    def _failed(self, failure, command):
        self.failed = True
        error = failure.value
        if not isinstance(error, ApiError):
            self.say(f"error: {printable(failure.getErrorMessage())}")
            return
        if isinstance(error, ClientError) and error.message == InvalidSession.default_message:
            # The session expired (or was ended elsewhere): the prompt says so.
            self.session_id = None
        message = printable(error.message)
        if not isinstance(error, (ServiceUnavailable, Timeout)):
            self._unsettled.pop(command.name, None)
        elif command.idempotency_field:
            message += " -- the outcome is unknown; repeat the same command to retry it safely"
        self.say(f"error [{printable(error.code)}]: {message}")

    def help(self, name: str | None = None) -> str:
        if name is not None:
            command = self.commands.get(name.lower())
            if command is None:
                return f"unknown command {name!r}"
            return f"{command.usage}\n  {command.summary}"
        width = max(len(c.usage) for c in self.commands.values())
        lines = [f"  {c.usage.ljust(width)}  {c.summary}" for c in self.commands.values()]
        lines.append(f"  {'help [COMMAND]'.ljust(width)}  this text, or one command's")
        lines.append(f"  {'quit'.ljust(width)}  leave")
        lines.append('Quote an argument with spaces in it: "two words"')
        return "commands:\n" + "\n".join(lines)

    def _quit(self):
        """Close the terminal side; ``finished`` fires once output is flushed."""
        self.transport.loseConnection()

    def readConnectionLost(self):
        """End of input: finish the lines already typed, then quit."""
        self._input_ended = True
        self._next_line()

    def writeConnectionLost(self):
        self._finish()

    def connectionLost(self, reason):
        self._finish()

    def _finish(self):
        if not self.finished.called:
            self.finished.callback(None)


def _shown(value):
    """A reply's strings (keys too) made safe to print, at any depth."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {_shown(key): _shown(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shown(item) for item in value]
    return value


class ClientOptions(ProgramOptions):
    """Options both CLIs take; ``default_server`` is set by each CLI."""

    default_server = "tcp:127.0.0.1:7011"

    optParameters = [
        ["server", "s", None, "Front end to talk to, as a client endpoint (tcp:HOST:PORT, tls:HOST:PORT)."],
        ["timeout", "t", 10.0, "Seconds to wait for each reply.", float],
    ]

    def postOptions(self):
        if self["server"] is None:
            self["server"] = self.default_server
        self["server"] = client_endpoint_argument(self["server"])
        if not self["timeout"] > 0:
            raise usage.UsageError("--timeout must be positive")


def run(title: str, commands: list[Command], options: ClientOptions, argv=None) -> int:
    """Parse ``argv``, then run the shell on stdin/stdout until quit or end of input."""
    parse_command_line(options, argv)
    from twisted.internet import reactor

    client = ServiceClient(options["server"], pool_size=1, timeout=options["timeout"], retries=1)
    shell = Shell(title, commands, client)
    stdio.StandardIO(shell)
    shell.finished.addBoth(lambda _: client.close())
    shell.finished.addBoth(lambda _: _stop(reactor))
    reactor.run()
    return 1 if shell.failed else 0


def _stop(reactor):
    """Stop the reactor unless it is already stopping (Ctrl-C got there first)."""
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass
