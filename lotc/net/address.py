"""Parsing of `HOST:PORT` addresses as users type them, IPv4 and IPv6.

Accepted: `127.0.0.1:7370`, `node-1.example:7370`, `[::1]:7370`, `[::]:7370`,
`0.0.0.0:7370`, and a bare `HOST` or `[V6]` when a default port is given.
A bare IPv6 address with a port is ambiguous (`::1:7370`), so brackets are
required for IPv6 and the error says so.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lotc.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"


def _port(text: str, original: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise InvalidRequest(f"bad port in {original!r}: expected a number from 0 to 65535")
    return int(text)


def parse_address(text: str, default_port: int | None = None) -> Address:
    """Parse `HOST:PORT` or `[V6]:PORT`; raise InvalidRequest in plain words."""
    original = text
    text = text.strip()
    if not text:
        raise InvalidRequest("empty address: expected HOST:PORT or [IPV6]:PORT")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise InvalidRequest(f"missing ']' in {original!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidRequest(f"{host!r} in {original!r} is not an IPv6 address") from None
        if not rest:
            return _with_default(host, default_port, original)
        if not rest.startswith(":"):
            raise InvalidRequest(f"expected ':PORT' after ']' in {original!r}")
        return Address(host, _port(rest[1:], original))
    if text.count(":") > 1:
        raise InvalidRequest(f"IPv6 addresses need brackets: write [{text}] or [HOST]:PORT")
    host, sep, port = text.partition(":")
    if not host:
        raise InvalidRequest(f"missing host in {original!r}")
    if not sep:
        return _with_default(host, default_port, original)
    return Address(host, _port(port, original))


def _with_default(host: str, default_port: int | None, original: str) -> Address:
    if default_port is None:
        raise InvalidRequest(f"missing port in {original!r}: expected HOST:PORT")
    return Address(host, default_port)


def default_listen_addresses(port: int) -> list[Address]:
    """All interfaces of both families, as DESIGN section 2 asks: `0.0.0.0:PORT`, `[::]:PORT`."""
    return [Address("0.0.0.0", port), Address("::", port)]


def loopback_listen_addresses(port: int) -> list[Address]:
    """This machine only, both families: the console port's default (DESIGN 7, safe defaults)."""
    return [Address("127.0.0.1", port), Address("::1", port)]
