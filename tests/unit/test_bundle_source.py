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


def test_file_is_sent_as_is(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(os.urandom(1000))
    with pack(f) as packed:
        assert packed.kind is BundleKind.FILE and packed.size == 1000
        assert packed.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
        assert b"".join(d for _, d in packed.chunks(chunk_size=300)) == f.read_bytes()
        assert [o for o, _ in packed.chunks(chunk_size=300, start=600)] == [600, 900]
    assert f.exists(), "closing never removes the user's file"


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
