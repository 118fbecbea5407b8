"""lotc/agent/identity.py on real files and users: the env file's rules, and a real
non-root process refusing --user (a forked child that drops to nobody)."""
from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from lotc.agent.identity import identity_for, read_env_file
from lotc.errors import SpawnFailed


def test_env_file_lines(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("# c\n\nA=1\nexport B = two words \nC='q'\nD=\"x=y\"\nE=\n")
    assert read_env_file(tmp_path, "a.env") == {"A": "1", "B": "two words", "C": "q",
                                                 "D": "x=y", "E": ""}


@pytest.mark.parametrize("line", ["no equals sign", "=value", "1A=x", "A B=x"])
def test_bad_env_line_names_file_and_line_not_its_text(tmp_path: Path, line: str) -> None:
    (tmp_path / "a.env").write_text(f"A=1\n{line}\n")
    with pytest.raises(SpawnFailed) as info:
        read_env_file(tmp_path, "a.env")
    assert str(info.value).startswith("a.env:2: not a KEY=VALUE line")
    assert line not in str(info.value)


def test_env_file_link_leaving_the_bundle_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    (tmp_path / "outside.env").write_text("A=1\n")
    (bundle / "link.env").symlink_to(tmp_path / "outside.env")
    with pytest.raises(SpawnFailed, match="leaves the bundle"):
        read_env_file(bundle, "link.env")
    with pytest.raises(SpawnFailed, match="No such file"):
        read_env_file(bundle, "missing.env")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_an_agent_not_root_refuses_user(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a process that is not root, as an agent run by a user
        os.close(read_end)
        try:
            os.setuid(pwd.getpwnam("nobody").pw_uid)
            identity_for(0, "root", tmp_path)
            message = b"accepted"
        except SpawnFailed as exc:
            message = str(exc).encode()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, never raised
            message = repr(exc).encode()
        os.write(write_end, message)
        os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as reader:
            said = reader.read().decode()
    finally:
        os.waitpid(pid, 0)
    assert said.startswith("--user root: this agent does not run as root"), said
