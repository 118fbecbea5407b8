"""Controller commands without sockets: targets, start and control of processes.

A real model on a tmp SQLite file, fake agents: each speaks the real codec and
handshake over a memory stream to the server's real `handle_agent`, so commands
and replies take their production path (session, request ids, read loop) minus TCP.
"""
from __future__ import annotations

import pytest
import trio
import trio.testing

from lotc.actions import for_message
from lotc.errors import (
    InvalidRequest,
    UnknownAgent,
)
from lotc.server.controller import Controller
from lotc.server.processes import QUEUED, control_process, start_process
from protocol.enums import DesiredState, ProcessState, Role
from protocol.errors import ErrorCode
from protocol.messages import (
    Error,
    ProcKill,
    ProcRemove,
    ProcRestart,
    ProcResume,
    ProcStart,
    ProcStop,
    ProcTerminate,
)
from tests.server_helpers import (  # noqa: F401  (fixtures)
    DEADLINE_S,
    SHA_A,
    FakeClock,
    connect_agent,
    connect_console,
    ctl_fixture,
    ensure_token,
    errors_in,
    frames_until_closed,
    give_bundle,
    make_config,
    model_fixture,
    start_msg,
    wait_until,
    wall_fixture,
)

# ------------------------------------------------------------------ targets


def test_resolve_targets_by_name_glob_and_all(ctl: Controller) -> None:
    for name in ("web-1", "web-2", "db-1"):
        ensure_token(ctl, Role.AGENT, name)
    ensure_token(ctl, Role.ADMIN, "alice")
    ctl.model.agent_connected("old-1", "host", "10.0.0.1:1", "lotc", ctl.now_us())  # seen, no token
    assert ctl.resolve_targets("web-1") == ["web-1"]
    assert ctl.resolve_targets("web-*") == ["web-1", "web-2"]
    assert ctl.resolve_targets(" all ") == ["db-1", "old-1", "web-1", "web-2"]
    assert ctl.resolve_targets("*") == ctl.resolve_targets("all")
    assert ctl.match_agents("") is None


def test_resolve_targets_errors_are_plain(ctl: Controller) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    ensure_token(ctl, Role.ADMIN, "alice")
    ensure_token(ctl, Role.AGENT, "gone")
    ctl.model.revoke_token("gone", ctl.now_us())
    with pytest.raises(UnknownAgent, match=r"^unknown agent 'nope'$"):
        ctl.resolve_targets("nope")
    with pytest.raises(UnknownAgent, match=r"^no agent matches 'db-\*'$"):
        ctl.resolve_targets("db-*")
    with pytest.raises(UnknownAgent):
        ctl.resolve_targets("alice")  # an admin is not an agent
    with pytest.raises(UnknownAgent):
        ctl.resolve_targets("gone")  # revoked and never seen
    with pytest.raises(InvalidRequest, match="no agent given"):
        ctl.resolve_targets("  ")


# ------------------------------------------------------------------ start


async def test_start_records_desired_state_and_sends_to_online_agent(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    give_bundle(ctl, "web-1")
    results = await start_process(ctl, start_msg())
    assert [(r.agent, r.code, r.message) for r in results] == [
        ("web-1", ErrorCode.OK, "agent did ProcStart")]
    spec = ctl.model.process("web-1", "svc")
    assert spec.desired == DesiredState.RUNNING and spec.revision > 0
    assert spec.argv == ("./run", "--fast")
    [sent] = fake.of_type(ProcStart)
    assert sent.target == "" and sent.revision == spec.revision and sent.argv == spec.argv


async def test_start_for_offline_agent_is_queued(ctl: Controller, nursery: trio.Nursery) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    ensure_token(ctl, Role.AGENT, "web-2")  # enrolled, never connected
    for agent in ("web-1", "web-2"):
        give_bundle(ctl, agent)
    results = await start_process(ctl, start_msg(target="web-*"))
    assert [(r.agent, r.code) for r in results] == [("web-1", ErrorCode.OK), ("web-2", ErrorCode.OK)]
    assert results[1].message == QUEUED
    assert results[1].message.startswith("agent offline: recorded")
    assert ctl.model.process("web-2", "svc").desired == DesiredState.RUNNING
    assert len(fake.of_type(ProcStart)) == 1


async def test_start_without_bundle_or_argv_is_refused(ctl: Controller) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    [result] = await start_process(ctl, start_msg())
    assert result.code == ErrorCode.UNKNOWN_BUNDLE and "upload it first" in result.message
    with pytest.raises(InvalidRequest, match="nothing to run"):
        await start_process(ctl, ProcStart(target="web-1", name="svc", bundle="app"))
    with pytest.raises(UnknownAgent):
        await start_process(ctl, start_msg(target="nope"))
    assert ctl.model.find_process("web-1", "svc") is None


async def test_refused_start_is_forgotten(ctl: Controller, nursery: trio.Nursery) -> None:
    refuse = {ProcStart: lambda frame: Error(code=ErrorCode.INVALID_REQUEST,
                                             message="bad environment variable")}
    await connect_agent(nursery, ctl, "web-1", answers=refuse)
    give_bundle(ctl, "web-1")
    [result] = await start_process(ctl, start_msg())
    assert result.code == ErrorCode.INVALID_REQUEST
    assert ctl.model.find_process("web-1", "svc") is None


async def test_start_that_failed_to_spawn_is_kept_as_ended(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    """The agent keeps a record of a spawn failure (with its error, across its restarts):
    the model keeps it too, desired exited, so nothing retries it and the next reconcile
    does not remove it from the agent (issue 14 item 9)."""
    refuse = {ProcStart: lambda frame: Error(code=ErrorCode.SPAWN_FAILED,
                                             message="./run: no such file")}
    await connect_agent(nursery, ctl, "web-1", answers=refuse)
    give_bundle(ctl, "web-1")
    [result] = await start_process(ctl, start_msg())
    assert (result.code, result.message) == (ErrorCode.SPAWN_FAILED, "./run: no such file")
    assert ctl.model.process("web-1", "svc").desired == DesiredState.EXITED


async def test_refused_restart_keeps_the_previous_spec(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    give_bundle(ctl, "web-1")
    await start_process(ctl, start_msg())
    before = ctl.model.process("web-1", "svc")
    fake.answers[ProcStart] = lambda frame: Error(code=ErrorCode.INVALID_REQUEST, message="nope")
    [result] = await start_process(
        ctl, ProcStart(target="web-1", name="svc", bundle="app", argv=("./other",)))
    assert result.code == ErrorCode.INVALID_REQUEST
    after = ctl.model.process("web-1", "svc")
    assert after.argv == before.argv and after.desired == before.desired
    # The agent still runs `before`: the restored spec must keep its revision, or the next
    # reconcile would see a stale revision and start the old spec over.
    assert after.revision == before.revision


async def test_start_over_an_active_process_is_a_conflict(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    await connect_agent(nursery, ctl, "web-1")
    give_bundle(ctl, "web-1")
    await start_process(ctl, start_msg())
    ctl.model.note_process_state("web-1", "svc", ProcessState.RUNNING, -1, 0, ctl.now_us())
    [result] = await start_process(ctl, start_msg())
    assert result.code == ErrorCode.CONFLICT and "terminate it first" in result.message


# ------------------------------------------------------------------ control


@pytest.mark.parametrize("cls", [ProcStop, ProcResume, ProcTerminate, ProcKill, ProcRestart])
async def test_control_changes_desired_state_as_documented(
    ctl: Controller, nursery: trio.Nursery, cls: type
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    give_bundle(ctl, "web-1")
    await start_process(ctl, start_msg())
    desired = for_message(cls(target="", name="svc")).desired_after()
    # Start from a desired state different from the expected one, so a change is visible.
    other = DesiredState.STOPPED if desired != DesiredState.STOPPED \
        else DesiredState.RUNNING
    ctl.model.set_desired_state("web-1", "svc", other)
    [result] = await control_process(ctl, cls(target="web-1", name="svc", signal="", grace_ms=0))
    assert result.code == ErrorCode.OK, result.message
    assert ctl.model.process("web-1", "svc").desired == desired
    [sent] = fake.of_type(cls)
    assert sent.target == "" and sent.name == "svc"


async def test_kill_with_another_signal_changes_nothing_and_needs_the_agent(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    for agent in ("web-1", "web-2"):
        ensure_token(ctl, Role.AGENT, agent)
        give_bundle(ctl, agent)
    await start_process(ctl, start_msg(target="web-*"))
    results = await control_process(ctl, ProcKill(target="web-*", name="svc", signal="HUP"))
    assert [(r.agent, r.code) for r in results] == [
        ("web-1", ErrorCode.OK), ("web-2", ErrorCode.AGENT_OFFLINE)]
    assert "cannot wait" in results[1].message
    for agent in ("web-1", "web-2"):
        assert ctl.model.process(agent, "svc").desired == DesiredState.RUNNING
    assert fake.of_type(ProcKill)[0].signal == "HUP"
    # SIGKILL by number is the same as no signal: it changes the desired state.
    await control_process(ctl, ProcKill(target="web-1", name="svc", signal="9"))
    assert ctl.model.process("web-1", "svc").desired == DesiredState.EXITED


async def test_control_offline_is_queued_and_errors_are_per_agent(ctl: Controller) -> None:
    ensure_token(ctl, Role.AGENT, "web-2")
    give_bundle(ctl, "web-2")
    await start_process(ctl, start_msg(target="web-2"))
    [result] = await control_process(ctl, ProcStop(target="web-2", name="svc"))
    assert (result.code, result.message) == (ErrorCode.OK, QUEUED)
    assert ctl.model.process("web-2", "svc").desired == DesiredState.STOPPED
    [result] = await control_process(ctl, ProcStop(target="web-2", name="nope"))
    assert result.code == ErrorCode.UNKNOWN_PROCESS
    with pytest.raises(InvalidRequest, match="unknown signal"):
        await control_process(ctl, ProcKill(target="web-2", name="svc", signal="SIGWOBBLE"))
    [result] = await control_process(ctl, ProcRemove(target="web-2", name="svc"))
    assert result.code == ErrorCode.OK
    assert ctl.model.find_process("web-2", "svc") is None


