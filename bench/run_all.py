"""Run every benchmark in bench/, each bounded, and collect what they print.

    .venv/bin/python -m bench.run_all [--only codec,server_load] [--quick]

Each benchmark runs as its own subprocess (`python -m bench.NAME`) in its own
session, under a time limit; one that fails or overruns is reported (and its
process group killed) and the others still run. Output is shown as it comes and
kept in var/bench/NAME.txt; var/bench/summary.md gets, per benchmark, its status,
its duration and its closing lines (where each prints its figures and ratios).
The hand-written analysis lives in docs/performance.md, one section per
benchmark. Exit status: 0 when every benchmark succeeded.
"""
from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

OUT_DIR = Path("var/bench")
KILL_GRACE_S = 10.0
SUMMARY_LINES = 25  # closing lines of each benchmark's output kept in the summary


@dataclass(frozen=True)
class Bench:
    name: str
    limit_s: float  # wall-clock limit, generous: the machine is shared
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()


BENCHES = (
    Bench("codec", 180, (), ("--seconds", "5")),
    Bench("agent", 420, (), ("--n", "30", "--samples", "3")),
    Bench("schedule", 240, (), ("--agents", "2", "--rounds", "2")),
    Bench("server_load", 720, (), ("--agents", "2000", "--duration", "10", "--requests", "50")),
)


@dataclass
class Outcome:
    bench: Bench
    status: str
    seconds: float
    tail: list[str]


def run_one(bench: Bench, quick: bool) -> Outcome:
    args = bench.quick_args if quick else bench.args
    cmd = [sys.executable, "-m", f"bench.{bench.name}", *args]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    print(f"\n=== bench.{bench.name} (limit {bench.limit_s:.0f} s): {' '.join(cmd[1:])}",
          flush=True)
    lines: list[str] = []
    began = time.monotonic()
    with (OUT_DIR / f"{bench.name}.txt").open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                log.write(line)
                lines.append(line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=bench.limit_s)
            status = "ok" if code == 0 else f"FAILED (exit {code})"
        except subprocess.TimeoutExpired:
            status = f"FAILED (over its {bench.limit_s:.0f} s limit: stopped)"
            _kill_group(proc)
        except BaseException:
            _kill_group(proc)
            raise
        reader.join(timeout=KILL_GRACE_S)
    return Outcome(bench, status, time.monotonic() - began, lines[-SUMMARY_LINES:])


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the benchmark's whole process group, then SIGKILL after a grace."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def summary(outcomes: list[Outcome], quick: bool) -> str:
    load = os.getloadavg()
    parts = [
        "# Benchmark run (bench.run_all)",
        "",
        (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}; load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f} at the end{'; --quick' if quick else ''}."),
        "",
        "| benchmark | status | seconds |",
        "|---|---|---|",
        *(f"| {o.bench.name} | {o.status} | {o.seconds:.0f} |" for o in outcomes),
    ]
    for o in outcomes:
        parts += ["", f"## {o.bench.name}", "", "```", *o.tail, "```"]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated names (default: all): "
                        + ", ".join(b.name for b in BENCHES))
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    opts = parser.parse_args(argv)
    chosen = list(BENCHES)
    if opts.only:
        wanted = {name.strip() for name in opts.only.split(",")}
        unknown = wanted - {b.name for b in BENCHES}
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        chosen = [b for b in BENCHES if b.name in wanted]
    outcomes = []
    for bench in chosen:
        try:
            outcomes.append(run_one(bench, opts.quick))
        except OSError as exc:  # could not even start it: report, go on
            outcomes.append(Outcome(bench, f"FAILED (could not run: {exc})", 0.0, []))
    text = summary(outcomes, opts.quick)
    (OUT_DIR / "summary.md").write_text(text, encoding="utf-8")
    print("\n" + text)
    print(f"(kept in {OUT_DIR}/: summary.md and one NAME.txt per benchmark)")
    return 0 if all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
