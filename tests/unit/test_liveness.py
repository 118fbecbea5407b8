"""sd_notify liveness: the client helper, the watchdog, its timing, suspension."""
# ruff: noqa: F811  (pytest fixtures imported from tests.agent_helpers, then used as arguments)
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import trio

from lotc import liveness
from lotc.agent.logs import split_timestamp
from lotc.agent.notify import NotifySocket, new_address, parse_notify
from lotc.agent.supervisor import ProcessSpec
from protocol.enums import EventKind, RestartPolicy
from protocol.enums import ProcessState as S
from tests.agent_helpers import PY, Harness, bundle, proc_state, sup, wait_until, write_program  # noqa: F401

REPO = str(Path(__file__).resolve().parents[2])

# A program that beats with lotc.liveness at half its WATCHDOG_USEC.
BEATER = f"""
import sys, time
sys.path.insert(0, {REPO!r})
from lotc import liveness
liveness.ready()
liveness.status("serving")
while True:
    liveness.beat()
    time.sleep(liveness.interval())
"""

# Beats once, says when, then hangs.
HANGER = f"""
import sys, time
sys.path.insert(0, {REPO!r})
from lotc import liveness
liveness.beat()
print(time.time(), flush=True)
time.sleep(600)
"""


def test_parse_notify() -> None:
    assert parse_notify(b"READY=1\nSTATUS=a=b c\n\ngarbage\nWATCHDOG=1") == {
        "READY": "1", "STATUS": "a=b c", "WATCHDOG": "1"}


def test_helpers_are_noops_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert liveness.beat() is False and liveness.ready() is False
    assert liveness.status("x") is False and liveness.interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    assert liveness.interval() == 1.5


@pytest.mark.parametrize("abstract", [True, False])
async def test_helpers_send_datagrams(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      abstract: bool) -> None:
    address = new_address() if abstract else str(tmp_path / "n.sock")
    sock = NotifySocket(address)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert liveness.ready() and liveness.status("two\nlines") and liveness.beat()
        assert liveness.trigger() and liveness.stopping()
        got = [await sock.receive() for _ in range(5)]
    finally:
        sock.close()
    assert all(sender == os.getpid() for sender, _ in got)
    assert [fields for _, fields in got] == [
        {"READY": "1"}, {"STATUS": "two lines"}, {"WATCHDOG": "1"}, {"WATCHDOG": "trigger"},
        {"STOPPING": "1"}]


async def test_a_beating_process_stays_up_and_reports_status(sup: Harness) -> None:
    argv = sup.program("beater.py", BEATER)
    info = await sup.sup.start(ProcessSpec("beater", "b", argv, liveness_timeout=0.3))
    await wait_until(lambda: sup.sup.get("beater").status == "serving")
    await trio.sleep(1.0)  # the subject of the test: ~3 timeouts pass without a miss
    now = sup.sup.get("beater")
    assert now.pid == info.pid and now.restarts == 0 and now.ready
    assert now.last_liveness > info.started_at
    assert not [e for e in sup.events if e.kind == EventKind.LIVENESS_MISSED]


async def test_a_silent_process_is_restarted_promptly(sup: Harness) -> None:
    argv = sup.program("hanger.py", HANGER)
    timeout = 0.3
    first = await sup.sup.start(ProcessSpec("hanger", "b", argv, liveness_timeout=timeout,
                                            restart=RestartPolicy.ON_FAILURE))
    out = sup.state_dir / "logs/hanger/stdout.log"
    await wait_until(lambda: out.read_text().strip())
    beat_at = float(split_timestamp(out.read_text().splitlines()[0])[1].split()[0])
    await wait_until(lambda: sup.sup.get("hanger").restarts == 1 and sup.sup.get("hanger").pid)
    missed = [e for e in sup.events if e.kind == EventKind.LIVENESS_MISSED]
    assert len(missed) == 1 and "no liveness beat within 0.3 s" in missed[0].reason
    rerun = [e for e in sup.events if e.new_state == S.RUNNING
             and e.kind == EventKind.PROCESS_STATE][1]
    latency = rerun.time_us / 1e6 - (beat_at + timeout)
    assert -0.01 < latency < 0.1, latency  # restarted within 100 ms of the missed deadline
    assert first.pid is not None and proc_state(first.pid) is None


async def test_watchdog_trigger_and_shell_beats(sup: Harness) -> None:
    beat = ('python_beat() { "$PY" -c \'import os, socket; a = os.environ["NOTIFY_SOCKET"]\n'
            'a = "\\0" + a[1:] if a[0] == "@" else a\n'
            'socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"WATCHDOG=1", a)\'; }\n')
    write_program(sup.bundle_dir, "beat.sh", "#!/bin/sh\n" + beat +
                  "while true; do python_beat; sleep 0.05; done\n")
    spec = ProcessSpec("shell", "b", ["./beat.sh"], env={"PY": PY}, liveness_timeout=0.4)
    info = await sup.sup.start(spec)
    await trio.sleep(1.2)  # three timeouts, kept alive by shell beats only
    assert sup.sup.get("shell").pid == info.pid
    write_program(sup.bundle_dir, "trigger.py",
                  f"import sys; sys.path.insert(0, {REPO!r})\n"
                  "from lotc import liveness; liveness.trigger()\nimport time; time.sleep(60)\n")
    await sup.sup.start(ProcessSpec("trig", "b", [PY, "trigger.py"], liveness_timeout=30))
    await wait_until(lambda: any(e.kind == EventKind.LIVENESS_MISSED for e in sup.events))


async def test_beats_from_outside_the_session_do_not_count(sup: Harness) -> None:
    info = await sup.sup.start(ProcessSpec("lonely", "b", ["/bin/sleep", "60"],
                                           liveness_timeout=0.3))
    address = "\0" + sup.sup._records["lonely"].notify_address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for _ in range(10):  # the test process is alive and not in the session
            s.sendto(b"WATCHDOG=1", address)
            await trio.sleep(0.05)
    await wait_until(lambda: sup.sup.get("lonely").pid not in (None, info.pid))


async def test_a_suspended_process_is_not_restarted(sup: Harness) -> None:
    argv = sup.program("beater.py", BEATER)
    info = await sup.sup.start(ProcessSpec("nap", "b", argv, liveness_timeout=0.2))
    await wait_until(lambda: sup.sup.get("nap").ready)
    await sup.sup.stop("nap")
    await trio.sleep(0.8)  # four timeouts while suspended
    assert sup.sup.get("nap").state == S.STOPPED and sup.sup.get("nap").restarts == 0
    await sup.sup.resume("nap")  # fresh deadline; the program beats again
    await trio.sleep(0.5)
    now = sup.sup.get("nap")
    assert now.state == S.RUNNING and now.pid == info.pid and now.restarts == 0
