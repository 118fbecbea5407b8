"""The node-side scripts of `lotc deploy`, run by the local sh (no SSH needed)."""
from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from lotc.deploy_remote import (
    PROBE,
    AgentSettings,
    configure_script,
    parse_probe,
    run_script,
)


def sh(script: str, *args: str) -> str:
    return subprocess.run(["sh", "-s", "--", *args], input=script, capture_output=True,
                          text=True, check=True, timeout=10).stdout


def test_configure_script_writes_files_with_modes(tmp_path: Path) -> None:
    tricky = "tok'en $HOME `id` \"q\"\nLOTC_EOF_x\n"
    script = configure_script(str(tmp_path), {
        str(tmp_path / "token"): (0o600, tricky),
        str(tmp_path / "run"): (0o755, "#!/bin/sh\necho hi\n"),
    }, "\necho started \"$1\"\n")
    assert sh(script).strip() == f"started {tmp_path}"
    assert (tmp_path / "token").read_text() == tricky
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755
    assert not list(tmp_path.glob("*.new"))


def test_run_script_quotes_its_arguments(tmp_path: Path) -> None:
    settings = AgentSettings("node-1", "host with space:7370", "/usr/bin/python3",
                             ntp=("pool.ntp.org",), labels=("role=web", "zone=a"))
    text = run_script(settings)
    assert "'host with space:7370'" in text and "--ntp pool.ntp.org" in text
    assert "--label role=web --label zone=a" in text
    assert '--token-file "$PWD/token"' in text


def test_probe_reports_the_node(tmp_path: Path) -> None:
    (tmp_path / "agent.conf").write_text("name=node-1\nserver=h:7370\nmode=nohup\n")
    (tmp_path / "token").write_text("t")
    facts = parse_probe(sh(PROBE, str(tmp_path), "/usr/bin/env"))
    assert facts["dir"] == str(tmp_path)
    assert facts["conf_name"] == "node-1" and facts["conf_mode"] == "nohup"
    assert facts["has_token"] == "yes"
    assert facts["systemd"] in {"yes", "no"}
    assert "running_pid" not in facts
