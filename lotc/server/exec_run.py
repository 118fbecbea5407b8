"""`exec SELECTOR -- CMD`: one command run once on every matching agent (issue 20 item 1).

Each agent named runs EXEC_COMMAND and answers one EXEC_RESULT; the server passes
each on to the console. An agent that is offline, or of a release without "exec",
gets an answer from the server itself saying so: nothing is queued for later, as
an operator running a command wants it now or to know it did not run. At most
`parallel` agents run it at once. A server started with --no-exec refuses it.
"""
from __future__ import annotations

from dataclasses import replace

import trio

from lotc.errors import InvalidRequest, LotcError, wire_text
from lotc.server.command_context import CommandContext
from protocol.messages import ExecCommand, ExecResult, ExecRun

__all__ = ["EXEC_CAPABILITY", "MAX_OUTPUT", "exec_run"]

EXEC_CAPABILITY = "exec"  # lotc.agent.connection.CAPABILITIES
MAX_OUTPUT = 512 * 1024  # bytes kept of each stream per agent: 1 MiB an agent at most
MAX_TIMEOUT_MS = 24 * 3600 * 1000
ANSWER_MARGIN_S = 10.0  # beyond the command's timeout, for the agent's kill and answer


def _check(ctl: CommandContext, msg: ExecRun) -> None:
    if ctl.config.no_exec:
        raise InvalidRequest("exec is turned off on this server (it runs with --no-exec)")
    if not msg.argv or not msg.argv[0]:
        raise InvalidRequest("nothing to run: give the command after '--'")
    if not 1 <= msg.timeout_ms <= MAX_TIMEOUT_MS:
        raise InvalidRequest("the timeout must be from 1 ms to 24 h")


async def exec_run(ctl: CommandContext, msg: ExecRun) -> list[ExecResult]:
    """One result per agent `msg.target` names (UnknownAgent if none), in its order."""
    _check(ctl, msg)
    agents = ctl.resolve_targets(msg.target)
    limiter = trio.CapacityLimiter(msg.parallel or max(1, len(agents)))
    command = ExecCommand(argv=msg.argv, timeout_ms=msg.timeout_ms, user=msg.user,
                          max_output=MAX_OUTPUT)
    found: dict[str, ExecResult] = {}

    async def one(agent: str) -> None:
        async with limiter:
            found[agent] = await _ask(ctl, agent, command)

    async with trio.open_nursery() as nursery:
        for agent in agents:
            nursery.start_soon(one, agent)
    return [found[agent] for agent in agents]


async def _ask(ctl: CommandContext, agent: str, command: ExecCommand) -> ExecResult:
    session = ctl.session(agent)
    if session is None:
        return ExecResult(agent=agent, status="offline", exit_code=-1,
                          message="the agent is offline: not run")
    if EXEC_CAPABILITY not in session.hello.capabilities:
        return ExecResult(agent=agent, status="refused", exit_code=-1,
                          message="the agent is too old to run exec: not run")
    try:
        reply = await session.request(command, command.timeout_ms / 1000 + ANSWER_MARGIN_S)
    except LotcError as exc:
        return ExecResult(agent=agent, status="no answer", exit_code=-1,
                          message=wire_text(str(exc)))
    if not isinstance(reply.body, ExecResult):
        return ExecResult(agent=agent, status="no answer", exit_code=-1,
                          message=f"the agent answered {type(reply.body).__name__}")
    return replace(reply.body, agent=agent, message=wire_text(reply.body.message))
