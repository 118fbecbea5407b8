"""Packing local paths for upload: deterministic tars, refused links and special files."""
from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import pytest

from lotc.bundle_source import pack
from lotc.errors import BadBundle, InvalidRequest
from protocol.enums import BundleKind


def _tree(root: Path) -> Path:
    (root / "b" / "c").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "b" / "c" / "run").write_text("#!/bin/sh\n")
    (root / "b" / "c" / "run").chmod(0o755)
    (root / "link").symlink_to("b/c/run")
    return root


def test_file_is_sent_as_a_tar_under_its_own_name(tmp_path: Path) -> None:
    """Issue 14 item 7: the file's name travels with it (BUNDLE_BEGIN has no field for it),
    so `upload n tool ./tool.py` gives a bundle where `python3 tool.py` runs."""
    f = tmp_path / "tool.py"
    f.write_bytes(os.urandom(1000))
    f.chmod(0o600)
    link = tmp_path / "latest.py"
    link.symlink_to(f)
    with pack(f) as packed, pack(link) as linked, pack(f) as again:
        assert packed.kind is BundleKind.TAR and packed.sha256 == again.sha256
        data = b"".join(d for _, d in packed.chunks(chunk_size=300))
        assert len(data) == packed.size
        assert hashlib.sha256(data).hexdigest() == packed.sha256
        assert [o for o, _ in packed.chunks(chunk_size=300, start=600)][:2] == [600, 900]
        with tarfile.open(packed.source) as tar:
            [member] = tar.getmembers()
            assert (member.name, member.mode, member.isfile()) == ("tool.py", 0o755, True)
            assert tar.extractfile(member).read() == f.read_bytes()  # type: ignore[union-attr]
        with tarfile.open(linked.source) as tar:
            assert tar.getnames() == ["latest.py"], "the name typed, the target's bytes"
        tmp = packed.source
    with pack(f, alias="tool") as aliased, pack(f, alias="tool.py") as same:
        with tarfile.open(aliased.source) as tar:  # what ran by the bundle's name still runs
            assert tar.getnames() == ["tool", "tool.py"]
            assert tar.getmember("tool").issym() and tar.getmember("tool").linkname == "tool.py"
        with tarfile.open(same.source) as tar:
            assert tar.getnames() == ["tool.py"]
    assert not tmp.exists() and f.exists(), "closing removes only the temporary tar"


def test_directory_tar_is_deterministic(tmp_path: Path) -> None:
    one = _tree(tmp_path / "one")
    two = _tree(tmp_path / "two")
    os.utime(two / "a.txt", (1, 1))  # mtimes and creation order must not matter
    with pack(one) as p1, pack(two) as p2:
        assert p1.kind is BundleKind.TAR and p1.sha256 == p2.sha256 and p1.size == p2.size
        with tarfile.open(p1.source) as tar:
            members = tar.getmembers()
        assert [m.name for m in members] == ["a.txt", "b", "b/c", "b/c/run", "link"]
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
        assert members[3].mode == 0o755 and members[4].linkname == "b/c/run"
        tmp = p1.source
    assert not tmp.exists(), "the temporary tar is removed on close"
    (two / "a.txt").write_text("changed")
    with pack(one) as p1, pack(two) as p2:
        assert p1.sha256 != p2.sha256


def test_absolute_link_inside_tree_becomes_relative(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    (root / "b" / "abs").symlink_to(root / "a.txt")
    with pack(root) as packed, tarfile.open(packed.source) as tar:
        assert tar.getmember("b/abs").linkname == "../a.txt"


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside", "../src/../../x"])
def test_link_out_of_tree_refused(tmp_path: Path, target: str) -> None:
    root = _tree(tmp_path / "src")
    (root / "evil").symlink_to(target)
    with pytest.raises(BadBundle, match="symlink evil -> .* points outside"):
        pack(root)


def test_special_files_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    os.mkfifo(root / "b" / "pipe")
    with pytest.raises(BadBundle, match="pipe: a FIFO is not a regular file"):
        pack(root)
    with pytest.raises(BadBundle, match="a FIFO is not a file or a directory"):
        pack(root / "b" / "pipe")


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="no such file"):
        pack(tmp_path / "nope")
