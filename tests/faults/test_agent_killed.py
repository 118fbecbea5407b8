"""Faults 1 and 2: the agent is SIGKILLed in the middle of an upload or of a command.

Beyond tests/e2e/test_nothing_lost.py (an idle agent killed and restarted, a
console cut off mid-upload): here the agent dies while the *server* pushes a
bundle to it, while it waits out a terminate's grace period, and right after
it spawned a process. After each restart: nothing partial, nothing twice,
the desired state met.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from lotc.bundle_source import pack
from protocol.enums import DesiredState, EventKind, ProcessState
from tests import fault_db
from tests.cluster import LOTC, Cluster, wait_until

PY = sys.executable
BIG = 24 * 1024 * 1024


def copies(cluster: Cluster, marker: str) -> list[psutil.Process]:
    return [p for p in cluster.managed() if marker in " ".join(p.info["cmdline"] or ())]


def background_console(cluster: Cluster, command: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*LOTC, "console", "--server", f"127.0.0.1:{cluster.admin_port}", "-c", command],
        env={**os.environ, "LOTC_TOKEN": cluster.admin_token}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class BundleWatcher(threading.Thread):
    """Checks, as often as it can, that bundles/<name> on an agent is absent or complete."""

    def __init__(self, store: Path, name: str, file_name: str, content: bytes) -> None:
        super().__init__(daemon=True)
        self.link = store / "bundles" / name
        self.entry = Path("tree") / file_name  # a single file keeps its own name
        self.size, self.sha = len(content), hashlib.sha256(content).hexdigest()
        self.partial_seen: list[str] = []
        self.complete_seen = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.005):
            try:
                size = (self.link / self.entry).stat().st_size
            except FileNotFoundError:
                continue  # absent: fine (the link is swapped atomically)
            if size != self.size:
                self.partial_seen.append(f"{size} of {self.size} bytes")
            else:
                self.complete_seen += 1

    def verify_content(self) -> bool:
        data = (self.link / self.entry).read_bytes()
        return hashlib.sha256(data).hexdigest() == self.sha


def test_agent_killed_while_the_server_pushes_a_bundle(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_agent("victim")
    cluster.start_agent("bystander")
    fault_db.wait_online(cluster.db, "victim", "bystander")
    content = os.urandom(BIG)
    big = cluster.root / "big.bin"
    big.write_bytes(content)
    store = cluster.root / "state-victim" / "bundles"
    watcher = BundleWatcher(store, "big", big.name, content)
    watcher.start()
    try:
        upload = background_console(cluster, f"upload all big {big}")
        partial = store / "incoming" / "big" / "data"
        wait_until(lambda: partial.exists() and partial.stat().st_size > 0, timeout=60,
                   interval=0.005, what="the server pushing to the victim")
        victim = cluster.agents["victim"]
        victim.send_signal(signal.SIGSTOP)  # freeze it mid-push, then kill it: no goodbye
        held = partial.stat().st_size
        cluster.kill_agent("victim")
        out, _ = upload.communicate(timeout=60)
        assert 0 < held < BIG

        # The console says plainly, per agent, what happened.
        lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
        assert "loaded big" in lines["bystander"], out
        assert "offline" in lines["victim"] or "disconnected" in lines["victim"], out
        assert upload.returncode != 0, out  # a -c command that failed somewhere
        assert not (store / "bundles" / "big").exists()

        cluster.start_agent("victim")  # reconcile pushes the rest
        wait_until(lambda: watcher.complete_seen, timeout=60, what="bundle delivered after restart")
    finally:
        watcher.halt.set()
        watcher.join()
    assert watcher.partial_seen == [], watcher.partial_seen
    assert watcher.verify_content()
    assert "resuming upload of bundle big" in cluster.agent_log("victim")  # not from zero
    assert not (store / "incoming" / "big").exists()
    sizes = {b["agent"]: b["size"] for b in cluster.console_json("bundles")["bundles"]}
    with pack(big, alias="big") as packed:  # sent as a tar of the one file
        assert sizes == {"victim": packed.size, "bystander": packed.size}
    stored = fault_db.events(cluster.db, "victim", EventKind.BUNDLE_STORED)
    assert len(stored) == 1, stored  # delivered once, reported once


def small_app(root: Path) -> Path:
    app = root / "app"
    app.mkdir()
    # Writes a marker when SIGTERM arrives, then carries on: only SIGKILL ends it.
    (app / "stubborn.py").write_text(
        "import pathlib, signal, sys, time\n"
        "mark = pathlib.Path(sys.argv[1])\n"
        "signal.signal(signal.SIGTERM, lambda *_: mark.write_text('TERM'))\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )
    (app / "idle.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    return app


def test_agent_killed_during_a_terminate_grace_period(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    fault_db.wait_online(cluster.db, "n1")
    mark = cluster.root / "got-term"
    cluster.console(f"upload n1 app {small_app(cluster.root)}; "
                    f"start n1 app --name stubborn --grace 1 -- {PY} stubborn.py {mark}")
    pid = wait_until(lambda: [p.pid for p in copies(cluster, "stubborn.py")], what="started")[0]

    terminate = background_console(cluster, "terminate n1 stubborn --grace 60")
    wait_until(mark.exists, timeout=30, what="SIGTERM delivered")
    cluster.kill_agent("n1")  # in the middle of the 60 s grace period
    terminate.communicate(timeout=60)
    assert psutil.pid_exists(pid)  # it ignored SIGTERM and the agent is gone
    assert fault_db.status(cluster.db, "n1", "stubborn")  # known to the server

    cluster.start_agent("n1")
    # The restarted agent finishes the terminate (its record says EXITED is wanted),
    # with the spec's 1 s grace: the process is gone, and nothing starts it again.
    wait_until(lambda: not copies(cluster, "stubborn.py"), timeout=30, what="terminate finished")
    wait_until(lambda: fault_db.status(cluster.db, "n1", "stubborn").get("state")
               == ProcessState.EXITED, timeout=30, what="reported EXITED")
    entry = cluster.processes()[("n1", "stubborn")]
    assert entry["state"] == "EXITED" and entry["desired"] == DesiredState.EXITED.name, entry
    assert not copies(cluster, "stubborn.py")


def test_agent_killed_right_after_a_start_runs_it_once(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    fault_db.wait_online(cluster.db, "n1")
    cluster.console(f"upload n1 app {small_app(cluster.root)}")
    start = background_console(cluster, f"start n1 app --name fresh -- {PY} idle.py fresh")
    # Kill the agent the moment the process exists: its reply may not have left yet.
    first = wait_until(lambda: copies(cluster, "idle.py fresh"), timeout=30, interval=0.002,
                       what="spawned")[0].pid
    cluster.kill_agent("n1")
    start.communicate(timeout=60)

    cluster.start_agent("n1")
    fault_db.wait_online(cluster.db, "n1")
    wait_until(lambda: fault_db.status(cluster.db, "n1", "fresh").get("state")
               == ProcessState.RUNNING, timeout=30, what="running after restart")
    # `ps` asks the agent live; on a loaded box that answer can miss its deadline once.
    entry = wait_until(lambda: (e := cluster.processes()[("n1", "fresh")])["pid"] and e,
                       timeout=30, what="live pid reported")
    assert entry["desired"] == DesiredState.RUNNING.name, entry
    assert entry["pid"] == first  # re-adopted, not started a second time
    assert [p.pid for p in copies(cluster, "idle.py fresh")] == [first]
