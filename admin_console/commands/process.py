"""Process commands: start, stop, resume, terminate, kill, restart.

Each records what the admin wants on the server (desired state, kept through
disconnects) and is answered with one result per agent.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from admin_console.bounds import agent_selector, milliseconds, utf8_text, wire_max
from admin_console.commands.base import Context
from admin_console.commands.results import ResultsCommand, request_results
from admin_console.errors import UsageError
from admin_console.parsing import (
    CommandParser,
    check_name,
    parse_env,
    signal_name,
)
from lotc.errors import InvalidRequest
from lotc.limits import MIN_LIVENESS_MS
from lotc.options import OPTIONS
from protocol.enums import RestartPolicy
from protocol.message_types import MessageType
from protocol.messages import (
    AgentResult,
    KeyValue,
    ProcKill,
    ProcRestart,
    ProcResume,
    ProcStart,
    ProcStartOptions,
    ProcStop,
    ProcTerminate,
    RollingRestart,
    ScaleProcess,
)

# Defaults of the restart policy the console does not (yet) expose as options.
BACKOFF_BASE_MS = 500
BACKOFF_CAP_MS = 30_000
RESTART_LIMIT = 5
RESTART_WINDOW_S = 60
MAX_ARGUMENTS = wire_max(MessageType.PROC_START, "argv")
RESTART_CHOICES = {enum.name.lower().replace("_", "-"): enum for enum in RestartPolicy}


DEFAULT_HEALTHY_DEADLINE_MS = 30_000
ROLL_WAIT_S = 24 * 3600.0  # a roll takes as long as its batches do: the server bounds each


def process_option(key: str) -> Callable[[str], str]:
    """Checked here by lotc.options (exit 2 before sending), sent in canonical text."""
    def parse(text: str) -> str:
        try:
            return str(OPTIONS[key].parse(text))
        except InvalidRequest as exc:
            raise UsageError(f"--{key}: {exc}") from None
    return parse


def _dest(key: str) -> str:
    return "option_" + key.replace("-", "_")


class StartCommand(ResultsCommand):
    """Start a process from BUNDLE on AGENT; the command line follows '--'.

    The process is named after the bundle unless --name says otherwise, runs
    in the bundle's directory (or --cwd inside it) and is restarted by its
    policy (--restart, default on-failure) with exponential backoff. With
    --liveness SECONDS it must send WATCHDOG=1 (sd_notify) at least that
    often or be restarted: at least 100ms, at most 49 days, 0 (the default)
    for no watchdog. --grace is how long terminate waits before SIGKILL.
    --log-size (4K to 1T, e.g. 10M) is the size at which each of its log
    files rotates, --log-keep how many rotated copies are kept (agent
    defaults: 10M and 5).
    --user NAME[:GROUP] runs it as that user (the agent must run as root, and
    the user must be able to read the bundle); HOME, USER and LOGNAME are set.
    --nofile N is its limit of open files. --env-file FILE reads KEY=VALUE
    lines (# comments) from FILE inside the bundle; --env wins over it.
    Environment values are never shown in ps, events or logs (only with
    `ps AGENT P --show-env`). --instances N starts P-0 ... P-(N-1), each with
    LOTC_INSTANCE set; `scale AGENT P N` changes N later.
    --memory SIZE (e.g. 256M), --cpus N (0.5 is half a CPU) and --max-pids N
    are enforced by the process's own cgroup, which also holds every child it
    forks (terminate, kill and restart end them all; stop freezes them all).
    An agent whose node cannot enforce a limit refuses the start and names
    the missing controller (`agent AGENT` shows the node's cgroups).
    --check http://HOST:PORT/PATH (2xx/3xx healthy), tcp:PORT (connects) or
    exec:"CMD ARGS" (exits 0) is probed every --check-interval (5s) within
    --check-timeout (1s); ps shows starting, healthy or unhealthy; the first
    pass makes it ready; --check-failures (3) in a row make it unhealthy and
    restart it by its policy (never: it stays, unhealthy); before its first
    pass, failures count only after --check-grace (10s) since its start.
    Offline agents start it when they reconnect.

    Examples:
      start all web -- ./web --port 8080
      start node-1 tool --name nightly --restart never -- python3 tool.py --full
      start web-* web --liveness 10 --env MODE=prod -- ./web
      start node-1 web --user www-data --env-file prod.env --instances 2 -- ./web
      start node-1 web --memory 256M --cpus 0.5 --max-pids 64 -- ./web
      start node-1 web --check http://127.0.0.1:8080/healthz --check-interval 2s -- ./web
    """

    name = "start"
    usage = ("start AGENT BUNDLE [--name P] [--restart always|on-failure|never] "
             "[--liveness SECONDS] [--env K=V]... [--cwd DIR] [--grace S] [--log-size 10M] "
             "[--log-keep 5] [--user U[:G]] [--nofile N] [--env-file FILE] [--instances N] "
             "[--memory SIZE] [--cpus N] [--max-pids N] [--check CHECK] [--check-interval 5s] "
             "[--check-timeout 1s] [--check-failures 3] [--check-grace 10s] -- ARGS...")
    arguments = ("agent", "bundle")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)
        parser.add_argument("bundle")
        parser.add_argument("--name")
        parser.add_argument("--restart", choices=sorted(RESTART_CHOICES), default="on-failure")
        parser.add_argument("--liveness", default=0, type=milliseconds(
            "--liveness", MessageType.PROC_START, "liveness_ms", minimum_ms=MIN_LIVENESS_MS,
            zero_means="turns the watchdog off"))
        parser.add_argument("--env", action="append", type=parse_env, default=[])
        parser.add_argument("--cwd", default="",
                            type=utf8_text("--cwd", MessageType.PROC_START, "cwd"))
        parser.add_argument("--grace", default=0, type=milliseconds(
            "--grace", MessageType.PROC_START, "grace_ms", zero_means="keeps the default"))
        for key in OPTIONS:  # each row of lotc.options is a flag: --log-size, --log-keep...
            parser.add_argument(f"--{key}", dest=_dest(key), type=process_option(key))

    def parse(self, argv: Sequence[str]) -> ProcStart | ProcStartOptions:
        words = list(argv)
        if "--" not in words:
            raise UsageError("nothing to run: give the command line after '--'", self.usage)
        split = words.index("--")
        command_line = words[split + 1:]
        if not command_line:
            raise UsageError("nothing to run: the command line after '--' is empty", self.usage)
        if len(command_line) > MAX_ARGUMENTS:
            raise UsageError(f"the command line has {len(command_line)} words: "
                             f"at most {MAX_ARGUMENTS}", self.usage)
        args: argparse.Namespace = self.parser.parse(words[:split])
        bundle = check_name("bundle", args.bundle)
        options = tuple(KeyValue(key=key, value=getattr(args, _dest(key)))
                        for key in OPTIONS if getattr(args, _dest(key)) is not None)
        message = ProcStartOptions if options else ProcStart  # a server of release 1 knows
        extra = {"options": options} if options else {}       # only PROC_START
        return message(
            target=args.agent, name=check_name("process", args.name or bundle), bundle=bundle,
            revision=0, argv=tuple(command_line),
            env=tuple(KeyValue(key=k, value=v) for k, v in args.env), cwd=args.cwd,
            restart=RESTART_CHOICES[args.restart], liveness_ms=args.liveness,
            grace_ms=args.grace, backoff_base_ms=BACKOFF_BASE_MS,
            backoff_cap_ms=BACKOFF_CAP_MS, restart_limit=RESTART_LIMIT,
            restart_window_s=RESTART_WINDOW_S, **extra,
        )


class ControlCommand(ResultsCommand):
    """Shared by the commands that act on one named process: AGENT P."""

    arguments = ("agent", "process")
    message: ClassVar[type]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)
        parser.add_argument("process")

    def parse(self, argv: Sequence[str]) -> Any:
        args: argparse.Namespace = self.parser.parse(argv)
        return self.message(target=args.agent, name=check_name("process", args.process),
                            signal=self.signal(args), grace_ms=self.grace_ms(args))

    def signal(self, args: argparse.Namespace) -> str:
        return ""

    def grace_ms(self, args: argparse.Namespace) -> int:
        return 0


class StopCommand(ControlCommand):
    """Suspend process P and every process it started; its watchdog pauses.

    The whole tree is frozen at once through its cgroup (cgroup.freeze or the
    v1 freezer), children that left its process group too; on a node without
    a freezer it gets SIGSTOP to its process group. The reply says which. It
    stays in memory, frozen, until resume. To end it, use terminate
    (SIGTERM, then SIGKILL) or kill.

    Examples:
      stop node-1 web
      stop all web
    """

    name = "stop"
    usage = "stop AGENT P"
    message = ProcStop


class ResumeCommand(ControlCommand):
    """Resume a suspended process P: thaw its cgroup (or SIGCONT its group).

    Examples:
      resume node-1 web
    """

    name = "resume"
    usage = "resume AGENT P"
    message = ProcResume


class TerminateCommand(ControlCommand):
    """Terminate process P: SIGTERM, then SIGKILL after the grace period. It stays down.

    --grace overrides the grace period given at start.

    Examples:
      terminate node-1 web
      terminate all web --grace 30
    """

    name = "terminate"
    usage = "terminate AGENT P [--grace S]"
    message = ProcTerminate

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--grace", default=0, type=milliseconds(
            "--grace", MessageType.PROC_TERMINATE, "grace_ms",
            zero_means="keeps the grace given at start"))

    def grace_ms(self, args: argparse.Namespace) -> int:
        return int(args.grace)


class KillCommand(ControlCommand):
    """Send SIGKILL (or --signal SIG) to process P and every process it started.

    They are the members of its cgroup (children that left its process group
    too; SIGKILL goes through cgroup.kill), or its process group on a node
    without cgroups; the reply says which. SIGKILL ends the
    process and it stays down; any other signal (HUP to reload, USR1...) is
    only delivered and needs the agent online. To end a process gently, use
    terminate; stop only suspends it.

    Examples:
      kill node-1 web
      kill all web --signal HUP
    """

    name = "kill"
    usage = "kill AGENT P [--signal SIG]"
    message = ProcKill

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--signal", type=signal_name, default="SIGKILL")

    def signal(self, args: argparse.Namespace) -> str:
        return str(args.signal)


class RestartCommand(ControlCommand):
    """Restart process P: terminate it (with its grace period), then start it again.

    With --rolling the agents AGENT names are restarted in batches of
    --max-unavailable (default 1): the next batch starts only when every
    process of the last one is ready (its first --check passed or it sent
    READY=1; without a check, once it runs), and a batch not ready within
    --healthy-deadline (default 30s) stops the roll. The report names the
    agents done, the one that failed and those not touched.

    Examples:
      restart node-1 web
      restart web-* web --rolling --max-unavailable 2 --healthy-deadline 1m
    """

    name = "restart"
    usage = ("restart AGENT P [--rolling [--max-unavailable N] [--healthy-deadline 30s]]")
    message = ProcRestart

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--rolling", action="store_true")
        parser.add_argument("--max-unavailable", type=int)
        parser.add_argument("--healthy-deadline", type=milliseconds(
            "--healthy-deadline", MessageType.ROLLING_RESTART, "healthy_deadline_ms",
            zero_means="is not allowed"))

    def parse(self, argv: Sequence[str]) -> Any:
        args: argparse.Namespace = self.parser.parse(argv)
        name = check_name("process", args.process)
        if not args.rolling:
            if args.max_unavailable is not None or args.healthy_deadline is not None:
                raise UsageError("--max-unavailable and --healthy-deadline go with --rolling",
                                 self.usage)
            return ProcRestart(target=args.agent, name=name)
        unavailable = 1 if args.max_unavailable is None else args.max_unavailable
        if not 1 <= unavailable <= 0xFFFF:
            raise UsageError("--max-unavailable is a number of agents from 1", self.usage)
        deadline = args.healthy_deadline or DEFAULT_HEALTHY_DEADLINE_MS
        return RollingRestart(target=args.agent, name=name, max_unavailable=unavailable,
                              healthy_deadline_ms=deadline)

    async def execute(self, ctx: Context, parsed: Any) -> tuple[AgentResult, ...]:
        if not isinstance(parsed, RollingRestart):
            return await super().execute(ctx, parsed)
        return await request_results(ctx.require_client(), parsed, ROLL_WAIT_S)


class ScaleCommand(ResultsCommand):
    """Grow or shrink the instance set P (started with --instances) to N instances.

    New instances copy P-0's options under the next indices; shrinking removes
    the highest instances first (terminated and forgotten). The set is kept by
    the server, so an agent offline now is brought to N when it reconnects.

    Examples:
      scale node-1 web 4
      scale all web 1
    """

    name = "scale"
    usage = "scale AGENT P N"
    arguments = ("agent", "process", "word")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)
        parser.add_argument("process")
        parser.add_argument("instances", type=process_option("instances"))

    def parse(self, argv: Sequence[str]) -> ScaleProcess:
        args: argparse.Namespace = self.parser.parse(argv)
        return ScaleProcess(target=args.agent, name=check_name("process", args.process),
                         instances=int(args.instances))
