"""The CONTRACT (protocol/message_types.py) and its one checker (protocol/contract.py)."""
from __future__ import annotations

import itertools

import pytest

from lotc.agent.connection import LINK
from lotc.agent.requests import COMMANDS, ROUTES
from lotc.server.admin_server import HANDLERS, INLINE
from lotc.server.agent_server import QUICK, SLOW
from protocol import contract
from protocol.enums import Role
from protocol.errors import ErrorCode, ProtocolError
from protocol.message_types import CONTRACT, Leg, MessageType, Phase

EVERY_CASE = list(itertools.product(MessageType, Leg, Phase))


def test_every_message_type_has_a_rule_and_a_sender() -> None:
    assert set(CONTRACT) == set(MessageType)
    for message_type, rule in CONTRACT.items():
        assert rule.handshake | rule.authenticated, message_type


@pytest.mark.parametrize(("message_type", "leg", "phase"), EVERY_CASE,
                         ids=[f"{m.name}-{leg.name}-{p.name}" for m, leg, p in EVERY_CASE])
def test_the_checker_answers_the_table_for_every_case(
        message_type: MessageType, leg: Leg, phase: Phase) -> None:
    expected = leg in CONTRACT[message_type].legs(phase)
    assert contract.may_send(leg, phase, message_type) is expected
    assert (message_type in contract.allowed(leg, phase)) is expected
    if expected:
        contract.check(leg, phase, message_type)  # no error
        return
    with pytest.raises(ProtocolError) as caught:
        contract.check(leg, phase, message_type)
    assert caught.value.code == ErrorCode.UNEXPECTED_MESSAGE
    assert message_type.name in str(caught.value)


def test_the_handshake_is_hello_challenge_auth_welcome_and_nothing_else() -> None:
    clients = {Leg.AGENT_TO_SERVER, Leg.ADMIN_TO_SERVER}
    for leg in Leg:
        sent = contract.allowed(leg, Phase.HANDSHAKE)
        if leg in clients:
            assert sent == {MessageType.HELLO, MessageType.AUTH}
        else:
            assert sent == {MessageType.CHALLENGE, MessageType.WELCOME, MessageType.ERROR}
        # and none of the handshake's messages once authenticated
        assert not {MessageType.HELLO, MessageType.AUTH, MessageType.CHALLENGE,
                    MessageType.WELCOME} & contract.allowed(leg, Phase.AUTHENTICATED)


def test_server_only_messages_are_refused_from_clients_with_words() -> None:
    with pytest.raises(ProtocolError) as caught:
        contract.check(Leg.ADMIN_TO_SERVER, Phase.AUTHENTICATED, MessageType.AGENT_LIST)
    assert str(caught.value) == ("a console may not send AGENT_LIST after WELCOME "
                                 "(allowed: server → console (after WELCOME))")
    with pytest.raises(ProtocolError, match="an agent may not send PROC_START"):
        contract.check(Leg.AGENT_TO_SERVER, Phase.AUTHENTICATED, MessageType.PROC_START)
    with pytest.raises(ProtocolError, match="during the handshake"):
        contract.check(Leg.AGENT_TO_SERVER, Phase.HANDSHAKE, MessageType.WELCOME)


def test_legs_of_each_role() -> None:
    assert contract.LEGS_OF[Role.AGENT] == (Leg.AGENT_TO_SERVER, Leg.SERVER_TO_AGENT)
    assert contract.LEGS_OF[Role.ADMIN] == (Leg.ADMIN_TO_SERVER, Leg.SERVER_TO_ADMIN)


# Each receiver routes exactly what the table lets reach it: no handler for a frame the
# checker refuses (dead code, or a second rule), no allowed frame without one (a crash).

def test_the_agent_server_routes_exactly_what_agents_may_send() -> None:
    allowed = contract.allowed(Leg.AGENT_TO_SERVER, Phase.AUTHENTICATED)
    assert set(QUICK) | set(SLOW) == allowed


def test_the_admin_server_routes_exactly_what_consoles_may_send() -> None:
    allowed = contract.allowed(Leg.ADMIN_TO_SERVER, Phase.AUTHENTICATED)
    assert set(INLINE) | set(HANDLERS) == allowed
    assert not set(INLINE) & set(HANDLERS)


def test_the_agent_routes_exactly_what_the_server_may_send_it() -> None:
    allowed = contract.allowed(Leg.SERVER_TO_AGENT, Phase.AUTHENTICATED)
    routed = [*LINK, *COMMANDS, *ROUTES]
    assert set(routed) == allowed
    assert len(routed) == len(set(routed))  # one route each
