"""Fault 6: the agent's state dir is a small tmpfs that fills up.

An upload bigger than the free space is refused per agent with StorageFull and
leaves nothing behind; then a process's logs fill the disk to the last byte,
and the agent must stay up, online and obedient: commands answered, uploads
refused in plain words, no link flapping, no traceback.
"""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from protocol.enums import ProcessState
from tests import fault_db
from tests.cluster import Cluster, wait_until
from tests.faults.test_agent_killed import copies

PY = sys.executable


def apps(root: Path) -> Path:
    app = root / "app"
    app.mkdir(parents=True)
    # A daemon that logs as fast as it can and shrugs off ENOSPC, as real ones do.
    (app / "chatty.py").write_text(
        "import os\n"
        "line = b'x' * 4095 + b'\\n'\n"
        "while True:\n"
        "    try:\n"
        "        os.write(1, line)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    (app / "idle.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    return app


def test_full_state_dir_gives_clear_errors_and_the_agent_carries_on(
        cluster: Cluster, tmpfs: Callable[..., Path]) -> None:
    state = tmpfs("agent-state", size="2m")
    cluster.start_server()
    cluster.start_agent("small", extra=("--state-dir", str(state)))
    cluster.start_agent("roomy")
    fault_db.wait_online(cluster.db, "small", "roomy")
    cluster.console(f"upload small app {apps(cluster.root)}")

    big = cluster.root / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    result = cluster.console(f"upload all big {big}", check=False)
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()}
    assert "loaded big" in lines["roomy"], result.stdout
    assert "needs" in lines["small"] and "free" in lines["small"], result.stdout
    assert result.returncode != 0
    assert not (state / "bundles" / "bundles" / "big").exists()
    assert list((state / "bundles" / "incoming").iterdir()) == []

    # Logs fill the disk to the last byte.
    cluster.console(f"start small app --name chatty -- {PY} chatty.py")
    wait_until(lambda: shutil.disk_usage(state).free < 64 * 1024, timeout=30, what="disk full")
    connects = cluster.server_log().count("agent small connected")

    # The agent serves commands on a full disk, and says why a start or an upload cannot
    # happen. A process it could not record would be started twice after an agent restart.
    start = cluster.console(f"start small app --name calm -- {PY} idle.py calm", check=False)
    assert "No space left" in start.stdout and start.returncode != 0, start.stdout
    assert copies(cluster, "idle.py calm") == []
    assert cluster.processes()[("small", "chatty")]["state"] == "RUNNING"
    refused = cluster.console(f"upload small other {apps(cluster.root / 'x')}", check=False)
    assert "StorageFull" in refused.stdout or "free" in refused.stdout, refused.stdout
    cluster.console("terminate small chatty")
    wait_until(lambda: fault_db.status(cluster.db, "small", "chatty").get("state")
               == ProcessState.EXITED, timeout=30, what="chatty ended")

    assert cluster.agents["small"].poll() is None, "the agent died"
    assert fault_db.online(cluster.db, "small")
    assert cluster.server_log().count("agent small connected") == connects, "the link flapped"
    log = cluster.agent_log("small")
    assert "Traceback" not in log, log[-3000:]
