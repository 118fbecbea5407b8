"""One bundle upload in progress on an agent (see lotc/agent/store.py for the layout).

Chunks must arrive in order: each `write(offset, data)` must start exactly at
`received`, so a sender that reconnects asks BEGIN again, reads `received` and
continues from there. Data goes straight to disk and into the running SHA-256;
nothing beyond the current chunk is held in memory.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lotc.agent import archive
from lotc.errors import ChecksumMismatch, InvalidRequest, StorageFull, TooLarge
from protocol.enums import BundleKind

if TYPE_CHECKING:
    from lotc.agent.store import BundleInfo, BundleStore

__all__ = ["Upload", "UploadSpec"]

logger = logging.getLogger(__name__)

_REHASH_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class UploadSpec:
    """What BUNDLE_BEGIN announced."""

    name: str
    kind: BundleKind
    size: int
    sha256: str  # lowercase hex


class _State(Enum):
    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"
    STORED = "already stored"  # this exact version was current when BEGIN arrived


class Upload:
    """Created by `BundleStore.begin`; never directly."""

    def __init__(self, spec: UploadSpec, *, store: BundleStore | None = None,
                 updir: Path | None = None, received: int = 0, digest: Any = None,
                 stored: BundleInfo | None = None) -> None:
        self.spec = spec
        self._store = store
        self._updir = updir
        self._received = received
        self._digest = digest
        self._stored = stored
        self._fd: int | None = None
        self._state = _State.STORED if stored is not None else _State.OPEN

    @classmethod
    def open(cls, spec: UploadSpec, updir: Path, store: BundleStore) -> Upload:
        """Open (or reopen after a restart) incoming/<name>/data, re-hashing what it holds."""
        data = updir / "data"
        digest = hashlib.sha256()
        fd = os.open(data, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            received = 0
            while received < spec.size and (block := os.read(
                    fd, min(_REHASH_BLOCK, spec.size - received))):
                digest.update(block)
                received += len(block)
            os.ftruncate(fd, received)  # drop anything past the announced size
            os.lseek(fd, received, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        upload = cls(spec, store=store, updir=updir, received=received, digest=digest)
        upload._fd = fd
        return upload

    @classmethod
    def already_stored(cls, spec: UploadSpec, info: BundleInfo) -> Upload:
        return cls(spec, received=spec.size, stored=info)

    @property
    def received(self) -> int:
        """Bytes received so far: where the next chunk must start."""
        return self._received

    @property
    def is_open(self) -> bool:
        return self._state is _State.OPEN

    def write(self, offset: int, data: bytes) -> None:
        name = self.spec.name
        if self._state not in (_State.OPEN, _State.STORED):
            raise InvalidRequest(f"upload of bundle {name!r} is {self._state.value}")
        if offset != self._received:
            raise InvalidRequest(f"bundle {name!r}: chunk at offset {offset}, expected "
                                 f"{self._received} (chunks must arrive in order)")
        if self._received + len(data) > self.spec.size:
            if self._state is _State.OPEN:
                self.abort()
            raise TooLarge(f"bundle {name!r}: more data than the announced "
                           f"{self.spec.size} bytes")
        if not data:
            return
        assert self._fd is not None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.abort()
                raise StorageFull(f"no space left for bundle {name!r} "
                                  f"({self.spec.size} bytes)") from exc
            raise
        self._digest.update(data)
        self._received += len(data)

    def commit(self) -> BundleInfo:
        """Verify and install; afterwards `store.get(name)` serves the new version."""
        if self._state is _State.STORED:
            assert self._stored is not None
            return self._stored
        name = self.spec.name
        if self._state is not _State.OPEN:
            raise InvalidRequest(f"upload of bundle {name!r} is {self._state.value}")
        if self._received != self.spec.size:
            raise InvalidRequest(f"bundle {name!r} is incomplete: {self._received} of "
                                 f"{self.spec.size} bytes received")
        actual = self._digest.hexdigest()
        if actual != self.spec.sha256:
            self.abort()
            raise ChecksumMismatch(f"bundle {name!r}: received data has SHA-256 {actual}, "
                                   f"expected {self.spec.sha256}")
        assert self._store is not None and self._updir is not None and self._fd is not None
        os.fsync(self._fd)
        self._close_fd()
        try:
            info = self._store._install(self, self._updir / "data")
        except BaseException:
            self.abort()
            raise
        self._state = _State.COMMITTED
        self._cleanup()
        return info

    def abort(self) -> None:
        """Drop the upload and its data (a no-op once finished)."""
        if self._state is _State.OPEN:
            self._state = _State.ABORTED
            self._cleanup()

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _cleanup(self) -> None:
        self._close_fd()
        if self._updir is not None:
            archive.remove_tree(self._updir)
        if self._store is not None:
            self._store._forget(self)
