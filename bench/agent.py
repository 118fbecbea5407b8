"""Agent benchmark: start+stop of N processes via LOTC's Supervisor, supervisord and bare
Popen (with /bin/sleep and with small Python programs), and the time from a missed
liveness deadline to the restarted process running.

    .venv/bin/python -m bench.agent [--n 100] [--samples 7]

Every phase runs under a deadline; supervisord is always killed at the end.
Managed Python programs run on this interpreter (sys.executable), never on a
pyenv shim. LOTC is measured twice: N `start()` calls at once (as the agent
serves a burst of requests; each returns once its process exists and is on
record) and one after the other; stop is `terminate_all()` (SIGTERM to every
group, waiting for every end). supervisord gets `startAllProcesses` and
`stopAllProcesses`, its fastest path. Popen starts them one by one, then
terminates all and waits.
"""
from __future__ import annotations

import argparse
import http.client
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

import trio

from lotc.agent.cgroup_layout import Layout, detect, remove_parents
from lotc.agent.lifecycle import ProcessEvent
from lotc.agent.supervisor import ProcessSpec, Supervisor
from protocol.enums import EventKind, ProcessState, RestartPolicy

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
PHASE_TIMEOUT = 60.0  # seconds allowed for any one start-all or stop-all
SUPERVISORD_READY_TIMEOUT = 15.0
PY_PROGRAM = "import time\ntime.sleep(600)\n"
HANGER = ("import time\nfrom lotc import liveness\nliveness.beat()\n"
          "print(time.time(), flush=True)\ntime.sleep(600)\n")


@dataclass
class Result:
    label: str
    start: float
    stop: float

    @property
    def total(self) -> float:
        return self.start + self.stop


def programs(work: Path) -> dict[str, list[str]]:
    (work / "prog.py").write_text(PY_PROGRAM)
    return {"sleep": ["/bin/sleep", "600"], "python": [sys.executable, "prog.py"]}


# ---- bare Popen ----------------------------------------------------------------------------
def bench_popen(argv: list[str], n: int, work: Path) -> Result:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(argv, cwd=work, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True) for _ in range(n)]
    t1 = time.perf_counter()
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=PHASE_TIMEOUT)
    return Result("Popen", t1 - t0, time.perf_counter() - t1)


# ---- LOTC ----------------------------------------------------------------------------------
async def _lotc(argv: list[str], n: int, work: Path, concurrent: bool,
                cgroups: bool = False) -> Result:
    state = Path(tempfile.mkdtemp(dir=work, prefix="lotc-state-"))
    # Without cgroups the supervisor is on the fallback of a node that has none (each
    # run's end walks /proc for escaped children); with them, on this node's layout.
    layout = detect(state) if cgroups else Layout("none")
    sup = Supervisor(state, lambda name: work, lambda event: None, layout=layout)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        try:
            t0 = time.perf_counter()
            with trio.fail_after(PHASE_TIMEOUT):
                if concurrent:  # as the agent serves a burst of requests, or startAll
                    async with trio.open_nursery() as starts:
                        for i in range(n):
                            starts.start_soon(sup.start, ProcessSpec(f"p{i}", "bench", argv))
                else:
                    for i in range(n):
                        await sup.start(ProcessSpec(f"p{i}", "bench", argv))
            t1 = time.perf_counter()
            with trio.fail_after(PHASE_TIMEOUT):
                await sup.terminate_all()
            t2 = time.perf_counter()
        finally:
            with trio.CancelScope(shield=True):
                await sup.terminate_all(grace=1)
            nursery.cancel_scope.cancel()
    remove_parents(layout)
    label = "LOTC (concurrent starts)" if concurrent else "LOTC (one start after another)"
    if cgroups:
        label = f"LOTC, cgroups {layout.kind} (concurrent)"
    return Result(label, t1 - t0, t2 - t1)


def bench_lotc(argv: list[str], n: int, work: Path, concurrent: bool,
               cgroups: bool = False) -> Result:
    return trio.run(_lotc, argv, n, work, concurrent, cgroups)


# ---- supervisord ---------------------------------------------------------------------------
def _supervisord_conf(work: Path, argv: list[str], n: int, startsecs: int | None) -> Path:
    sock = work / "supervisor.sock"
    lines = [
        "[unix_http_server]", f"file={sock}", "",
        "[supervisord]", f"logfile={work / 'supervisord.log'}", f"pidfile={work / 'sd.pid'}",
        "nodaemon=true", "loglevel=warn", "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
    ]
    command = " ".join(argv)
    for i in range(n):
        lines += [f"[program:p{i}]", f"command={command}", f"directory={work}",
                  "autostart=false", "autorestart=false", "stopwaitsecs=10",
                  f"stdout_logfile={work / f'p{i}.out'}", f"stderr_logfile={work / f'p{i}.err'}"]
        if startsecs is not None:
            lines.append(f"startsecs={startsecs}")
        lines.append("")
    conf = work / f"supervisord-{startsecs}.conf"
    conf.write_text("\n".join(lines))
    return conf


def _rpc(work: Path) -> xmlrpc.client.ServerProxy:
    from supervisor.xmlrpc import SupervisorTransport  # the pip package's own transport

    transport = SupervisorTransport(None, None, f"unix://{work / 'supervisor.sock'}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def _wait_ready(work: Path, daemon: subprocess.Popen[bytes]) -> xmlrpc.client.ServerProxy:
    deadline = time.monotonic() + SUPERVISORD_READY_TIMEOUT
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError("supervisord exited at start-up")
        rpc = _rpc(work)  # a failed request leaves the transport unusable: a fresh one
        try:
            if rpc.supervisor.getState()["statename"] == "RUNNING":
                return _rpc(work)
        except (OSError, xmlrpc.client.Fault, http.client.HTTPException):
            pass
        time.sleep(0.05)
    raise RuntimeError("supervisord did not become ready")


def bench_supervisord(argv: list[str], n: int, work: Path, startsecs: int | None) -> Result:
    conf = _supervisord_conf(work, argv, n, startsecs)
    daemon = subprocess.Popen([str(Path(sys.executable).parent / "supervisord"), "-c", str(conf)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        rpc = _wait_ready(work, daemon)
        t0 = time.perf_counter()
        rpc.supervisor.startAllProcesses(True)
        t1 = time.perf_counter()
        rpc.supervisor.stopAllProcesses(True)
        t2 = time.perf_counter()
    finally:
        _kill_daemon(daemon)
    label = "supervisord " + ("startsecs=1 (default)" if startsecs is None
                              else f"startsecs={startsecs}")
    return Result(label, t1 - t0, t2 - t1)


def _kill_daemon(daemon: subprocess.Popen[bytes]) -> None:
    if daemon.poll() is None:
        daemon.terminate()  # supervisord stops its programs on SIGTERM
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
    (Path(daemon.args[2]).parent / "supervisor.sock").unlink(missing_ok=True)


# ---- liveness miss -> restart --------------------------------------------------------------
async def _liveness(samples: int, work: Path, timeout: float) -> list[tuple[float, float]]:
    """(noticed, restarted) delays in seconds after each missed deadline."""
    (work / "hanger.py").write_text(HANGER)
    state = Path(tempfile.mkdtemp(dir=work, prefix="lotc-live-"))
    events: list[ProcessEvent] = []
    sup = Supervisor(state, lambda name: work, events.append)
    results = []
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        try:
            for i in range(samples):
                results.append(await _one_miss(sup, events, state, f"h{i}", timeout))
        finally:
            with trio.CancelScope(shield=True):
                await sup.terminate_all(grace=1)
            nursery.cancel_scope.cancel()
    return results


async def _one_miss(sup: Supervisor, events: list[ProcessEvent], state: Path, name: str,
                    timeout: float) -> tuple[float, float]:
    spec = ProcessSpec(name, "bench", [sys.executable, "hanger.py"], liveness_timeout=timeout,
                       env={"PYTHONPATH": str(REPO)}, restart=RestartPolicy.ALWAYS)
    await sup.start(spec)
    out = state / "logs" / name / "stdout.log"
    with trio.fail_after(PHASE_TIMEOUT):
        while not out.read_text().strip():
            await trio.sleep(0.01)
        while sup.get(name).restarts < 1 or sup.get(name).state != ProcessState.RUNNING:
            await sup.wait_state(name, [ProcessState.RUNNING, ProcessState.BACKOFF],
                                 PHASE_TIMEOUT)
            await trio.sleep(0.001)
    # each stored line starts with the time it was written (logs.py): the program's own
    # beat time is the word after it
    deadline_us = (float(out.read_text().splitlines()[0].split()[-1]) + timeout) * 1e6
    missed = next(e for e in events if e.process == name and e.kind == EventKind.LIVENESS_MISSED)
    rerun = [e for e in events if e.process == name and e.kind == EventKind.PROCESS_STATE
             and e.new_state == ProcessState.RUNNING][1]
    await sup.remove(name)
    return (missed.time_us - deadline_us) / 1e6, (rerun.time_us - deadline_us) / 1e6


# ---- report --------------------------------------------------------------------------------
def _table(kind: str, results: list[Result], layout: str) -> None:
    by = {r.label: r for r in results}
    lotc, popen = by["LOTC (concurrent starts)"], by["Popen"]
    seq = by["LOTC (one start after another)"]
    sd = by["supervisord startsecs=0"]
    print(f"\n{kind} programs (N={args.n}):")
    print(f"  {'':34} {'start s':>8} {'stop s':>8} {'total s':>8} {'/ LOTC':>8}")
    for r in results:
        print(f"  {r.label:34} {r.start:8.3f} {r.stop:8.3f} {r.total:8.3f} "
              f"{r.total / lotc.total:8.2f}")
    print(f"  LOTC is {sd.total / lotc.total:.1f}x faster than supervisord (startsecs=0) "
          f"[target >= 5x]; {lotc.total / popen.total:.2f}x bare Popen [target <= 2x]")
    print(f"  one start after another: {sd.total / seq.total:.1f}x faster than supervisord, "
          f"{seq.total / popen.total:.2f}x bare Popen")
    for r in results:
        if "cgroups" in r.label:
            print(f"  {r.label}: {r.total / popen.total:.2f}x bare Popen [target <= 2x], "
                  f"{r.total / lotc.total:.2f}x LOTC without cgroups; layout {layout}")


def _layout_words(work: Path) -> str:
    probe = detect(work / "layout-probe")
    words = probe.describe()
    remove_parents(probe)
    return words


def main() -> None:
    global args
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--liveness-timeout", type=float, default=0.3)
    args = parser.parse_args()
    print(f"interpreter for managed Python programs: {sys.executable} "
          f"(Python {sys.version.split()[0]}); {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="lotc-bench-") as tmp:
        work = Path(tmp)
        for kind, argv in programs(work).items():
            results = [bench_popen(argv, args.n, work), bench_lotc(argv, args.n, work, True),
                       bench_lotc(argv, args.n, work, False),
                       bench_lotc(argv, args.n, work, True, cgroups=True),
                       bench_supervisord(argv, args.n, work, 0),
                       bench_supervisord(argv, args.n, work, None)]
            _table(kind, results, _layout_words(work))
        lat = trio.run(_liveness, args.samples, work, args.liveness_timeout)
    noticed = [a * 1e3 for a, _ in lat]
    restarted = [b * 1e3 for _, b in lat]
    print(f"\nliveness miss -> restart ({args.samples} samples, timeout "
          f"{args.liveness_timeout} s, Python program):")
    print(f"  miss noticed after the deadline: p50 {statistics.median(noticed):.1f} ms, "
          f"max {max(noticed):.1f} ms")
    print(f"  restarted process running:       p50 {statistics.median(restarted):.1f} ms, "
          f"max {max(restarted):.1f} ms [target <= 100 ms]")


args: argparse.Namespace

if __name__ == "__main__":
    main()
