"""What a managed process is: its spec (what to run), its record (how it is doing), its info.

How a spec runs (documented here because operators write specs):

* The working directory is the bundle's directory (`cwd` may name a
  sub-directory, which must stay inside the bundle). When the bundle resolves
  to a single file, the directory holding it.
* `argv` is executed as given, without a shell. A program name without a '/'
  is looked up on PATH as usual (`["python3", "main.py"]`, `["sh", "run.sh"]`);
  one with a '/' is relative to the working directory (`["./run.sh"]`).
* The environment is the agent's minus what is the agent's own (every
  `LOTC_*` variable, such as `LOTC_TOKEN`; systemd's `NOTIFY_SOCKET`,
  `WATCHDOG_*`, `LISTEN_*`, `JOURNAL_STREAM`, `INVOCATION_ID`; `PWD`,
  `OLDPWD`), then the `env_file`'s variables, then `env` on top, then with
  `user` its `HOME`, `USER` and `LOGNAME`, then LOTC's own: `PWD` (the working
  directory), `LOTC_PROCESS` (the name), `LOTC_BUNDLE` (the bundle path),
  `NOTIFY_SOCKET` and, with a liveness timeout, `WATCHDOG_USEC` (see
  lotc/liveness.py).
* Each run uses the bundle version that was current when it was spawned, and
  that version stays on disk until the run ends, whatever is uploaded meanwhile
  (`bundle_path` names it); the next run uses the version current then.
* stdin is /dev/null; stdout and stderr go to the process's log files.
"""
from __future__ import annotations

import logging
import math
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from lotc.agent.cgroup import Limits, ProcessCgroup
from lotc.agent.lifecycle import ProcessEvent
from lotc.agent.logs import LogConfig
from lotc.agent.pipe import PipeRecord
from lotc.agent.restart import RestartBudget
from lotc.errors import InvalidRequest
from lotc.names import validate_name
from lotc.options import cpu_milli
from protocol.enums import DesiredState, ProcessState, RestartPolicy, StreamKind

__all__ = ["ProcessInfo", "ProcessRecord", "ProcessSpec", "budget_for"]

logger = logging.getLogger(__name__)


def _check_duration(label: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise InvalidRequest(f"{label} must be a number of seconds >= 0, not {value!r}")


def _check_cwd(cwd: str) -> None:
    if cwd.startswith("/") or "\0" in cwd:
        raise InvalidRequest(f"cwd {cwd!r} must be relative to the bundle")
    if cwd and posixpath.normpath(cwd).split("/")[0] == "..":
        raise InvalidRequest(f"cwd {cwd!r} leaves the bundle")


@dataclass(frozen=True)
class ProcessSpec:
    """What to run. Times are in seconds. Validated on construction (InvalidRequest)."""

    name: str
    bundle: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = ""  # relative to the bundle directory
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    liveness_timeout: float = 0.0  # 0: no watchdog
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    restart_limit: int = 5  # restarts allowed within restart_window; 0: no limit
    restart_window: float = 60.0
    grace: float = 10.0  # terminate: SIGTERM, then SIGKILL after this long
    stable_after: float = 10.0  # a run this long resets the backoff
    revision: int = 0  # the server's revision of this spec, echoed in reports
    log_size: int = 0  # bytes a log file may hold before it rotates; 0: the agent's default
    log_keep: int = -1  # rotated copies kept; -1: the agent's default
    # issue 16, applied by lotc/agent/identity.py (checked by lotc/options.py):
    nofile: int = 0  # RLIMIT_NOFILE of the child; 0: the agent's own
    user: str = ""  # "NAME" or "NAME:GROUP" to run as; "": the agent's user
    env_file: str = ""  # KEY=VALUE file inside the bundle, under `env`; "": none
    # issue 16 limits, written to the process's cgroup (lotc/agent/cgroup.py); 0/"": none
    memory: int = 0  # bytes
    cpus: str = ""  # canonical CPUs ("0.5"), see lotc.options.cpu_milli
    max_pids: int = 0
    # issue 17 health check, run by lotc/agent/health.py; "": none
    check: str = ""  # canonical text (lotc.health_checks)
    check_interval: float = 5.0
    check_timeout: float = 1.0
    check_failures: int = 3  # failures in a row that make it unhealthy (and restart it)
    check_grace: float = 10.0  # after a start, failures do not count this long (start-up)

    def __post_init__(self) -> None:
        validate_name("process", self.name)
        validate_name("bundle", self.bundle)
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "env", dict(self.env))
        object.__setattr__(self, "restart", RestartPolicy(self.restart))
        if not self.argv or not self.argv[0]:
            raise InvalidRequest(f"process {self.name!r}: the command line is empty")
        if not all(isinstance(a, str) and "\0" not in a for a in self.argv):
            raise InvalidRequest(f"process {self.name!r}: arguments must be text without NUL")
        for key, value in self.env.items():
            if not key or "=" in key or "\0" in key or "\0" in str(value):
                raise InvalidRequest(f"process {self.name!r}: bad environment variable {key!r}")
        _check_cwd(self.cwd)
        for label in ("liveness_timeout", "backoff_base", "backoff_cap", "restart_window",
                      "grace", "stable_after"):
            _check_duration(label, getattr(self, label))
        if not isinstance(self.restart_limit, int) or self.restart_limit < 0:
            raise InvalidRequest(f"restart_limit must be an integer >= 0, "
                                 f"not {self.restart_limit!r}")
        if not isinstance(self.log_size, int) or self.log_size < 0:
            raise InvalidRequest(f"log_size must be a number of bytes >= 0, not {self.log_size!r}")
        if not isinstance(self.log_keep, int) or self.log_keep < -1:
            raise InvalidRequest(f"log_keep must be a count >= 0, not {self.log_keep!r}")
        for label in ("nofile", "memory", "max_pids"):
            if not isinstance(getattr(self, label), int) or getattr(self, label) < 0:
                raise InvalidRequest(f"{label} must be a count >= 0, "
                                     f"not {getattr(self, label)!r}")

    def limits(self) -> Limits:
        return Limits(self.memory, cpu_milli(self.cpus), self.max_pids)

    def log_config(self, default: LogConfig) -> LogConfig:
        """The agent's log settings with this spec's own on top."""
        return replace(default, max_bytes=self.log_size or default.max_bytes,
                       backups=default.backups if self.log_keep < 0 else self.log_keep)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name, "bundle": self.bundle, "argv": list(self.argv),
            "env": dict(self.env), "cwd": self.cwd, "restart": self.restart.name,
            "liveness_timeout": self.liveness_timeout, "backoff_base": self.backoff_base,
            "backoff_cap": self.backoff_cap, "restart_limit": self.restart_limit,
            "restart_window": self.restart_window, "grace": self.grace,
            "stable_after": self.stable_after, "revision": self.revision,
            "log_size": self.log_size, "log_keep": self.log_keep,
            "nofile": self.nofile, "user": self.user, "env_file": self.env_file,
            "memory": self.memory, "cpus": self.cpus, "max_pids": self.max_pids,
            "check": self.check, "check_interval": self.check_interval,
            "check_timeout": self.check_timeout, "check_failures": self.check_failures,
            "check_grace": self.check_grace,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ProcessSpec:
        values = dict(data)
        values["restart"] = RestartPolicy[str(values["restart"])]
        return cls(**values)  # type: ignore[arg-type]


def budget_for(spec: ProcessSpec) -> RestartBudget:
    return RestartBudget(spec.restart_limit, spec.restart_window, spec.stable_after)


@dataclass(frozen=True)
class ProcessInfo:
    """A snapshot of one process for `ps`, reports and reconciliation."""

    name: str
    bundle: str
    state: ProcessState
    desired: DesiredState
    pid: int | None
    exit_code: int | None
    exit_signal: int | None
    restarts: int
    started_at: int  # UTC microseconds of the current (or last) run's start, 0 if none
    last_liveness: int  # UTC microseconds of the last notify datagram, 0 if none
    status: str  # last STATUS= text
    ready: bool  # READY=1 seen during the current run
    spec: ProcessSpec
    bundle_path: str = ""  # the bundle version's directory the current (or last) run uses
    oom_kills: int = 0  # runs the kernel ended for the memory limit
    health: str = ""  # starting, healthy, unhealthy; "": no check (agent/health.py)
    health_why: str = ""  # the last probe's words


@dataclass(eq=False)
class ProcessRecord:
    """The supervisor's mutable record of one process, across its runs.

    Only the supervisor (supervisor.py, runner.py) mutates it, from the trio
    thread; everything else sees `info()` snapshots.
    """

    spec: ProcessSpec
    notify_address: str  # '@...' abstract socket name, kept across runs and agent restarts
    budget: RestartBudget
    state: ProcessState = ProcessState.NONE
    desired: DesiredState = DesiredState.RUNNING
    pid: int | None = None
    create_time: float = 0.0  # psutil create_time of pid: tells our process from a reused pid
    start_ticks: int | None = None  # the same on the boot clock (spawn.start_ticks); None in
    # records of earlier agents, which then compare create_time
    log_pipes: dict[StreamKind, PipeRecord] = field(default_factory=dict)  # see pipe.py
    exit_code: int | None = None
    exit_signal: int | None = None
    restarts: int = 0
    started_at: int = 0
    started_mono: float = 0.0  # trio clock at spawn, for the stable-run rule
    last_liveness: int = 0
    status: str = ""
    ready: bool = False
    deadline: float = math.inf  # trio clock time of the next liveness deadline
    liveness_timeout: float = 0.0  # current run's timeout (WATCHDOG_USEC= may change it)
    liveness_missed: bool = False  # the current run was killed by the watchdog
    pending_signals: list[int] = field(default_factory=list)  # asked for before the pid existed
    changed: trio.Event = field(default_factory=trio.Event)  # set and replaced on every change
    resumed: trio.Event = field(default_factory=trio.Event)  # set and replaced on resume
    poke: trio.Event = field(default_factory=trio.Event)  # deadline moved earlier: re-check
    wake: trio.Event = field(default_factory=trio.Event)  # cuts a backoff delay short
    runner_done: trio.Event | None = None  # set when the record's runner task has ended
    bundle_path: str = ""  # the version directory of the current (or last) run
    holds_bundle: bool = False  # the current run holds that version (store.acquire/hold)
    cgroup: ProcessCgroup | None = None  # None: the node has none (see cgroup_layout.py)
    oom_kills: int = 0  # runs the kernel ended for the memory limit, over all runs
    oom_base: int = 0  # the cgroup's oom_kill count when the current run started
    health: str = ""  # of the current run with a check (agent/health.py); "": no check
    health_why: str = ""  # the last probe's words
    health_failed: bool = False  # the current run was killed for failing its checks
    run_dir: str = ""  # the current run's working directory (exec checks run there)

    def notify_changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    @staticmethod
    def _fire(event: trio.Event) -> trio.Event:
        event.set()
        return trio.Event()

    def poke_watchdog(self) -> None:
        self.poke = self._fire(self.poke)

    def fire_resumed(self) -> None:
        self.resumed = self._fire(self.resumed)

    def wake_backoff(self) -> None:
        self.wake = self._fire(self.wake)

    def forget_history(self) -> None:
        """A restart on request starts afresh: no crash count, no old status or exit."""
        self.budget.reset()
        self.restarts = 0
        self.status = ""
        self.exit_code = self.exit_signal = None

    def to_json(self) -> dict[str, object]:
        return {
            "spec": self.spec.to_json(), "notify_address": self.notify_address,
            "state": self.state.name, "desired": self.desired.name, "pid": self.pid,
            "create_time": self.create_time, "start_ticks": self.start_ticks,
            "exit_code": self.exit_code,
            "exit_signal": self.exit_signal, "restarts": self.restarts,
            "started_at": self.started_at, "status": self.status,
            "bundle_path": self.bundle_path, "oom_kills": self.oom_kills,
            "log_pipes": {stream.name: list(saved) for stream, saved in self.log_pipes.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> tuple[ProcessRecord, ProcessState]:
        """A record in state NONE, and the state it was saved in."""
        spec = ProcessSpec.from_json(data["spec"])
        rec = cls(spec=spec, notify_address=str(data["notify_address"]),
                  budget=budget_for(spec))
        rec.desired = DesiredState[data["desired"]]
        rec.pid = data.get("pid")
        rec.create_time = float(data.get("create_time") or 0.0)
        ticks = data.get("start_ticks")
        rec.start_ticks = None if ticks is None else int(ticks)
        rec.exit_code = data.get("exit_code")
        rec.exit_signal = data.get("exit_signal")
        rec.restarts = int(data.get("restarts") or 0)
        rec.started_at = int(data.get("started_at") or 0)
        rec.status = str(data.get("status") or "")
        rec.bundle_path = str(data.get("bundle_path") or "")
        rec.oom_kills = int(data.get("oom_kills") or 0)
        rec.log_pipes = {StreamKind[stream]: (int(saved[0]), int(saved[1]))
                         for stream, saved in (data.get("log_pipes") or {}).items()}
        return rec, ProcessState[data["state"]]

    def info(self) -> ProcessInfo:
        return ProcessInfo(
            name=self.spec.name, bundle=self.spec.bundle, state=self.state,
            desired=self.desired, pid=self.pid, exit_code=self.exit_code,
            exit_signal=self.exit_signal, restarts=self.restarts, started_at=self.started_at,
            last_liveness=self.last_liveness, status=self.status, ready=self.ready,
            spec=self.spec, bundle_path=self.bundle_path, oom_kills=self.oom_kills,
            health=self.health, health_why=self.health_why,
        )

    def event(self, old: ProcessState, reason: str, *, time_us: int,
              with_exit: bool = False) -> ProcessEvent:
        return ProcessEvent(
            time_us=time_us, process=self.spec.name, old_state=old, new_state=self.state,
            reason=reason, exit_code=self.exit_code if with_exit else None,
            signal=self.exit_signal if with_exit else None,
        )
