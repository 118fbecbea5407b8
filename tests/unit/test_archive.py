"""Safe TAR extraction: every kind of hostile archive is refused, naming the member."""
from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lotc.agent.archive import ArchiveLimits, remove_tree, safe_extract
from lotc.errors import BadBundle

LIMITS = ArchiveLimits(max_bytes=1024 * 1024, max_members=100)

Member = tuple[str, Callable[[tarfile.TarInfo], None], bytes]


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> Member:
    def setup(info: tarfile.TarInfo) -> None:
        info.type = tarfile.REGTYPE
        info.mode = mode
    return name, setup, data


def _typed(name: str, kind: bytes, linkname: str = "") -> Member:
    def setup(info: tarfile.TarInfo) -> None:
        info.type = kind
        info.linkname = linkname
        info.mode = 0o755
    return name, setup, b""


def _build(path: Path, members: list[Member]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, setup, data in members:
            info = tarfile.TarInfo(name)
            setup(info)
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _extract(tmp_path: Path, members: list[Member], limits: ArchiveLimits = LIMITS) -> Path:
    archive = _build(tmp_path / "a.tar", members)
    dest = tmp_path / "dest"
    dest.mkdir()
    safe_extract(archive, dest, limits)
    return dest


def test_plain_tree_extracts_with_exec_bits(tmp_path: Path) -> None:
    dest = _extract(tmp_path, [
        _typed("./", tarfile.DIRTYPE),
        _typed("bin", tarfile.DIRTYPE),
        _file("bin/run", b"#!/bin/sh\n", 0o755),
        _file("data.txt", b"hello"),
        _typed("link", tarfile.SYMTYPE, "bin/run"),
        _typed("bin/hard", tarfile.LNKTYPE, "bin/run"),
    ])
    assert (dest / "data.txt").read_bytes() == b"hello"
    assert os.stat(dest / "bin/run").st_mode & stat.S_IXUSR
    assert not os.stat(dest / "data.txt").st_mode & stat.S_IXUSR
    assert os.readlink(dest / "link") == "bin/run"
    assert os.stat(dest / "bin/hard").st_ino == os.stat(dest / "bin/run").st_ino


HOSTILE: dict[str, tuple[list[Member], str]] = {
    "absolute path": ([_file("/etc/evil")], "absolute path"),
    "dotdot": ([_file("../evil")], "'..'"),
    "dotdot inside": ([_typed("a", tarfile.DIRTYPE), _file("a/../../evil")], "'..'"),
    "char device": ([_typed("tty", tarfile.CHRTYPE)], "device or FIFO"),
    "block device": ([_typed("sda", tarfile.BLKTYPE)], "device or FIFO"),
    "fifo": ([_typed("pipe", tarfile.FIFOTYPE)], "device or FIFO"),
    "absolute symlink": ([_typed("etc", tarfile.SYMTYPE, "/etc")], "absolute path"),
    "escaping symlink": ([_typed("up", tarfile.SYMTYPE, "../../etc")], "outside the bundle"),
    "escaping nested symlink": ([_typed("a", tarfile.DIRTYPE),
                                 _typed("a/up", tarfile.SYMTYPE, "../..")], "outside the bundle"),
    "write through symlink": ([_typed("d", tarfile.SYMTYPE, "."),
                               _file("d/x")], "under symlink 'd'"),
    "chained symlinks": ([_typed("a", tarfile.DIRTYPE), _typed("a/b", tarfile.DIRTYPE),
                          _typed("a/b/l", tarfile.SYMTYPE, "../.."),
                          _typed("a/b/l/m", tarfile.SYMTYPE, "../../..")], "under symlink"),
    "escaping hard link": ([_typed("h", tarfile.LNKTYPE, "../../etc/passwd")],
                           "outside the bundle"),
    "absolute hard link": ([_typed("h", tarfile.LNKTYPE, "/etc/passwd")], "absolute path"),
    "hard link to nothing": ([_typed("h", tarfile.LNKTYPE, "missing")], "not an earlier file"),
    "duplicate member": ([_file("a"), _file("a")], "appears twice"),
    "file replaced by dir": ([_file("a"), _file("a/b")], "under file 'a'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_rejected(tmp_path: Path, case: str) -> None:
    members, message = HOSTILE[case]
    with pytest.raises(BadBundle, match=message):
        _extract(tmp_path, members)
    assert not any((tmp_path / "dest").iterdir()), "nothing may be written"
    assert not (tmp_path / "evil").exists()


def test_tar_bomb_rejected(tmp_path: Path) -> None:
    limits = ArchiveLimits(max_bytes=1000, max_members=100)
    with pytest.raises(BadBundle, match="expands past the limit of 1000 bytes at member 'b'"):
        _extract(tmp_path, [_file("a", b"x" * 600), _file("b", b"y" * 600)], limits)


def test_too_many_members_rejected(tmp_path: Path) -> None:
    limits = ArchiveLimits(max_bytes=10_000, max_members=5)
    with pytest.raises(BadBundle, match="more than 5 members"):
        _extract(tmp_path, [_file(f"f{i}") for i in range(6)], limits)


def test_sparse_member_rejected(tmp_path: Path) -> None:
    def sparse(info: tarfile.TarInfo) -> None:
        info.type = tarfile.GNUTYPE_SPARSE
    with pytest.raises(BadBundle, match="sparse|unsupported type"):
        _extract(tmp_path, [("s", sparse, b"")])


def test_compressed_or_garbage_rejected(tmp_path: Path) -> None:
    garbage = tmp_path / "g.tar"
    garbage.write_bytes(b"\x1f\x8b" + os.urandom(2000))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BadBundle, match="tar"):
        safe_extract(garbage, dest, LIMITS)


def test_remove_tree_copes_with_read_only_dirs(tmp_path: Path) -> None:
    dest = _extract(tmp_path, [_typed("ro", tarfile.DIRTYPE), _file("ro/f")])
    os.chmod(dest / "ro", 0o500)
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o500)
    os.symlink(outside, dest / "to_outside")
    remove_tree(dest)
    assert not dest.exists()
    assert stat.S_IMODE(outside.stat().st_mode) == 0o500, "links are never followed"
