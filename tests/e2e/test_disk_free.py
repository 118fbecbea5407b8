"""`stats AGENT` shows the disk as `df` does (issue 14 item 11): a real server, agent and
console, compared with `df -B1` on the agent's state dir, run here.

df's "free" is Avail (f_bavail: what non-root users may still write), which differs
from Size - Used wherever root has a reserve; Use% is Used / (Used + Avail), rounded
up. The filesystem is shared with everything else running here, so the console's
figures must lie between two df runs taken around it, give or take a little.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from tests.cluster import Cluster, wait_until

NOISE = 256 * 2**20  # bytes others may write and delete between the reads (capped at 1 %)


def df(path: Path) -> dict[str, Any]:
    out = subprocess.run(["df", "-B1", "--output=used,avail,size,pcent,target", str(path)],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    used, avail, size, pcent, target = out.splitlines()[1].split(maxsplit=4)
    return {"used": int(used), "free": int(avail), "total": int(size),
            "use_percent": int(pcent.rstrip("%")), "mount": target}


def test_stats_shows_used_free_total_and_use_percent_as_df_does(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_agent("disk1")
    cluster.wait_online("disk1")
    state_dir = cluster.root / "state-disk1"

    before = df(state_dir)
    disk = wait_until(lambda: cluster.console_json("stats disk1")["disk"], what="disk figures")
    after = df(state_dir)

    assert disk["unknown"] is None, disk
    assert disk["path"] == str(state_dir) and disk["mount"] == before["mount"]
    assert disk["total"] == before["total"] == after["total"]
    slack = min(NOISE, before["total"] // 100)
    for key in ("used", "free"):
        low, high = sorted((before[key], after[key]))
        assert low - slack <= disk[key] <= high + slack, (key, disk, before, after)
    assert abs(disk["use_percent"] - before["use_percent"]) <= 1, (disk, before)

    text = cluster.console("stats disk1").stdout
    line = next(line for line in text.splitlines() if line.strip().startswith("disk "))
    assert re.fullmatch(r"\s+disk\s+used [\d.]+ \w?i?B  free [\d.]+ \w?i?B  total [\d.]+ \w?i?B"
                        rf"  use \d+%  \(on {re.escape(before['mount'])}\)", line), line
    assert "free: unknown" not in text
