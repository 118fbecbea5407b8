"""The console's commands, one small definition each (see base.py).

`build_registry()` gives the full table; the scripted console and the REPL
both use it, so help, parsing and completion read from one place.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from admin_console.registry import Registry

ALIASES = {"exit": "quit", "?": "help"}


def build_registry() -> Registry:
    # imported here, not at module level: registry.py imports commands.base, and
    # importing this package must not pull the whole table in behind it
    from admin_console.commands import (
        agent_detail,
        chores,
        labels,
        listing,
        meta,
        process,
        schedules,
        stats,
        streams,
        tokens,
        transfer,
        waiting,
    )
    from admin_console.registry import Registry

    return Registry([
        listing.AgentsCommand(), agent_detail.AgentCommand(), listing.PsCommand(),
        listing.BundlesCommand(), labels.LabelCommand(), labels.UnlabelCommand(),
        transfer.UploadCommand(), transfer.RemoveCommand(),
        process.StartCommand(), process.StopCommand(), process.ResumeCommand(),
        process.TerminateCommand(), process.KillCommand(), process.RestartCommand(),
        process.ScaleCommand(), chores.ExecConsoleCommand(),
        chores.RollbackCommand(),
        schedules.ScheduleCommand(), schedules.SchedulesCommand(), schedules.UnscheduleCommand(),
        stats.StatsCommand(), streams.LogsCommand(), streams.EventsCommand(),
        waiting.WaitCommand(), tokens.TokenCommand(), meta.HelpCommand(), meta.QuitCommand(),
    ], aliases=ALIASES)
