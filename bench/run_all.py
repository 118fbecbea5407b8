"""Run every benchmark in bench/, each bounded, and collect what they print.

    .venv/bin/python -m bench.run_all [--only codec,server_load] [--quick] [--no-docs]

Each benchmark runs as its own subprocess (`python -m bench.NAME`) in its own
session, under a time limit; one that fails or overruns is reported (and its
process group killed) and the others still run. Output is shown as it comes and
kept in var/bench/NAME.txt; var/bench/summary.md gets, per benchmark, its status,
its duration and its closing lines.

docs/performance.md gets a generated block, between the markers
`<!-- bench:latest:begin -->` and `<!-- bench:latest:end -->` (inserted after the
title and intro if missing): date, machine, command and, per benchmark, its status,
duration and figure lines (the closing section where it prints its figures and their
ratios to peer or target; see Bench.figures_from). Only the text between the markers
is rewritten; the hand-written analysis around it (one section per benchmark) is left
byte for byte. `--no-docs` leaves docs/performance.md alone. Exit status: 0 when every
benchmark succeeded (and the block could be written).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

OUT_DIR = Path("var/bench")
DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
KILL_GRACE_S = 10.0
SUMMARY_LINES = 25  # closing lines of each benchmark's output kept in the summary
BEGIN = "<!-- bench:latest:begin -->"
END = "<!-- bench:latest:end -->"


@dataclass(frozen=True)
class Bench:
    name: str
    limit_s: float  # wall-clock limit, generous: the machine is shared
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()
    # Regex for the first line of the closing section where the benchmark prints its
    # figures (and their ratios to peer or target): that line and all after it are its
    # figure lines. When it matches nothing, the closing lines stand in (and say so).
    figures_from: str = ""
    module: str = ""  # default bench.NAME

    @property
    def argv(self) -> tuple[str, ...]:
        return ("-m", self.module or f"bench.{self.name}")


BENCHES = (
    # the table: round trips/s and the x msgpack (stream, plain) ratio of every codec
    Bench("codec", 180, (), ("--seconds", "5"), figures_from=r"^message\s+codec\b"),
    # per program kind: start/stop vs Popen and supervisord [targets]; liveness restart
    Bench("agent", 420, (), ("--n", "30", "--samples", "3"),
          figures_from=r"^\S.* programs \(N=\d+\):"),
    # p50/max errors, then the verdict against the 10 ms target and systemd timers
    Bench("schedule", 240, (), ("--agents", "2", "--rounds", "2"),
          figures_from=r"^fire error vs "),
    # render(): every figure with its ratio to the DESIGN.md target
    Bench("server_load", 720, (), ("--agents", "2000", "--duration", "10", "--requests", "50"),
          figures_from=r"^server_load: "),
    # one /metrics scrape at 10,000 agents x 5 processes, against the 1 s target
    Bench("metrics_scrape", 180, (), ("--agents", "2000", "--rounds", "3"),
          figures_from=r"^machine: "),
)


@dataclass
class Outcome:
    bench: Bench
    status: str
    seconds: float
    tail: list[str]
    command: str = ""
    figures: tuple[str, ...] = ()
    figures_found: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def figure_lines(bench: Bench, lines: list[str]) -> tuple[list[str], bool]:
    """(figure lines, whether the figure section was recognised) of one output."""
    start = None
    if bench.figures_from:
        pattern = re.compile(bench.figures_from)
        start = next((i for i, line in enumerate(lines) if pattern.search(line)), None)
    chosen = lines[start:] if start is not None else lines[-SUMMARY_LINES:]
    while chosen and not chosen[-1].strip():
        chosen = chosen[:-1]
    while chosen and not chosen[0].strip():
        chosen = chosen[1:]
    return [line.rstrip() for line in chosen], start is not None


def run_one(bench: Bench, quick: bool, out_dir: Path = OUT_DIR) -> Outcome:
    args = bench.quick_args if quick else bench.args
    cmd = [sys.executable, *bench.argv, *args]
    shown = shlex.join(["python", *cmd[1:]])
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"\n=== {bench.argv[-1]} (limit {bench.limit_s:.0f} s): {' '.join(cmd[1:])}",
          flush=True)
    lines: list[str] = []
    began = time.monotonic()
    with (out_dir / f"{bench.name}.txt").open("w", encoding="utf-8") as log:
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
    figures, found = figure_lines(bench, lines)
    return Outcome(bench, status, time.monotonic() - began, lines[-SUMMARY_LINES:],
                   shown, tuple(figures), found)


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


# ---- docs/performance.md block ---------------------------------------------------------------
def machine() -> str:
    """CPU model, cores, memory, load average (now), Python and OS, on one line."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Processor", "cpu model") and value.strip():
                model = value.strip()
                break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    cores = f"{os.cpu_count()} cores"
    try:
        usable = len(os.sched_getaffinity(0))
        if usable != os.cpu_count():
            cores += f" ({usable} usable)"
    except (AttributeError, OSError):
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB memory"
                break
    except (OSError, ValueError, IndexError):
        pass
    if not memory:
        try:
            memory = (f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f}"
                      " GiB memory")
        except (ValueError, OSError, AttributeError):
            memory = "memory unknown"
    load = os.getloadavg()
    return (f"{model}, {cores}, {memory}; load average {load[0]:.2f} {load[1]:.2f} "
            f"{load[2]:.2f} at start; {platform.python_implementation()} "
            f"{platform.python_version()}; {platform.platform()}")


def command_line(argv: Sequence[str]) -> str:
    """The command as typed: the interpreter relative to the working dir when inside it."""
    exe = sys.executable
    try:
        rel = os.path.relpath(exe)
        if not rel.startswith(".."):
            exe = rel
    except ValueError:
        pass
    return shlex.join([exe, "-m", "bench.run_all", *argv])


def _fence(lines: Sequence[str]) -> str:
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def render_block(outcomes: list[Outcome], *, date: str, machine_line: str, command: str,
                 quick: bool, seconds: float, out_dir: Path = OUT_DIR) -> str:
    """The generated text that goes between the markers (without them)."""
    parts = [
        "## Latest `make bench` run",
        "",
        ("Generated by `bench/run_all.py` (`make bench`), which rewrites only the text "
         "between the `bench:latest` comment markers; the analysis below is written by hand."
         + (" **Quick run** (`--quick`: small sizes, a smoke test; not figures to quote)."
            if quick else "")),
        "",
        f"- date: {date} (whole run {seconds:.0f} s){'; quick run' if quick else ''}",
        f"- machine: {machine_line}",
        f"- command: `{command}`"
        + (" (via `make bench`)" if os.environ.get("MAKELEVEL") else ""),
        f"- outputs: `{out_dir}/summary.md`, `{out_dir}/NAME.txt`",
        "",
        "| benchmark | status | seconds | command |",
        "|---|---|---|---|",
        *(f"| {o.bench.name} | {o.status} | {o.seconds:.0f} | `{o.command}` |"
          for o in outcomes),
    ]
    for o in outcomes:
        parts += ["", f"### {o.bench.name}: {o.status}, {o.seconds:.0f} s", ""]
        if not o.figures:
            parts.append("(no output)")
            continue
        if not o.figures_found:
            parts += [f"(no figure section recognised: its last {len(o.figures)} lines)", ""]
        fence = _fence(o.figures)
        parts += [fence + "text", *o.figures, fence]
    text = "\n".join(parts) + "\n"
    if BEGIN in text or END in text:
        raise ValueError("benchmark output contains the bench:latest markers")
    return text


def update_doc(text: str, inner: str) -> str:
    """text with `inner` between the markers; everything else kept byte for byte.

    Without markers the block is inserted after the first heading and its intro
    paragraphs (before the next heading), or at the top when there is no heading.
    Markers that are not exactly one begin before one end raise ValueError.
    """
    if not inner.endswith("\n"):
        inner += "\n"
    begins, ends = text.count(BEGIN), text.count(END)
    if begins == ends == 1 and text.index(BEGIN) < text.index(END):
        start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
        return text[:start] + "\n" + inner + text[stop:]
    if begins or ends:
        raise ValueError(f"bench markers out of order or repeated ({begins} begin, {ends} end);"
                         f" fix them by hand: {BEGIN} ... {END}")
    block = f"{BEGIN}\n{inner}{END}\n"
    lines = text.splitlines(keepends=True)
    headings, fenced = [], False
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6}(\s|$)", line):
            headings.append(i)
    if not headings:
        return block + ("\n" + text if text else "")
    if len(headings) == 1:  # only a title: at the end
        sep = "" if text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return text + sep + block
    pos = sum(len(line) for line in lines[:headings[1]])
    before = text[:pos]
    sep = "" if before.endswith("\n\n") else ("\n" if before.endswith("\n") else "\n\n")
    return before + sep + block + "\n" + text[pos:]


def write_doc(path: Path, inner: str) -> bool:
    """Put the block into `path` (read just now: others may have edited it). True if changed."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    new = update_doc(old, inner)
    if new == old:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(new, encoding="utf-8")
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
    return True


def main(argv: list[str] | None = None, benches: Sequence[Bench] = BENCHES,
         out_dir: Path = OUT_DIR) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated names (default: all): "
                        + ", ".join(b.name for b in benches))
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--no-docs", action="store_true",
                        help="leave docs/performance.md alone (var/bench/ is still written)")
    parser.add_argument("--doc", type=Path, default=DOC_PATH, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    chosen = list(benches)
    if opts.only:
        wanted = {name.strip() for name in opts.only.split(",")}
        unknown = wanted - {b.name for b in benches}
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        chosen = [b for b in benches if b.name in wanted]
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine_line = machine()  # load average before any benchmark runs
    began = time.monotonic()
    outcomes = []
    for bench in chosen:
        try:
            outcomes.append(run_one(bench, opts.quick, out_dir))
        except OSError as exc:  # could not even start it: report, go on
            outcomes.append(Outcome(bench, f"FAILED (could not run: {exc})", 0.0, [],
                                    shlex.join(["python", *bench.argv])))
    text = summary(outcomes, opts.quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.md").write_text(text, encoding="utf-8")
    print("\n" + text)
    print(f"(kept in {out_dir}/: summary.md and one NAME.txt per benchmark)")
    doc_ok = True
    if not opts.no_docs:
        block = render_block(outcomes, date=date, machine_line=machine_line,
                             command=command_line(argv), quick=opts.quick,
                             seconds=time.monotonic() - began, out_dir=out_dir)
        try:
            changed = write_doc(opts.doc, block)
            print(f"({opts.doc}: latest-run block {'written' if changed else 'unchanged'})")
        except (OSError, ValueError) as exc:
            doc_ok = False
            print(f"could not write the latest-run block to {opts.doc}: {exc}", file=sys.stderr)
    return 0 if doc_ok and all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
