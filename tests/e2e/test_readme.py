"""Issue 14 item 2: the README's "By hand" block runs as written, so it cannot rot.

The block is taken from README.md and run by /bin/sh, line after line as a user
would type them, in an empty directory with the venv's bin first on PATH. The
only changes: the interactive `lotc console` is skipped, and the default ports
become free ones (other servers may run on this machine), each substitution
checked so that a README edit cannot silently bypass it. Whatever the block
leaves running is found (by working directory) and killed, even on failure.
"""
from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import psutil

from tests.cluster import free_port, wait_until

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK_TIMEOUT_S = 120.0
GONE_TIMEOUT_S = 15.0
INTERACTIVE = {"lotc console"}  # lines that need a terminal and a person


def by_hand_block() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## By hand"):]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "README.md: no ```sh block under '## By hand'"
    return match.group(1).splitlines()


def command_part(line: str) -> str:
    return line.split(" #", 1)[0].strip()


def runnable(lines: list[str], agent_port: int, admin_port: int) -> str:
    script = [line for line in lines if command_part(line) not in INTERACTIVE]
    assert len(script) == len(lines) - 1, "the block should have one interactive console line"
    text = "\n".join(script)
    for old, new in [
        ("lotc server --db lotc.db", (f"lotc server --db lotc.db --listen 127.0.0.1:{agent_port}"
                                      f" --admin-listen 127.0.0.1:{admin_port}")),
        ("--server 127.0.0.1:7370", f"--server 127.0.0.1:{agent_port}"),
    ]:
        assert old in text, f"README block changed: {old!r} is gone; update this test"
        text = text.replace(old, new)
    return "set -e\n" + text + "\n"


def left_running(root: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cwd", "status"]):
        cwd = proc.info.get("cwd") or ""
        if (cwd == str(root) or cwd.startswith(str(root) + os.sep)) \
                and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def kill_all(root: Path) -> None:
    for proc in left_running(root):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def test_the_by_hand_block_runs_as_written(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    agent_port, admin_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOTC_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
               LOTC_SERVER=f"127.0.0.1:{admin_port}")  # the console's default, moved
    script = root.parent / "by-hand.sh"
    script.write_text(runnable(by_hand_block(), agent_port, admin_port))
    try:
        result = subprocess.run(["/bin/sh", str(script)], cwd=root, env=env, text=True,
                                capture_output=True, timeout=BLOCK_TIMEOUT_S,
                                stdin=subprocess.DEVNULL, start_new_session=True, check=False)
        report = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        assert result.returncode == 0, report
        assert "node-1  online" in result.stdout, report  # `wait node-1`
        assert "node-1  ok  started pid" in result.stdout, report
        assert "node-1  ok  schedule 1 set" in result.stdout, report
        assert "node-1  ok  terminated" in result.stdout, report
        assert "authentication failed" not in result.stderr, report
        for token in ("alice.token", "node-1.token"):
            assert stat.S_IMODE((root / token).stat().st_mode) == 0o600
        assert (root / "lotc.db").exists() and (root / "lotc-agent-state").is_dir()
        # the teardown leaves nothing behind: not the server, the agent or the app
        wait_until(lambda: not left_running(root), GONE_TIMEOUT_S,
                   what="nothing left running from the README block")
    finally:
        kill_all(root)
