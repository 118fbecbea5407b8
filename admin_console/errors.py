"""Errors of the console itself, as opposed to errors the server reports.

The server's errors arrive as lotc.errors classes (rebuilt from ERROR frames);
these are the console's own: the user typed something wrong, or the
connection to the server is gone. Both carry plain words meant for the user.
"""
from __future__ import annotations


class ConsoleError(Exception):
    """Base of the console's own errors."""


class UsageError(ConsoleError):
    """A command line that cannot be parsed; `usage` is the command's usage line."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\nusage: {self.usage}" if self.usage else text


class ConnectionLost(ConsoleError):
    """The connection to the server closed or broke; pending requests fail with this."""


class NotConnected(ConsoleError):
    """A command needed the server but the console has no connection."""
