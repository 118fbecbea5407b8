"""Out-of-range values and huge lines through the real `lotc console` (issue 14, items 15, 16).

Every bad value is refused in plain words with exit status 2 before anything
is sent: a good command placed before it in the same `-c` string does not run.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.cluster import Cluster

PY = sys.executable
HUGE_LINE = 2_000_000  # characters of one argument: shlex took 15 s for half of it
HUGE_LINE_DEADLINE_S = 20.0  # the whole console run, interpreter start-up included

REFUSED = {
    "start n1 app --liveness 99999999999999 -- x": "--liveness '99999999999999' is too long: "
                                                   "at most 49d17h",
    "start n1 app --liveness 0.0001 -- x": "--liveness '0.0001' is too short: at least 100ms "
                                           "(0 turns the watchdog off)",
    "start n1 app --grace 0.0001 -- x": "--grace '0.0001' is too short",
    "stats n1 --since 99999999999d": "--since '99999999999d' is too long: at most 36500d",
    "events --since 99999999999d": "--since '99999999999d' is too long",
    "logs n1 app -n 99999999999": "-n '99999999999' is too large: at most 4294967295",
    "schedule n1 app stop at +99999999999d": "the delay '99999999999d' is too long",
    "ps " + "a" * 70_000: "agent name is 70000 characters long; the limit is 64",
    "ps " + "a*" * 35_000: "agent glob is 70000 characters long; the limit is 256",
    "start n1 app --cwd " + "c" * 70_000 + " -- x": "--cwd is 70000 bytes long: at most 65535",
    "start n1 app -- " + " y" * 70_000: "the command line has 70000 words: at most 65535",
    "start n1 app -- " + f" {'y' * 100_000}" * 50:  # 5 MB: more than one frame may carry
        "bytes on the wire; a request may have at most 4194304",
}


def test_out_of_range_values_are_refused_before_anything_is_sent(
    cluster: Cluster, app_bundle: Path
) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    cluster.console(f"upload n1 app {app_bundle}")
    script = cluster.root / "bad.lotc"  # a file: one argv word may not exceed 128 KB
    for bad, words in REFUSED.items():
        script.write_text(f"start n1 app --name first -- {PY} main.py\n{bad}\n")
        result = cluster.lotc("console", "--server", f"127.0.0.1:{cluster.admin_port}",
                              "-f", str(script), check=False,
                              env={"LOTC_TOKEN": cluster.admin_token})
        shown = (bad[:60], result.stderr[-2000:])
        assert result.returncode == 2, shown
        assert words in result.stderr, shown
        assert "cannot encode" not in result.stderr and "Traceback" not in result.stderr, shown
        assert len(result.stderr) < 2000, shown  # a line of megabytes is not echoed back
    assert ("n1", "first") not in cluster.processes()  # nothing ran: nothing was sent


def test_a_huge_line_is_parsed_in_linear_time(cluster: Cluster) -> None:
    script = cluster.root / "huge.lotc"
    script.write_text(f"start all app -- echo {'x' * HUGE_LINE}\nfrobnicate\n")
    began = time.monotonic()
    # no server needed: every line is parsed before connecting, and the second is a typo
    result = cluster.lotc("console", "--server", "127.0.0.1:9", "-f", str(script),
                          check=False, env={"LOTC_TOKEN": "unused"})
    elapsed = time.monotonic() - began
    assert result.returncode == 2 and "unknown command 'frobnicate'" in result.stderr
    assert elapsed < HUGE_LINE_DEADLINE_S, f"{elapsed:.1f} s"
