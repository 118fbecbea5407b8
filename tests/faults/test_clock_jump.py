"""Fault 5: the agent's corrected clock jumps a day forward.

The agent measures its clock every 0.5 s (--ntp-interval) against an SNTP
responder run by the test, whose offset the test changes from 0 to +1 day. A
cron schedule firing every minute has then 1,440 fire times in the past: it
must fire once (the latest, flagged late), report the other 1,439 in ONE
SCHEDULE_MISSED event, and stay quiet through the following re-measurements
of the same offset.
"""
from __future__ import annotations

import socket
import sys
import threading
import time

from lotc.sntp import build_reply
from protocol.enums import EventKind, ProcessState
from tests import fault_db
from tests.cluster import Cluster, wait_until
from tests.faults.test_agent_killed import copies

PY = sys.executable
DAY_S = 86_400


class SntpResponder(threading.Thread):
    """lotc.sntp's reply builder on a thread, with an offset the test may change."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.offset_ns = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                data, peer = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            now = time.time_ns() + self.offset_ns
            reply = build_reply(data, now, time.time_ns() + self.offset_ns, stratum=2)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def close(self) -> None:
        self.halt.set()
        self.join(timeout=2)
        self.sock.close()


def test_a_day_forward_fires_once_and_reports_the_misses_once(cluster: Cluster) -> None:
    ntp = SntpResponder()
    ntp.start()
    try:
        cluster.start_server()
        cluster.start_agent("timely", extra=("--ntp", f"127.0.0.1:{ntp.port}",
                                             "--ntp-interval", "0.5"))
        fault_db.wait_online(cluster.db, "timely")
        app = cluster.root / "app"
        app.mkdir()
        (app / "idle.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
        # action start on a running process: harmless, but every fire is an event
        cluster.console(f"upload timely app {app}; start timely app --name web -- {PY} idle.py; "
                        f'schedule timely web start cron "* * * * *"')
        wait_until(lambda: fault_db.status(cluster.db, "timely", "web").get("state")
                   == ProcessState.RUNNING, what="web running")

        def syncs() -> int:
            return len(fault_db.events(cluster.db, "timely", EventKind.CLOCK_SYNC))
        wait_until(lambda: syncs() >= 2, what="clock synced")
        fired_before = len(fault_db.events(cluster.db, "timely", EventKind.SCHEDULE_FIRED))

        ntp.offset_ns = DAY_S * 1_000_000_000  # the clock jumps a day forward
        missed = wait_until(
            lambda: fault_db.events(cluster.db, "timely", EventKind.SCHEDULE_MISSED),
            timeout=20, what="missed fires reported")
        after_jump = syncs()
        # Several more measurements of the same (new) offset: nothing more to report.
        wait_until(lambda: syncs() >= after_jump + 4, timeout=20, what="re-measured")
    finally:
        ntp.close()

    missed = fault_db.events(cluster.db, "timely", EventKind.SCHEDULE_MISSED)
    assert len(missed) == 1, missed
    assert "1439" in missed[0]["message"] or "1,439" in missed[0]["message"], missed[0]
    fired = fault_db.events(cluster.db, "timely", EventKind.SCHEDULE_FIRED)[fired_before:]
    assert 1 <= len(fired) <= 2, fired  # the latest fire (late); at most one minute more
    assert len(copies(cluster, "idle.py")) == 1
    clock = cluster.agents_view()["timely"]
    assert abs(clock["clock_offset_us"] - DAY_S * 1_000_000) < 1_000_000, clock
    log = cluster.agent_log("timely")
    assert "Traceback" not in log
