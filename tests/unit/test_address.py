from __future__ import annotations

import pytest

from lotc.errors import InvalidRequest
from lotc.net.address import Address, default_listen_addresses, parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7370", Address("127.0.0.1", 7370)),
        ("node-1.example:80", Address("node-1.example", 80)),
        ("[::1]:7370", Address("::1", 7370)),
        ("[::]:0", Address("::", 0)),
        (" localhost:1 ", Address("localhost", 1)),
        ("[fe80::1%lo]:9", Address("fe80::1%lo", 9)),
    ],
)
def test_parses_what_users_type(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


def test_default_port_applies_only_when_missing() -> None:
    assert parse_address("host", default_port=7) == Address("host", 7)
    assert parse_address("[::1]", default_port=7) == Address("::1", 7)
    assert parse_address("host:8", default_port=7) == Address("host", 8)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty address"),
        ("::1:7370", "need brackets"),
        ("[::1:7370", "missing ']'"),
        ("[nothex]:1", "not an IPv6 address"),
        ("[::1]7370", "expected ':PORT'"),
        ("host:http", "bad port"),
        ("host:70000", "bad port"),
        (":7370", "missing host"),
        ("host", "missing port"),
    ],
)
def test_errors_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(InvalidRequest, match=words.replace("[", r"\[")):
        parse_address(text)


def test_str_round_trips_and_brackets_ipv6() -> None:
    for address in [Address("::1", 5), Address("10.0.0.1", 6)]:
        assert parse_address(str(address)) == address
    assert [str(a) for a in default_listen_addresses(7370)] == ["0.0.0.0:7370", "[::]:7370"]
