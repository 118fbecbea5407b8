"""Process commands: record the desired state, then tell the agents that are online.

What each command makes the process become (`lotc.actions.CONTROLS`) is the
desired state the server reconciles toward after any disconnect. A kill with a
signal other than SIGKILL is only a signal (SIGHUP to reload, say): it changes
no desired state, so it needs the agent online.
"""
from __future__ import annotations

import dataclasses
import logging
import signal as signals
from collections.abc import Collection

from lotc import actions
from lotc.errors import (
    AgentOffline,
    Conflict,
    InvalidRequest,
    LotcError,
    RequestTimeout,
    SpawnFailed,
    UnknownBundle,
    UnknownProcess,
)
from lotc.limits import check_liveness_ms
from lotc.names import validate_name
from lotc.options import START_OPTIONS_CAPABILITY, agent_options, canonical_options, refused_options
from lotc.process_states import ALIVE
from lotc.server.command_context import CommandContext
from lotc.server.desired import signal_number
from lotc.server.fanout import fan_out
from lotc.server.instances import expand_instances
from lotc.server.records import ProcessSpecRecord
from protocol.enums import DesiredState
from protocol.messages import (
    AgentResult,
    KeyValue,
    ProcKill,
    ProcRemove,
    ProcRestart,
    ProcResume,
    ProcStart,
    ProcStartOptions,
    ProcStop,
    ProcTerminate,
)

logger = logging.getLogger(__name__)

ControlMessage = ProcStop | ProcResume | ProcTerminate | ProcKill | ProcRestart | ProcRemove

QUEUED = "agent offline: recorded, applied when it reconnects"


def forget_process_schedules(ctl: CommandContext, agent: str, process: str) -> None:
    """A removed process's schedules go with it (the agent drops its copies too)."""
    for record in ctl.store.schedules(agent):
        if record.process == process:
            ctl.store.remove_schedule(record.id)


def spec_from_message(agent: str, msg: ProcStart | ProcStartOptions,
                      now_us: int) -> ProcessSpecRecord:
    return ProcessSpecRecord(
        agent=agent, name=msg.name, bundle=msg.bundle, argv=tuple(msg.argv),
        env=tuple((kv.key, kv.value) for kv in msg.env), cwd=msg.cwd, restart=msg.restart,
        liveness_ms=msg.liveness_ms, grace_ms=msg.grace_ms, backoff_base_ms=msg.backoff_base_ms,
        backoff_cap_ms=msg.backoff_cap_ms, restart_limit=msg.restart_limit,
        restart_window_s=msg.restart_window_s, desired=DesiredState.RUNNING, revision=0,
        updated_us=now_us,
        options=canonical_options((kv.key, kv.value) for kv in getattr(msg, "options", ())),
    )


def start_message(spec: ProcessSpecRecord,
                  capabilities: Collection[str] = ()) -> ProcStart | ProcStartOptions:
    """PROC_START_OPTIONS when the spec has options and the agent announced it can take
    them; otherwise plain PROC_START (what agents of release 1 understand)."""
    plain = ProcStart(
        target="", name=spec.name, bundle=spec.bundle, revision=spec.revision,
        argv=tuple(spec.argv), env=tuple(KeyValue(key=k, value=v) for k, v in spec.env),
        cwd=spec.cwd, restart=spec.restart, liveness_ms=spec.liveness_ms, grace_ms=spec.grace_ms,
        backoff_base_ms=spec.backoff_base_ms, backoff_cap_ms=spec.backoff_cap_ms,
        restart_limit=spec.restart_limit, restart_window_s=spec.restart_window_s,
    )
    options = agent_options(spec.options)
    if not options or START_OPTIONS_CAPABILITY not in capabilities:
        return plain
    return ProcStartOptions(
        **{f.name: getattr(plain, f.name) for f in dataclasses.fields(plain)},
        options=tuple(KeyValue(key=k, value=v) for k, v in options),
    )


def unapplied_options(spec: ProcessSpecRecord, capabilities: Collection[str]) -> str:
    """What an agent without "start-options" runs without, in plain words ("" when none)."""
    options = agent_options(spec.options)
    if not options or START_OPTIONS_CAPABILITY in capabilities:
        return ""
    keys = ", ".join(f"--{key}" for key, _ in options)
    return f"; this agent's LOTC is too old for {keys}: not applied (upgrade the agent)"


def _is_active(ctl: CommandContext, agent: str, name: str) -> bool:
    for status in ctl.store.process_statuses(agent):
        if status.name == name:
            return status.state in ALIVE
    return False


async def start_process(ctl: CommandContext,
                        msg: ProcStart | ProcStartOptions) -> list[AgentResult]:
    validate_name("process", msg.name)
    validate_name("bundle", msg.bundle)
    check_liveness_ms(msg.liveness_ms)
    canonical_options((kv.key, kv.value) for kv in getattr(msg, "options", ()))
    if not msg.argv:
        raise InvalidRequest("nothing to run: give the command after '--'")
    instances = expand_instances(msg)
    targets = ctl.resolve_targets(msg.target)

    async def start(agent: str) -> str:
        if not any(b.name == msg.bundle for b in ctl.store.desired_bundles(agent)):
            raise UnknownBundle(f"bundle {msg.bundle!r} is not loaded on {agent}: upload it first")
        if len(instances) == 1:
            return await start_one(ctl, agent, instances[0])
        done = [f"{one.name}: {await start_one(ctl, agent, one)}" for one in instances]
        return "; ".join(done)

    return await fan_out(targets, start)


async def start_one(ctl: CommandContext, agent: str, msg: ProcStart | ProcStartOptions) -> str:
    """Start one process on one agent (its bundle is known to be there)."""
    session = ctl.session(agent)
    if session is not None:  # offline: reconcile checks when it reconnects
        refused = refused_options(((kv.key, kv.value) for kv in getattr(msg, "options", ())),
                                  session.hello.capabilities)
        if refused:
            raise InvalidRequest(f"{agent}: {refused}")
    previous = ctl.store.find_process(agent, msg.name)
    if previous is not None and previous.desired != DesiredState.EXITED \
            and _is_active(ctl, agent, msg.name):
        raise Conflict(f"process {msg.name!r} already runs on {agent}: terminate it first")
    spec = ctl.store.put_process(spec_from_message(agent, msg, ctl.now_us()))
    session = ctl.session(agent)
    if session is None:
        return QUEUED
    try:
        capabilities = session.hello.capabilities
        reply = await session.request(start_message(spec, capabilities),
                                      ctl.config.request_timeout_s)
    except (AgentOffline, RequestTimeout):
        # No verdict from the agent: it may have started it. Keep the desired state;
        # the next reconnect reconciles either way.
        return "no answer from the agent yet: recorded, reconciled when it reports"
    except SpawnFailed:
        # The agent keeps the record, failed, with its error (and after its restart):
        # so does the model, as ended, so nothing retries it and `ps` shows why.
        ctl.store.set_desired_state(agent, msg.name, DesiredState.EXITED, ctl.now_us())
        raise
    except LotcError:
        _forget_failed_start(ctl, agent, msg.name, previous)
        raise
    return ((getattr(reply.body, "message", "") or "started")
            + unapplied_options(spec, capabilities))


def _forget_failed_start(
    ctl: CommandContext, agent: str, name: str, previous: ProcessSpecRecord | None
) -> None:
    """The agent refused the start before making a record of it (unknown bundle, bad
    request...): do not keep retrying it forever."""
    if previous is None:
        ctl.store.remove_process(agent, name)
    else:
        # Same revision as before: the agent still runs `previous`, which is not stale.
        ctl.store.put_process(previous, keep_revision=True)


async def control_process(ctl: CommandContext, msg: ControlMessage) -> list[AgentResult]:
    validate_name("process", msg.name)
    control_row = actions.for_message(msg)
    number = signal_number(msg.signal) if isinstance(msg, ProcKill) else signals.SIGKILL
    targets = ctl.resolve_targets(msg.target)
    desired = control_row.desired_after(number)
    changes_desired = control_row.verb is actions.Verb.REMOVE or desired is not None

    async def control(agent: str) -> str:
        if ctl.store.find_process(agent, msg.name) is None:
            raise UnknownProcess(f"no process {msg.name!r} on {agent}")
        if isinstance(msg, ProcRemove):
            ctl.store.remove_process(agent, msg.name)
            forget_process_schedules(ctl, agent, msg.name)
        elif desired is not None:
            # stamped, so an end event older than this command cannot undo it
            ctl.store.set_desired_state(agent, msg.name, desired, ctl.now_us())
        session = ctl.session(agent)
        if session is None:
            if not changes_desired:
                raise AgentOffline(f"agent {agent} is offline: a signal cannot wait for it")
            return QUEUED
        forwarded = type(msg)(target="", name=msg.name, signal=msg.signal, grace_ms=msg.grace_ms)
        reply = await session.request(forwarded, ctl.config.request_timeout_s)
        return getattr(reply.body, "message", "") or "done"

    return await fan_out(targets, control)
