# -*- test-case-name: tests.tradechat.test_protocol -*-
"""
Refusals of the trading chatroom, each answered with a wire status by the
protocol's single error table.

They live with the protocol, not the service, because the table that maps
them to statuses is the protocol's and the protocol layer never imports a
system's package; the service raises them from here.
"""


class TradeChatError(Exception):
    """Base of the service's own refusals."""


class NotLoggedIn(TradeChatError):
    """The operation needs a login (or the login session expired)."""


class LoginRefused(TradeChatError):
    """No HELLO nonce, a wrong CRC token, or a missing/wrong password proof."""


class AlreadyLoggedIn(TradeChatError):
    """LOGIN on a connection that is logged in: LOGOUT first."""


class NotAMember(TradeChatError):
    """LEAVE_ROOM for a room the user is not in."""


class NotInRoom(TradeChatError):
    """CHAT_SEND to a room the sender has not joined (the existing server: UNAUTHORIZED)."""
