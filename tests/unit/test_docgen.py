"""docs/protocol.md is generated from the spec and kept up to date."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from protocol import docgen, spec, walk
from protocol.enums import ProcessState
from protocol.errors import ErrorCode


def test_committed_protocol_md_is_up_to_date() -> None:
    assert docgen.main(["--check"]) == 0, "regenerate with: python -m protocol.docgen"


def test_check_exits_1_when_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "protocol.md"
    stale.write_text("old\n")
    monkeypatch.setattr(walk, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(docgen, "TARGET", stale)
    assert docgen.main(["--check"]) == 1
    assert stale.read_text() == "old\n"
    assert docgen.main([]) == 0 and docgen.main(["--check"]) == 0


def test_command_line_check() -> None:
    out = subprocess.run([sys.executable, "-m", "protocol.docgen", "--check"],
                         cwd=walk.REPO_ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_document_covers_the_whole_spec() -> None:
    text = docgen.render()
    assert text.startswith(docgen.BANNER)
    for message_type, node in walk.messages():
        assert f"### {message_type.name} ({int(message_type)})" in text
        for field in node.fields:
            assert f"`{field.name}`" in text
    for name in spec.SHARED_STRUCTS:
        assert f"### {name}" in text
    for code in ErrorCode:
        assert f"| {int(code)} | `{code.name}` |" in text
    for state in ProcessState:
        assert f"| {int(state)} | `{state.name}` |" in text
    assert "| 10 | `body_length` | `u32` | 4 |" in text  # header offsets and sizes
    assert "suspended with SIGSTOP" in text  # enum member notes come from enums.py comments


def test_fixed_offsets_stop_at_the_first_variable_field() -> None:
    rows = docgen.field_table(walk.body(spec.MessageType.TIME_INFO))
    assert rows[2].startswith("| 0 | `source` | `str16` | variable")
    assert rows[3].startswith("| — | `offset_us` | `i64` | 8")
