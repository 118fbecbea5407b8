"""Bundle bytes on the server's disk, one file per SHA-256.

The server keeps every uploaded bundle so it can push it to an agent that
reconnects later. Blobs live beside the database, in `<db stem>-blobs/`,
named by their SHA-256 in hex; the same bundle loaded on many agents is
stored once. An upload is written to `<hex>.partial` (so a broken upload can
resume from its length) and only becomes a blob by `commit`, which checks
the hash, makes the bytes durable and renames atomically: a blob file that
exists is always complete and correct.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

from lotc.errors import ChecksumMismatch, InvalidRequest

__all__ = ["PARTIAL_SUFFIX", "BlobStore"]

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
HASH_READ_SIZE = 1024 * 1024


def _hex(sha256: bytes) -> str:
    if len(sha256) != 32:
        raise InvalidRequest(f"a SHA-256 is 32 bytes, not {len(sha256)}")
    return sha256.hex()


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(HASH_READ_SIZE):
            digest.update(block)
    return digest.digest()


class BlobStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory  # created on first write: `lotc token` never needs it

    def path(self, sha256: bytes) -> Path:
        return self.directory / _hex(sha256)

    def partial_path(self, sha256: bytes) -> Path:
        """Where an upload of this content is written until it is committed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory / (_hex(sha256) + PARTIAL_SUFFIX)

    def has(self, sha256: bytes) -> bool:
        return self.path(sha256).is_file()

    def commit(self, temp_path: Path, sha256: bytes, verify: bool = True) -> Path:
        """Make `temp_path` the blob of `sha256`; ChecksumMismatch (and no blob) if it is not.

        `verify=False` is for callers that hashed the bytes while receiving them.
        """
        final = self.path(sha256)
        if verify and file_sha256(temp_path) != sha256:
            temp_path.unlink(missing_ok=True)
            raise ChecksumMismatch(f"content does not match SHA-256 {sha256.hex()}")
        self.directory.mkdir(parents=True, exist_ok=True)
        # Durable before visible: after a crash a blob file is complete or absent.
        with temp_path.open("rb") as file:
            os.fsync(file.fileno())
        os.replace(temp_path, final)
        self._sync_directory()
        return final

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def prune(self, keep: Iterable[bytes], partial_max_age_s: float | None = None) -> int:
        """Delete blobs not in `keep` (and partial uploads older than the age, if given)."""
        if not self.directory.is_dir():
            return 0
        wanted = {sha.hex() for sha in keep}
        oldest_partial = None if partial_max_age_s is None else time.time() - partial_max_age_s
        removed = 0
        for entry in self.directory.iterdir():
            if entry.name.endswith(PARTIAL_SUFFIX):
                if oldest_partial is None or entry.stat().st_mtime >= oldest_partial:
                    continue
            elif entry.name in wanted:
                continue
            entry.unlink(missing_ok=True)
            removed += 1
        if removed:
            logger.info("pruned %d unused blob file(s) from %s", removed, self.directory)
        return removed
