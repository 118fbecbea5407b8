"""`scale AGENT P N`: grow or shrink an instance set (instances.py), highest first.

Grown instances are copies of the set's lowest one under the next free indices;
the instances kept only have their count changed, under the same revision, so
reconcile does not restart them.
"""
from __future__ import annotations

import dataclasses

from lotc.errors import InvalidRequest, UnknownProcess
from lotc.names import validate_name
from lotc.options import MAX_INSTANCES, refused_options
from lotc.server.command_context import CommandContext
from lotc.server.fanout import fan_out
from lotc.server.instances import instance_name, members, with_count, with_instance
from lotc.server.processes import forget_process_schedules, start_message
from protocol.enums import DesiredState
from protocol.messages import AgentResult, ProcRemove, ScaleProcess

__all__ = ["scale_process"]


async def scale_process(ctl: CommandContext, msg: ScaleProcess) -> list[AgentResult]:
    validate_name("process", msg.name)
    if not 1 <= msg.instances <= MAX_INSTANCES:
        raise InvalidRequest(f"{msg.instances} instances: give 1 to {MAX_INSTANCES}")
    count = msg.instances
    targets = ctl.resolve_targets(msg.target)

    async def scale(agent: str) -> str:
        have = members(ctl, agent, msg.name)
        if not have:
            raise UnknownProcess(f"no instances of {msg.name!r} on {agent}: "
                                 f"start it with --instances first")
        template = have[min(have)]
        added, removed = [], []
        session = ctl.session(agent)
        refused = refused_options(template.options, session.hello.capabilities) \
            if session is not None and count > len(have) else ""
        if refused:
            raise InvalidRequest(f"{agent}: {refused}")
        for index in sorted(have, reverse=True):  # the highest first
            if index >= count:
                ctl.store.remove_process(agent, have[index].name)
                forget_process_schedules(ctl, agent, have[index].name)
                removed.append(have[index].name)
                if session is not None:
                    await session.request(ProcRemove(target="", name=have[index].name,
                                                     signal="", grace_ms=0),
                                          ctl.config.request_timeout_s)
        for index in range(count):
            spec = have.get(index)
            if spec is not None:  # kept: its count changes, not its revision (no restart)
                ctl.store.put_process(dataclasses.replace(
                    spec, options=with_count(spec.options, count)), keep_revision=True)
                continue
            spec = ctl.store.put_process(dataclasses.replace(
                template, name=instance_name(msg.name, index), revision=0,
                env=with_instance(template.env, index), desired=DesiredState.RUNNING,
                options=with_count(template.options, count), updated_us=ctl.now_us()))
            added.append(spec.name)
            if session is not None:
                await session.request(start_message(spec, session.hello.capabilities),
                                      ctl.config.request_timeout_s)
        words = [f"started {', '.join(added)}" if added else "",
                 f"removed {', '.join(removed)}" if removed else ""]
        said = "; ".join(w for w in words if w) or "no change"
        return f"{count} instances: {said}" + ("" if session is not None else
                                               " (agent offline: applied when it reconnects)")

    return await fan_out(targets, scale)
