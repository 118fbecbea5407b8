from __future__ import annotations

import pytest

from protocol.errors import ErrorCode, ProtocolError
from protocol.senders import ALLOWED, Sender, check, may_send, roles_of
from protocol.spec import SENDERS, MessageType


def test_every_cell_of_the_table_names_known_roles() -> None:
    for cell in SENDERS.values():
        assert roles_of(cell)


def test_an_unknown_word_is_refused() -> None:
    with pytest.raises(ValueError):
        roles_of("agent, wizard")


def test_aliases_expand() -> None:
    assert roles_of("client") == {Sender.AGENT, Sender.ADMIN}
    assert roles_of("any") == set(Sender)


def test_each_message_type_has_a_sender() -> None:
    assert set().union(*ALLOWED.values()) == set(MessageType)


def test_agents_send_stats_and_consoles_do_not() -> None:
    assert may_send(Sender.AGENT, MessageType.STATS_REPORT)
    assert not may_send(Sender.ADMIN, MessageType.STATS_REPORT)
    assert may_send(Sender.ADMIN, MessageType.PROC_START)
    assert not may_send(Sender.AGENT, MessageType.PROC_START)


def test_a_wrong_role_gets_the_wire_code() -> None:
    with pytest.raises(ProtocolError) as caught:
        check(Sender.AGENT, MessageType.PROC_START)
    assert caught.value.code == ErrorCode.UNEXPECTED_MESSAGE
    assert "agents may not send PROC_START" in str(caught.value)
    check(Sender.SERVER, MessageType.WELCOME)  # allowed: no error
