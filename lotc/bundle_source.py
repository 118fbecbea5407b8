"""Turn a local file or directory into the bytes of a bundle upload.

A directory becomes an uncompressed tar (BundleKind.TAR) built
deterministically: entries sorted by name, mtime, uid and gid zeroed, owner
names empty, permission bits kept. So the same tree always gives the same
SHA-256, and re-uploading an unchanged tree is a no-op on agents that already
hold it.

A single file is sent the same way, as a tar of that one file under its own
name (mode 0755: a single file is meant to be run). Its name has to reach the
agent, and BUNDLE_BEGIN has no field for it: `upload n tool ./tool.py` must
give a bundle in which `python3 tool.py` runs (a raw FILE upload is stored
under the bundle's name, `tool`). The tar carries the name in the data itself,
so every agent, of this release or the previous one, stores it right. What ran
before keeps running: given the bundle's name (`alias`), the tar also holds a
relative symlink of that name to the file (`./tool`, `python3 tool` as ever).
Agents still accept raw FILE uploads (from older consoles).

BUNDLE_BEGIN needs the size and the hash before the first chunk, so a
directory is packed once into a temporary file (hashed while written) and then
streamed from there; nothing is held in memory beyond one chunk.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Self, cast

from lotc.errors import BadBundle, InvalidRequest
from protocol.enums import BundleKind

__all__ = ["CHUNK_SIZE", "PackedBundle", "pack"]

logger = logging.getLogger(__name__)

CHUNK_SIZE = 256 * 1024  # bytes per BUNDLE_CHUNK; well under the frame limit


@dataclass(frozen=True)
class PackedBundle:
    """A bundle ready to upload: its kind, size, SHA-256 (hex) and where its bytes are.

    Use as a context manager (or call `close()`) so a temporary tar is removed.
    """

    kind: BundleKind
    size: int
    sha256: str
    source: Path
    temporary: bool = False

    def open(self) -> BinaryIO:
        return self.source.open("rb")

    def chunks(self, chunk_size: int = CHUNK_SIZE, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield (offset, data) from `start` on; `start` resumes an interrupted upload."""
        with self.open() as f:
            f.seek(start)
            offset = start
            while data := f.read(chunk_size):
                yield offset, data
                offset += len(data)

    def close(self) -> None:
        if self.temporary:
            self.source.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def pack(path: str | os.PathLike[str], tmp_dir: Path | None = None, *,
         alias: str | None = None) -> PackedBundle:
    """Pack a file or a directory as a deterministic tar (see the module doc). A single
    file also answers to `alias` (the bundle's name) when that differs from its own."""
    p = Path(path)
    try:
        st = p.stat()  # follows a symlink given on the command line: the user meant its target
    except FileNotFoundError:
        raise InvalidRequest(f"cannot upload {p}: no such file or directory") from None
    if stat.S_ISREG(st.st_mode):
        return _pack_tar(lambda tar: _add_single_file(tar, p, st, alias), tmp_dir)
    if stat.S_ISDIR(st.st_mode):
        root = p.resolve()
        return _pack_tar(lambda tar: _add_tree(tar, root), tmp_dir)
    raise BadBundle(f"cannot upload {p}: {_describe(st.st_mode)} is not a file or a directory")


class _HashingWriter:
    """File wrapper that hashes and counts what tarfile writes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.raw.write(data)


def _pack_tar(add_members: Callable[[tarfile.TarFile], None],
              tmp_dir: Path | None) -> PackedBundle:
    fd, name = tempfile.mkstemp(prefix="lotc-bundle-", suffix=".tar", dir=tmp_dir)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as raw:
            writer = _HashingWriter(raw)
            # in stream mode ("w|") tarfile only calls write() on its file object
            fileobj = cast(IO[bytes], writer)
            with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                add_members(tar)
        return PackedBundle(BundleKind.TAR, writer.size, writer.digest.hexdigest(), tmp, True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _add_tree(tar: tarfile.TarFile, root: Path) -> None:
    for rel in _walk_sorted(root, ""):
        _add_entry(tar, root, rel)


def _add_single_file(tar: tarfile.TarFile, path: Path, st: os.stat_result,
                     alias: str | None) -> None:
    """The file under the name it was given (a symlink on the command line: its target's
    bytes, the link's name, as the user typed it), and `alias` linking to it."""
    members = sorted({path.name, alias or path.name})
    for name in members:  # sorted: the same input always gives the same SHA-256
        info = _base_info(name, st)
        if name == path.name:
            info.type, info.mode, info.size = tarfile.REGTYPE, 0o755, st.st_size
            with path.open("rb") as f:
                tar.addfile(info, f)
        else:
            info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, path.name
            tar.addfile(info)


def _walk_sorted(root: Path, rel: str) -> Iterator[str]:
    """Relative paths of every entry under root/rel, parents before children, sorted."""
    with os.scandir(root / rel if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        child = f"{rel}/{entry.name}" if rel else entry.name
        yield child
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_sorted(root, child)


def _base_info(rel: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode) & 0o777  # no setuid/setgid/sticky in bundles
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_entry(tar: tarfile.TarFile, root: Path, rel: str) -> None:
    full = root / rel
    st = full.lstat()
    info = _base_info(rel, st)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        # hard links inside the tree are stored as separate files: simpler and deterministic
        info.type = tarfile.REGTYPE
        info.size = st.st_size
        with full.open("rb") as f:
            tar.addfile(info, f)
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.mode = 0o777
        info.linkname = _link_target(root, full, rel)
        tar.addfile(info)
    else:
        raise BadBundle(f"cannot pack {full}: {_describe(st.st_mode)} is not a regular file, "
                        "directory or symlink")


def _link_target(root: Path, link: Path, rel: str) -> str:
    """The link's target, relative, after checking it stays inside the tree."""
    target = os.readlink(link)
    resolved = os.path.realpath(link)
    if resolved != str(root) and not resolved.startswith(str(root) + os.sep):
        raise BadBundle(f"cannot pack {link}: symlink {rel} -> {target} points outside {root}")
    lexical = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if os.path.isabs(target) or lexical == ".." or lexical.startswith("../"):
        # an absolute link would dangle once the bundle lives elsewhere, and the store
        # checks targets lexically: rewrite both as a plain relative path
        target = os.path.relpath(resolved, link.parent.resolve())
    return target


def _describe(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "a special file"
