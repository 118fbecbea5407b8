"""Instance sets: `start --instances N` and `scale AGENT P N` (issue 16, item 9).

The server expands a set into N ordinary processes P-0 ... P-(N-1), each with
LOTC_INSTANCE in its environment and the option instances=N in its record,
so every instance is a full process to the agent (own logs, liveness, restart
policy) and an agent of any release runs it. The set is nothing but those
records in the desired state (SQLite), so it survives server and agent
restarts; `scale` (scaling.py) adds the missing indices below N and removes
those at N and above, highest first.
"""
from __future__ import annotations

import dataclasses
import re

from lotc.names import validate_name
from lotc.options import canonical_options
from lotc.server.command_context import CommandContext
from lotc.server.records import ProcessSpecRecord
from protocol.messages import KeyValue, ProcStart, ProcStartOptions

__all__ = ["INSTANCE_ENV", "expand_instances", "members", "with_count", "with_instance"]

INSTANCE_ENV = "LOTC_INSTANCE"
INSTANCES = "instances"  # the lotc.options key


def instance_name(base: str, index: int) -> str:
    name = f"{base}-{index}"
    validate_name("process", name)
    return name


def with_instance(env: tuple[tuple[str, str], ...], index: int) -> tuple[tuple[str, str], ...]:
    return (*((k, v) for k, v in env if k != INSTANCE_ENV), (INSTANCE_ENV, str(index)))


def with_count(options: tuple[tuple[str, str], ...], count: int) -> tuple[tuple[str, str], ...]:
    return canonical_options((*((k, v) for k, v in options if k != INSTANCES),
                              (INSTANCES, str(count))))


def expand_instances(msg: ProcStart | ProcStartOptions) -> list[ProcStart | ProcStartOptions]:
    """One start per instance: [msg] itself when it asks for no instances."""
    options = {kv.key: kv.value for kv in getattr(msg, "options", ())}
    if INSTANCES not in options:
        return [msg]
    count = int(options[INSTANCES])
    env = tuple((kv.key, kv.value) for kv in msg.env)
    return [dataclasses.replace(
        msg, name=instance_name(msg.name, index),
        env=tuple(KeyValue(key=k, value=v) for k, v in with_instance(env, index)))
        for index in range(count)]


def members(ctl: CommandContext, agent: str, base: str) -> dict[int, ProcessSpecRecord]:
    """The set's instances on `agent`, by index."""
    pattern = re.compile(re.escape(base) + r"-(\d+)")
    found = {}
    for spec in ctl.store.processes(agent):
        match = pattern.fullmatch(spec.name)
        if match and any(key == INSTANCES for key, _ in spec.options):
            found[int(match[1])] = spec
    return found
