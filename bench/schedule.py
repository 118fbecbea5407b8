"""Schedule firing precision on the NTP-corrected clock, across several agents.

    .venv/bin/python -m bench.schedule [--agents 5] [--rounds 5] [--offset 3.0]

A local SNTP responder (lotc.sntp) runs deliberately `--offset` seconds ahead
of the system clock, on 127.0.0.1 and ::1. Each agent is a separate Python
process (this interpreter) with its own CorrectedClock, TimeSync (syncing
against the responder, agents alternating IPv4/IPv6) and Scheduler; all are
given the same one-shot `at` schedules, one per round, a couple of seconds
apart, in the responder's time. The action is a no-op that records the time:
this measures the scheduler, not process start-up (bench.agent does that).

Reported per fire:
* error vs the NTP-corrected target: the agent's corrected clock when the
  action started, minus the target (what the scheduler controls; goal < 10 ms);
* error vs true server time: the system clock at the fire plus the responder's
  known offset, minus the target (adds each agent's sync error);
* spread: per round, latest minus earliest true fire time across agents.
Peer: systemd timers fire within AccuracySec, 1 minute by default.
Bounded: every wait has a deadline; the whole run takes about 15 s.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from lotc.agent.clock import CorrectedClock
from lotc.agent.scheduler import Scheduler, ScheduleSpec
from lotc.agent.timesync import TimeSync
from lotc.sntp import serve_sntp
from protocol.enums import Action, EventKind, ScheduleKind

US = 1_000_000
SYNC_TIMEOUT_S = 5.0  # an agent must sync within this
LEAD_S = 3.0  # first fire this far ahead: room for the agents to start and sync
SPACING_S = 2.0  # between rounds
WORKER_SLACK_S = 10.0  # beyond the last target before a worker gives up
TARGET_MS = 10.0


@dataclass(frozen=True)
class Fire:
    agent: int
    round: int
    target_us: int
    corrected_error_us: int  # scheduler's own view: corrected clock at fire - target
    true_error_us: int  # system clock + known server offset - target
    offset_error_us: int  # measured offset - true offset


# ---------------------------------------------------------------- worker (one agent)

async def _worker(ntp: str, targets: list[int], true_offset_us: int) -> None:
    clock = CorrectedClock()
    local_at_fire: dict[int, int] = {}
    done = trio.Event()
    fired: list[tuple[int, int]] = []

    async def fire(spec: ScheduleSpec) -> None:
        local_at_fire[spec.id] = time.time_ns() // 1000

    def on_event(info: object) -> None:
        if getattr(info, "kind", None) == EventKind.SCHEDULE_FIRED:
            fired.append((info.schedule_id, info.error_us))  # type: ignore[attr-defined]
            if len(fired) == len(targets):
                done.set()

    with tempfile.TemporaryDirectory(prefix="lotc-bench-sched-") as state_dir:
        scheduler = Scheduler(Path(state_dir), clock, fire, on_event)
        sync = TimeSync([ntp], clock, samples=8,
                        on_sync=lambda _sample: scheduler.clock_changed())
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)
            await nursery.start(scheduler.run)
            with trio.fail_after(SYNC_TIMEOUT_S):
                while not clock.synced:
                    await trio.sleep(0.01)
            for index, target in enumerate(targets):
                await scheduler.set(ScheduleSpec(index, "bench", Action.START,
                                                 kind=ScheduleKind.AT, at_us=target))
            with trio.fail_after((max(targets) - clock.now_us()) / US + WORKER_SLACK_S):
                await done.wait()
            nursery.cancel_scope.cancel()
    offset_error = clock.sample.offset_us - true_offset_us
    for schedule_id, error_us in fired:
        true_error = local_at_fire[schedule_id] + true_offset_us - targets[schedule_id]
        print(json.dumps({"round": schedule_id, "target_us": targets[schedule_id],
                          "corrected_error_us": error_us, "true_error_us": true_error,
                          "offset_error_us": offset_error}), flush=True)


# ---------------------------------------------------------------- coordinator

async def _agent(index: int, ntp: str, targets: list[int], offset_us: int,
                 fires: list[Fire]) -> None:
    command = [sys.executable, "-m", "bench.schedule", "--worker", ntp,
               "--offset-us", str(offset_us), "--targets", ",".join(map(str, targets))]
    deadline = (max(targets) / US - time.time() - offset_us / US) + 2 * WORKER_SLACK_S
    with trio.fail_after(deadline):
        done = await trio.run_process(command, capture_stdout=True,
                                      cwd=Path(__file__).resolve().parents[1])
    for line in done.stdout.decode().splitlines():
        row = json.loads(line)
        fires.append(Fire(index, row["round"], row["target_us"], row["corrected_error_us"],
                          row["true_error_us"], row["offset_error_us"]))


async def _coordinate(agents: int, rounds: int, offset_s: float) -> list[Fire]:
    offset_us = round(offset_s * US)
    fires: list[Fire] = []
    async with trio.open_nursery() as nursery:
        port4 = await nursery.start(lambda task_status: serve_sntp(
            "127.0.0.1", 0, offset_s=offset_s, local_stratum=2, task_status=task_status))
        port6 = await nursery.start(lambda task_status: serve_sntp(
            "::1", 0, offset_s=offset_s, local_stratum=2, task_status=task_status))
        server_now = time.time_ns() // 1000 + offset_us
        first = (server_now + int(LEAD_S * US)) // 100_000 * 100_000  # a round number
        targets = [first + int(k * SPACING_S * US) for k in range(rounds)]
        async with trio.open_nursery() as workers:
            for index in range(agents):
                ntp = f"127.0.0.1:{port4}" if index % 2 == 0 else f"[::1]:{port6}"
                workers.start_soon(_agent, index, ntp, targets, offset_us, fires)
        nursery.cancel_scope.cancel()
    return fires


def _ms(values_us: list[int]) -> tuple[float, float]:
    """(p50, max) of absolute values, in milliseconds."""
    absolute = [abs(v) / 1000 for v in values_us]
    return statistics.median(absolute), max(absolute)


def report(fires: list[Fire], agents: int, rounds: int, offset_s: float) -> None:
    print(f"\nSchedules: {agents} agents (separate processes) x {rounds} rounds, "
          f"SNTP responder {offset_s:+.3f} s from the system clock")
    print(f"{'round':>5} {'agent':>5} {'corrected err ms':>17} {'true err ms':>12}")
    for fire in sorted(fires, key=lambda f: (f.round, f.agent)):
        print(f"{fire.round:>5} {fire.agent:>5} {fire.corrected_error_us / 1000:>17.3f} "
              f"{fire.true_error_us / 1000:>12.3f}")
    spreads = []
    for index in range(rounds):
        times = [f.true_error_us for f in fires if f.round == index]
        spreads.append(max(times) - min(times))
    offsets = sorted({(f.agent, f.offset_error_us) for f in fires})
    lines = [
        ("fire error vs NTP-corrected target", _ms([f.corrected_error_us for f in fires])),
        ("fire error vs true server time", _ms([f.true_error_us for f in fires])),
        ("spread between agents per round", _ms(spreads)),
        ("sync error (measured - true offset)", _ms([o for _, o in offsets])),
    ]
    print("sync error per agent (us): " + ", ".join(f"{a}: {o:+d}" for a, o in offsets))
    print()
    for label, (p50, worst) in lines:
        print(f"{label:<38} p50 {p50:7.3f} ms   max {worst:7.3f} ms")
    worst = _ms([f.corrected_error_us for f in fires])[1]
    verdict = "OK" if worst < TARGET_MS else "OVER TARGET"
    print(f"\ntarget < {TARGET_MS:g} ms: {verdict}; vs systemd timers' default accuracy "
          f"(60 s): {60_000 / max(worst, 0.001):,.0f}x tighter")
    print(f"fires: {len(fires)} of {agents * rounds}; python {platform.python_version()} "
          f"({sys.executable}); {os.cpu_count()} CPUs; {platform.platform()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--offset", type=float, default=3.0, help="SNTP responder offset, s")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # NTP server of one agent process
    parser.add_argument("--offset-us", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--targets", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        targets = [int(t) for t in args.targets.split(",")]
        trio.run(_worker, args.worker, targets, args.offset_us)
        return
    fires = trio.run(_coordinate, args.agents, args.rounds, args.offset)
    report(fires, args.agents, args.rounds, args.offset)
    if len(fires) != args.agents * args.rounds:
        sys.exit(1)


if __name__ == "__main__":
    main()
