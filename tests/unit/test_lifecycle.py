"""The process state machine tables."""
from __future__ import annotations

import pytest

from lotc.agent.lifecycle import COMMANDS, TRANSITIONS, check_command, check_transition
from lotc.errors import InternalError, InvalidState
from lotc.process_states import ALIVE
from protocol.enums import Action
from protocol.enums import ProcessState as S


def test_every_state_is_reachable_and_every_live_state_can_end() -> None:
    reached = {S.NONE}
    frontier = [S.NONE]
    while frontier:
        old = frontier.pop()
        for (a, b) in TRANSITIONS:
            if a == old and b not in reached:
                reached.add(b)
                frontier.append(b)
    assert reached == set(S)
    for state in ALIVE:
        assert any(a == state and b in (S.EXITED, S.FAILED) or a == state and b == S.BACKOFF
                   for a, b in TRANSITIONS), state


def test_nothing_goes_back_to_none_and_ended_states_only_restart() -> None:
    assert not [t for t in TRANSITIONS if t[1] == S.NONE]
    for ended in (S.EXITED, S.FAILED):
        assert {b for a, b in TRANSITIONS if a == ended} == {S.STARTING}


def test_check_transition() -> None:
    assert "suspended" in check_transition(S.RUNNING, S.STOPPED)
    with pytest.raises(InternalError, match="exited -> stopped"):
        check_transition(S.EXITED, S.STOPPED)


def test_commands_table() -> None:
    assert set(COMMANDS) == set(Action)
    check_command(Action.RESUME, "p", S.STOPPED)
    with pytest.raises(InvalidState, match="cannot resume process 'p': it is running; only a "
                                           "stopped"):
        check_command(Action.RESUME, "p", S.RUNNING)
    with pytest.raises(InvalidState, match="it is waiting to restart"):
        check_command(Action.STOP, "p", S.BACKOFF)
    for state in ALIVE:
        check_command(Action.TERMINATE, "p", state)
