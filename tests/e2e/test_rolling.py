"""`restart SELECTOR P --rolling` through the real console against four real agents (issue
17 item 3): the rolling invariant, polled all the time, and a batch that is not ready in
time stopping the roll with a report of what was done, what failed and what was not
touched.
"""
from __future__ import annotations

import threading
from pathlib import Path

from tests.agent_helpers import PY, alive
from tests.cluster import Cluster, wait_until

# Ready a second after it starts (its check looks for the file, which names the run's
# pid), unless told "broken".
APP = """
import os, time
if os.path.exists("ready"):
    os.remove("ready")
time.sleep(1)
if not os.path.exists("broken"):
    with open("ready.tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace("ready.tmp", "ready")
while True:
    time.sleep(60)
"""
AGENTS = ("n1", "n2", "n3", "n4")


def _not_ready(cluster: Cluster) -> int:
    processes = cluster.console_json("ps")["processes"]
    return sum(1 for p in processes if p["name"] == "web" and
               (p["state"] != "RUNNING" or p["facts"].get("ready") != "yes"))


def _ready_now(directory: Path) -> bool:
    """The instance in `directory` is ready: the run that wrote "ready" still runs."""
    try:
        pid = int((directory / "ready").read_text())
    except (OSError, ValueError):
        return False
    return alive(pid)


class Watcher(threading.Thread):
    """Looks at the four instances all the time (a few files and pids: a snapshot within
    microseconds) until told to stop; keeps the most ever seen not ready at once."""

    def __init__(self, directories: list[Path]) -> None:
        super().__init__(daemon=True)
        self.directories, self.worst, self.samples = directories, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            down = sum(1 for d in self.directories if not _ready_now(d))
            self.worst = max(self.worst, down)
            self.samples += 1
            self.done.wait(0.001)


def _bundle_dir(cluster: Cluster, agent: str) -> Path:
    return next((cluster.root / f"state-{agent}").rglob("app.py")).parent


def test_rolling_restart_keeps_at_most_one_unready_and_stops_on_failure(
        cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    for agent in AGENTS:
        cluster.start_agent(agent)
    cluster.wait_online(*AGENTS)
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(APP)
    cluster.console(f"upload n* app {app}; start n* app --name web --check 'exec:test -f ready' "
                    f"--check-interval 100ms -- {PY} app.py")
    wait_until(lambda: _not_ready(cluster) == 0, timeout=30, what="all four ready")
    before = {a: cluster.processes()[(a, "web")]["pid"] for a in AGENTS}

    watcher = Watcher([_bundle_dir(cluster, agent) for agent in AGENTS])
    watcher.start()
    try:
        out = cluster.console("restart n* web --rolling --max-unavailable 1 "
                              "--healthy-deadline 20s").stdout
    finally:
        watcher.done.set()
        watcher.join(timeout=30)
    assert out.count(") and ready") == 4, out
    assert watcher.samples >= 100 and watcher.worst == 1, (watcher.samples, watcher.worst)
    after = {a: cluster.processes()[(a, "web")]["pid"] for a in AGENTS}
    assert all(after[a] != before[a] for a in AGENTS)

    (_bundle_dir(cluster, "n3") / "broken").write_text("")
    result = cluster.console("restart n* web --rolling --healthy-deadline 3s", check=False)
    assert result.returncode == 1, result.stdout
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert ") and ready" in lines["n1"] and ") and ready" in lines["n2"]
    assert "not ready within 3 s: the roll stops here" in lines["n3"], result.stdout
    assert "not touched: the roll stopped at batch 3 (n3 failed)" in lines["n4"]
    assert cluster.processes()[("n4", "web")]["pid"] == after["n4"]  # really not touched

    usage = cluster.console("restart n1 web --max-unavailable 2", check=False)
    assert usage.returncode == 2 and "go with --rolling" in usage.stdout + usage.stderr
