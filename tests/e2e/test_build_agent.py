"""The single-file agent: built by `lotc build-agent`, run by the system's bare python3.

The archive is copied into an empty directory and started with
`/usr/bin/python3 -I` and a scrubbed environment, so neither the project,
its venv nor the pyenv shim can help it; it must reach the real server and
show online in `agents`.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import LOTC, START_TIMEOUT_S, Cluster

SYSTEM_PYTHON = Path("/usr/bin/python3")
BUILD_TIMEOUT_S = 60.0
REBUILD_ATTEMPTS = 3

pytestmark = pytest.mark.skipif(not SYSTEM_PYTHON.exists(),
                                reason="no system /usr/bin/python3 to run the agent file with")


def build(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([*LOTC, "build-agent", "-o", str(out)], check=False, capture_output=True,
                            text=True, timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "psutil==" in result.stdout
    return out


@pytest.fixture(scope="module")
def agent_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("build") / "lotc-agent.pyz")


def bare_env(home: Path) -> dict[str, str]:
    """What a node's service manager might give: no PYTHON*, no venv, no pyenv."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


@pytest.fixture
def node(tmp_path: Path, agent_file: Path) -> Iterator[Path]:
    """An empty directory holding only the agent file, as on a fresh node."""
    node = tmp_path / "node"
    (node / "home").mkdir(parents=True)
    shutil.copy2(agent_file, node / "lotc-agent.pyz")
    yield node


def test_version_with_bare_python(node: Path) -> None:
    result = subprocess.run([str(SYSTEM_PYTHON), "-I", "lotc-agent.pyz", "--version"],
                            cwd=node, env=bare_env(node / "home"), check=False, capture_output=True,
                            text=True, timeout=START_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("lotc-agent ")
    # psutil's compiled extension came out of the archive into the cache, keyed by hash
    cache = node / "home" / ".cache" / "lotc-agent"
    assert list(cache.glob("*/psutil/_psutil_linux*.so"))


def test_runs_as_executable(node: Path) -> None:
    """`./lotc-agent.pyz` works too: the shebang finds python3 on PATH."""
    result = subprocess.run(["./lotc-agent.pyz", "--version"], cwd=node,
                            env=bare_env(node / "home"), check=False, capture_output=True, text=True,
                            timeout=START_TIMEOUT_S)
    assert result.returncode == 0, result.stderr


def test_agent_file_connects_to_real_server(cluster: Cluster, node: Path) -> None:
    cluster.start_server()
    token_file = node / "token"
    token_file.write_text(cluster.token("agent", "pyz-1"))
    token_file.chmod(0o600)
    log = (cluster.root / "agent-pyz-1.log").open("ab")
    proc = subprocess.Popen(
        [str(SYSTEM_PYTHON), "-I", "lotc-agent.pyz", "--server",
         f"127.0.0.1:{cluster.agent_port}", "--name", "pyz-1", "--token-file", str(token_file),
         "--state-dir", str(node / "state")],
        cwd=node, env=bare_env(node / "home"), stdout=log, stderr=log,
        stdin=subprocess.DEVNULL)
    cluster.agents["pyz-1"] = proc  # the fixture kills it, whatever happens here
    cluster.wait_online("pyz-1")
    agent = cluster.agents_view()["pyz-1"]
    assert agent["version"].startswith("lotc ")
    assert proc.poll() is None, cluster.agent_log("pyz-1")


def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    """Two builds, to other paths at other times, give the same bytes.

    Other work may edit the source tree between two builds (a shared checkout):
    a difference is retried a few times before it counts, which no real
    non-determinism survives.
    """
    digests: list[tuple[str, str]] = []
    for attempt in range(REBUILD_ATTEMPTS):
        pair = tuple(
            hashlib.sha256(build(tmp_path / f"{attempt}-{side}" / "lotc-agent.pyz")
                           .read_bytes()).hexdigest()
            for side in ("a", "b"))
        if pair[0] == pair[1]:
            return
        digests.append((pair[0], pair[1]))
    raise AssertionError(f"builds differ every time: {digests}")
