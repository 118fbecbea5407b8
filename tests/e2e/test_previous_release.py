"""An agent of the previous release against this server (DESIGN 7: "The wire has users now").

A fleet is upgraded one node at a time, so this server must keep serving the
agents of the release before the second wave. The old agent is not a replay or
a fake: its code is taken from git (PREVIOUS_RELEASE) into a temporary tree
and run as a real `lotc agent` process. It must connect with a token of this
release, heartbeat, and run, suspend, resume and end a process; a start option
it cannot apply is reported to the operator, not dropped in silence.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import Cluster, wait_until

# The last commit of the first wave: the protocol as agents in the field speak it.
PREVIOUS_RELEASE = "5371ec41e81e5ddd39362dfec0f481373d3291a6"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", PREVIOUS_RELEASE, "lotc", "protocol",
                              "admin_console"],
                             capture_output=True, check=False, timeout=60)
    assert archive.returncode == 0, (
        f"cannot read the previous release {PREVIOUS_RELEASE[:12]} from git (a shallow clone?): "
        f"{archive.stderr.decode(errors='replace')}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True, timeout=60)
    return tree


def _old_python(tree: Path) -> dict[str, str]:
    """Environment and check that `import lotc` resolves to the old tree, not this checkout."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    where = subprocess.run([sys.executable, "-c", "import lotc; print(lotc.__file__)"], cwd=tree,
                           env=env, capture_output=True, text=True, check=True, timeout=30)
    assert where.stdout.strip().startswith(str(tree)), where.stdout
    return env


def _start_old_agent(cluster: Cluster, tree: Path, name: str) -> None:
    token_file = cluster.root / f"{name}.token"
    token_file.write_text(cluster.token("agent", name))
    log = (cluster.root / f"agent-{name}.log").open("ab")
    # Registered in cluster.agents so the fixture kills it, and its processes, even on failure.
    cluster.agents[name] = subprocess.Popen(
        [sys.executable, "-m", "lotc.cli", "--log-level", "debug", "agent",
         "--server", f"127.0.0.1:{cluster.agent_port}", "--name", name,
         "--token-file", str(token_file), "--state-dir", str(cluster.root / f"state-{name}"),
         "--stats-interval", "1"],
        cwd=tree, env=_old_python(tree), stdout=log, stderr=log, stdin=subprocess.DEVNULL)


def _state(cluster: Cluster, name: str) -> str:
    return str(cluster.processes().get(("old1", name), {}).get("state", ""))


def test_an_agent_of_the_previous_release_runs_processes(cluster: Cluster, old_tree: Path,
                                                          tmp_path: Path) -> None:
    cluster.start_server()
    _start_old_agent(cluster, old_tree, "old1")
    cluster.wait_online("old1", timeout=30)
    first_seen = cluster.agents_view()["old1"]["last_seen_us"]
    wait_until(lambda: cluster.agents_view()["old1"]["last_seen_us"] > first_seen, timeout=20,
               what="the old agent's heartbeats move last-seen")

    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("import time\nwhile True:\n    time.sleep(0.2)\n")
    out = cluster.console(f"upload old1 app {app}; start old1 app -- {sys.executable} main.py").stdout
    wait_until(lambda: _state(cluster, "app") == "RUNNING", timeout=20, what="app running")
    pid = int(cluster.processes()[("old1", "app")]["pid"])
    assert pid > 0, out

    cluster.console("stop old1 app")
    wait_until(lambda: _state(cluster, "app") == "STOPPED", what="app suspended")
    cluster.console("resume old1 app")
    wait_until(lambda: _state(cluster, "app") == "RUNNING", what="app resumed")
    cluster.console("terminate old1 app")
    wait_until(lambda: _state(cluster, "app") not in ("RUNNING", "STOPPED"), timeout=20,
               what="app ended")
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), what="the OS process gone")

    # An option this agent does not understand: the operator is told, the process still runs.
    out = cluster.console(f"start old1 app --name app2 --log-size 64K -- {sys.executable} main.py",
                          check=False).stdout
    assert "log-size" in out and "old1" in out, out
    # An identity option it cannot apply: refused plainly, never run as the agent's user.
    out = cluster.console(f"start old1 app --name app3 --user nobody -- {sys.executable} main.py",
                          check=False).stdout
    assert "old1: this agent cannot apply --user: its LOTC is too old" in out, out
    assert ("old1", "app3") not in cluster.processes()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_a_new_agent_and_a_server_of_the_previous_release(cluster: Cluster, old_tree: Path) -> None:
    """Without --label a new agent works with the old server; with one, it is told plainly."""
    env = _old_python(old_tree)
    old = [sys.executable, "-m", "lotc.cli"]
    cluster_env: dict[str, str] = {}  # the admin token, once made

    def old_lotc(*args: str) -> str:
        return subprocess.run([*old, *args], cwd=old_tree, env={**env, **cluster_env}, text=True,
                              capture_output=True, check=True, timeout=60).stdout

    token = old_lotc("token", "create", "--agent", "n1", "--db", str(cluster.db)).strip()
    cluster_env["LOTC_TOKEN"] = old_lotc("token", "create", "--admin", "adm", "--db",
                                         str(cluster.db)).strip()
    log = (cluster.root / "old-server.log").open("ab")
    cluster.server = subprocess.Popen(  # the fixture kills it, even on failure
        [*old, "server", "--db", str(cluster.db), "--listen", f"127.0.0.1:{cluster.agent_port}",
         "--admin-listen", f"127.0.0.1:{cluster.admin_port}"],
        cwd=old_tree, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def online() -> bool:
        try:
            out = old_lotc("console", "--server", f"127.0.0.1:{cluster.admin_port}", "--name",
                           "adm", "-c", "agents", "--json")
        except subprocess.CalledProcessError:
            return False  # not listening yet
        return any(a["name"] == "n1" and a["online"] for a in json.loads(out)["agents"])

    cluster.start_agent("n1", token=token)
    wait_until(online, timeout=30, what="a new agent without labels online on the old server")
    cluster.kill_agent("n1")

    cluster.start_agent("n1", token=token, extra=("--label", "role=web"))
    wait_until(lambda: "the server is older than this agent" in cluster.agent_log("n1"),
               timeout=30, what="the agent says why the old server cut it off")
    assert "run this agent without --label" in cluster.agent_log("n1")
