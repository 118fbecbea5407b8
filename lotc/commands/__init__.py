"""Subcommands of `lotc`, one module each."""
from __future__ import annotations

from types import ModuleType

from lotc.commands import (
    agent_cmd,
    build_agent_cmd,
    console_cmd,
    demo_cmd,
    deploy_cmd,
    dissector_cmd,
    server_cmd,
    token_cmd,
)

COMMANDS: list[ModuleType] = [server_cmd, agent_cmd, console_cmd, token_cmd, build_agent_cmd,
                             dissector_cmd, deploy_cmd, demo_cmd]
