"""The agent's bundle store: code bundles kept by name and SHA-256, replaced atomically.

Theory of operation. Layout under the store's root:

    bundles/<name>          symlink -> ../versions/<vid>: the current version of <name>
    versions/<vid>/meta.json  name, sha256, kind, size, stored_at, entry
    versions/<vid>/tree/    what processes run in (a TAR's tree; a FILE as tree/<name>)
    incoming/<name>/        an upload in progress: meta.json + data (resumable)
    incoming/.build-<rand>/ a commit being staged (extracted, then moved to versions/)

An upload is appended chunk by chunk to incoming/<name>/data, hashed as it
arrives. Commit checks the size and SHA-256, stages the new version in a build
dir (a FILE is renamed in, a TAR is extracted by lotc.agent.archive), flushes
it to disk, renames the build dir into versions/ and finally swaps the
bundles/<name> symlink with rename(2). Every step before the swap is
invisible; the swap is atomic; so a crash at any moment leaves either the old
version or the new one, never a partial one. On start, anything no symlink
points at (build dirs, orphan versions, temporary links) is removed; a partial
upload younger than `stale_after` is kept, so the sender can resume it (a
BEGIN with the same name and SHA-256 continues from `Upload.received`).

A replaced version stays on disk while a process runs in it: a run holds its
version from spawn to end (`acquire`/`release`, counted in memory; the
supervisor holds again what it re-adopts after an agent restart, `hold`).
`prune` deletes every version that is neither current, held, nor among the
newest KEEP_VERSIONS replaced versions of its bundle (bundle_versions.py: kept for
`rollback`); it runs after each commit, each release and each removal. So a re-upload never pulls the
tree from under a running process (its cwd, its imports, its data files), and
new starts use the new version. An agent that keeps old versions on open
passes `prune_on_open=False` and calls `prune()` once its processes are
re-adopted.

All methods are synchronous file operations. Writes and lookups are quick;
`Upload.commit()` of a large TAR is not, so the agent runs it in
`trio.to_thread.run_sync`. Lookups take no lock, so they never wait on a commit.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lotc.agent import archive
from lotc.agent.bundle_versions import (
    KEEP_VERSIONS,
    BundleInfo,
    kept_versions,
    read_version,
    versions_of,
)
from lotc.agent.upload import Upload, UploadSpec
from lotc.bundle_source import pack
from lotc.errors import BundleInUse, InvalidRequest, StorageFull, TooLarge, UnknownBundle
from lotc.names import validate_name, validate_sha_prefix
from protocol.enums import BundleKind

__all__ = [
    "DEFAULT_MAX_BUNDLE_BYTES",
    "BundleInfo",
    "BundleStore",
    "PendingUpload",
    "Upload",
    "validate_bundle_name",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BUNDLE_BYTES = 256 * 1024 * 1024
DEFAULT_STALE_AFTER_S = 24 * 3600.0  # a partial upload older than this is dropped on start


def validate_bundle_name(name: str) -> str:
    """The shared rule of lotc.names (1-64 of [A-Za-z0-9._-], no leading '.' or '-')."""
    return validate_name("bundle", name)


@dataclass(frozen=True)
class PendingUpload:
    """An unfinished upload that a BEGIN with the same name and SHA-256 resumes."""

    name: str
    kind: BundleKind
    size: int
    sha256: str
    received: int


def _normalize_sha(sha256: str | bytes) -> str:
    if isinstance(sha256, bytes) and len(sha256) == 32:
        return sha256.hex()
    if isinstance(sha256, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        return sha256.lower()
    raise InvalidRequest("sha256 must be 32 bytes or 64 hex digits")


def _write_json(path: Path, data: dict[str, object]) -> None:
    with path.open("w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())


def _is_out_of_space(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _last_write(updir: Path) -> float:
    data = updir / "data"  # appending to data does not touch the directory's mtime
    return (data if data.exists() else updir).stat().st_mtime


# The commit steps are module functions so a crash test can replace one with os._exit.
def _publish_version(build: Path, versions: Path, vid: str) -> Path:
    target = versions / vid
    os.rename(build, target)
    archive.fsync_dir(versions)
    return target


def _swap_link(bundles: Path, name: str, vid: str) -> None:
    tmp = bundles / f".swap-{secrets.token_hex(6)}"
    os.symlink(f"../versions/{vid}", tmp)
    os.replace(tmp, bundles / name)  # rename(2) over the old link: atomic
    archive.fsync_dir(bundles)


def _drop_version(path: Path) -> None:
    archive.remove_tree(path)


class BundleStore:
    def __init__(self, root: Path, max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES, *,
                 max_members: int = archive.DEFAULT_MAX_MEMBERS,
                 stale_after: float = DEFAULT_STALE_AFTER_S,
                 prune_on_open: bool = True, keep_versions: int = KEEP_VERSIONS) -> None:
        self.root = Path(root)
        self.max_bundle_bytes = max_bundle_bytes
        self.limits = archive.ArchiveLimits(max_bundle_bytes, max_members)
        self.stale_after = stale_after
        self.keep_versions = keep_versions  # replaced versions kept per bundle, for rollback
        self.bundles_dir = self.root / "bundles"
        self.versions_dir = self.root / "versions"
        self.incoming_dir = self.root / "incoming"
        self._lock = threading.RLock()
        self._uploads: dict[str, Upload] = {}
        self._holds: Counter[str] = Counter()  # version dir name -> runs using it
        for d in (self.bundles_dir, self.versions_dir, self.incoming_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._recover()
        if prune_on_open:
            self.prune()

    # ---- lookups -------------------------------------------------------------------------
    def get(self, name: str) -> BundleInfo:
        validate_bundle_name(name)
        info = self._read_current(name)
        if info is None:
            raise UnknownBundle(f"no bundle named {name!r}")
        return info

    def path(self, name: str) -> Path:
        """The directory to run in (a FILE bundle's file is `get(name).entry` inside it)."""
        return self.get(name).path

    # ---- versions held by running processes ---------------------------------------------
    def acquire(self, name: str) -> Path:
        """The current version's directory, held until `release(path)`: a run's bundle."""
        with self._lock:
            info = self.get(name)
            self._holds[info.path.parent.name] += 1
            return info.path

    def hold(self, path: Path) -> bool:
        """Hold the version at `path` again (a re-adopted run); False if it is gone."""
        vid = self._version_id(path)
        with self._lock:
            if vid is None or not (self.versions_dir / vid / "meta.json").is_file():
                return False
            self._holds[vid] += 1
            return True

    def release(self, path: Path) -> None:
        """A run of `path` ended: its version goes once nothing holds it and it is old."""
        vid = self._version_id(path)
        with self._lock:
            if vid is None or self._holds[vid] <= 0:
                return
            self._holds[vid] -= 1
            if self._holds[vid]:
                return
            del self._holds[vid]
            info = self._read_version(vid)
            if info is not None and self._current_version_dir(info.name) == self.versions_dir / vid:
                return  # still current: nothing to drop (and no directory scan)
        self.prune()

    def version_of(self, path: Path) -> BundleInfo | None:
        """The stored version a run's directory belongs to (None if unknown or gone)."""
        vid = self._version_id(path)
        return None if vid is None else self._read_version(vid)

    def prune(self) -> None:
        """Delete the versions that are neither current, held by a run, nor among the
        newest replaced ones kept for rollback (bundle_versions.py)."""
        with self._lock:
            current = {entry: v.name for entry in os.listdir(self.bundles_dir)
                       if not entry.startswith(".")
                       and (v := self._current_version_dir(entry)) is not None}
            keep = kept_versions(self.versions_dir, current, set(self._holds),
                                 self.keep_versions)
            doomed = [self.versions_dir / v for v in os.listdir(self.versions_dir)
                      if v not in keep]
        for version in doomed:
            logger.info("removing bundle version %s: replaced, not among the %d kept, and "
                        "no process uses it", version.name, self.keep_versions)
            _drop_version(version)

    def versions(self, name: str) -> list[BundleInfo]:
        """The stored versions of `name`, newest first (the current one among them)."""
        validate_bundle_name(name)
        with self._lock:
            return versions_of(self.versions_dir, name)

    def switch(self, name: str, sha256: str) -> BundleInfo:
        """Make the stored version of `name` whose SHA-256 starts with `sha256` current
        ("" for the newest one before the current). New runs use it; running ones keep
        theirs. UnknownBundle / InvalidRequest in plain words."""
        current = self.get(name)
        sha256 = validate_sha_prefix(sha256)
        with self._lock:
            versions = versions_of(self.versions_dir, name)
            if sha256:
                chosen = [v for v in versions if v.sha256.startswith(sha256)]
                if len(chosen) > 1:
                    raise InvalidRequest(f"{sha256!r} matches {len(chosen)} versions of "
                                         f"{name}: give more of its SHA-256")
            else:
                chosen = [v for v in versions if v.sha256 != current.sha256][:1]
            if not chosen:
                raise UnknownBundle(f"no stored version of {name} " + (
                    f"has a SHA-256 starting {sha256!r}" if sha256 else
                    "before the current one") + f" (kept: {len(versions)})")
            _swap_link(self.bundles_dir, name, chosen[0].version_id)
        logger.info("bundle %s: version %s made current again", name, chosen[0].sha256[:16])
        return self.get(name)

    def _version_id(self, path: Path) -> str | None:
        """versions/<vid>/tree (or a file in it) -> <vid>."""
        try:
            rel = Path(path).relative_to(self.versions_dir)
        except ValueError:
            return None
        return rel.parts[0] if rel.parts else None

    def list(self) -> list[BundleInfo]:
        infos = []
        for entry in sorted(os.listdir(self.bundles_dir)):
            if not entry.startswith(".") and (info := self._read_current(entry)) is not None:
                infos.append(info)
        return infos

    def pending(self, name: str) -> PendingUpload | None:
        validate_bundle_name(name)
        with self._lock:
            live = self._uploads.get(name)
            if live is not None:
                s = live.spec
                return PendingUpload(name, s.kind, s.size, s.sha256, live.received)
            spec = self._read_upload_spec(name)
            if spec is None:
                return None
            data = self.incoming_dir / name / "data"
            received = data.stat().st_size if data.exists() else 0
            return PendingUpload(name, spec.kind, spec.size, spec.sha256, min(received, spec.size))

    def _read_current(self, name: str) -> BundleInfo | None:
        try:
            vid = os.readlink(self.bundles_dir / name).rsplit("/", 1)[-1]
        except OSError:
            return None
        return self._read_version(vid)

    def _read_version(self, vid: str) -> BundleInfo | None:
        return read_version(self.versions_dir, vid)

    # ---- uploads -------------------------------------------------------------------------
    def begin(self, name: str, kind: BundleKind | int, size: int,
              sha256: str | bytes) -> Upload:
        """Start, resume or (if this exact version is stored) short-circuit an upload."""
        spec = self._make_spec(name, kind, size, sha256)
        with self._lock:
            current = self._read_current(name)
            if current is not None and (current.sha256, current.kind, current.size) == (
                    spec.sha256, spec.kind, spec.size):
                return Upload.already_stored(spec, current)
            live = self._uploads.get(name)
            if live is not None:
                if live.spec == spec and live.is_open:
                    return live
                live.abort()
            upload = self._open_upload(spec)
            self._uploads[name] = upload
            return upload

    def _make_spec(self, name: str, kind: BundleKind | int, size: int,
                   sha256: str | bytes) -> UploadSpec:
        validate_bundle_name(name)
        try:
            kind = BundleKind(kind)
        except ValueError:
            raise InvalidRequest(f"unknown bundle kind {kind!r}") from None
        if not isinstance(size, int) or size < 0:
            raise InvalidRequest(f"invalid bundle size {size!r}")
        if size > self.max_bundle_bytes:
            raise TooLarge(f"bundle {name!r} is {size} bytes; the limit is "
                           f"{self.max_bundle_bytes}")
        return UploadSpec(name, kind, size, _normalize_sha(sha256))

    def _open_upload(self, spec: UploadSpec) -> Upload:
        try:
            return self._open_upload_dir(spec)
        except OSError as exc:
            # Writing meta.json on a full disk raised a bare OSError, which ended the
            # agent's link, and every reconnect's reconcile pushed again: a flapping loop
            # (found by tests/faults/test_full_disk.py). It is a StorageFull answer.
            if not _is_out_of_space(exc):
                raise
            archive.remove_tree(self.incoming_dir / spec.name)
            free = shutil.disk_usage(self.incoming_dir).free
            raise StorageFull(f"no space left for bundle {spec.name!r} ({spec.size} bytes); "
                              f"{free} bytes are free") from None

    def _open_upload_dir(self, spec: UploadSpec) -> Upload:
        updir = self.incoming_dir / spec.name
        on_disk = self._read_upload_spec(spec.name)
        if on_disk != spec:
            archive.remove_tree(updir)
        updir.mkdir(exist_ok=True)
        if on_disk != spec:
            _write_json(updir / "meta.json", {"name": spec.name, "kind": spec.kind.name,
                                              "size": spec.size, "sha256": spec.sha256})
        upload = Upload.open(spec, updir, self)
        self._check_space(upload)
        if upload.received:
            logger.info("resuming upload of bundle %s at %d of %d bytes", spec.name,
                        upload.received, spec.size)
        return upload

    def _check_space(self, upload: Upload) -> None:
        spec = upload.spec
        # a TAR needs room for the archive and its extracted tree at once
        need = spec.size - upload.received + (spec.size if spec.kind is BundleKind.TAR else 0)
        free = shutil.disk_usage(self.incoming_dir).free
        if need > free:
            upload.abort()
            raise StorageFull(f"bundle {spec.name!r} needs {need} bytes; {free} are free")

    def _read_upload_spec(self, name: str) -> UploadSpec | None:
        try:
            meta = json.loads((self.incoming_dir / name / "meta.json").read_text())
            return UploadSpec(meta["name"], BundleKind[meta["kind"]], int(meta["size"]),
                              meta["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put_path(self, name: str, path: str | os.PathLike[str]) -> BundleInfo:
        """Store a local file or directory through the same path as a network upload."""
        with pack(path, alias=name) as packed:
            upload = self.begin(name, packed.kind, packed.size, packed.sha256)
            for offset, data in packed.chunks(start=upload.received):
                upload.write(offset, data)
            return upload.commit()

    # ---- called by Upload ----------------------------------------------------------------
    def _forget(self, upload: Upload) -> None:
        with self._lock:
            if self._uploads.get(upload.spec.name) is upload:
                del self._uploads[upload.spec.name]

    def _install(self, upload: Upload, data: Path) -> BundleInfo:
        """Stage the verified data as a new version and make it current."""
        spec = upload.spec
        build = self.incoming_dir / f".build-{secrets.token_hex(6)}"
        try:
            self._stage(spec, data, build)
            vid = f"{spec.name}.{spec.sha256[:16]}.{secrets.token_hex(4)}"
            with self._lock:
                _publish_version(build, self.versions_dir, vid)
                _swap_link(self.bundles_dir, spec.name, vid)
            self.prune()  # the old version goes unless a running process holds it
        except OSError as exc:
            archive.remove_tree(build)
            if _is_out_of_space(exc):
                raise StorageFull(f"no space left to store bundle {spec.name!r}") from exc
            raise
        except BaseException:
            archive.remove_tree(build)
            raise
        logger.info("stored bundle %s (%s, %d bytes, sha256 %s)", spec.name, spec.kind.name,
                    spec.size, spec.sha256[:16])
        return self.get(spec.name)

    def _stage(self, spec: UploadSpec, data: Path, build: Path) -> None:
        tree = build / "tree"
        tree.mkdir(parents=True)
        entry: str | None = None
        if spec.kind is BundleKind.FILE:
            entry = spec.name
            os.rename(data, tree / entry)
            os.chmod(tree / entry, 0o755)  # a single-file bundle is meant to be run
        else:
            archive.safe_extract(data, tree, self.limits)
        _write_json(build / "meta.json", {
            "name": spec.name, "sha256": spec.sha256, "kind": spec.kind.name,
            "size": spec.size, "stored_at": time.time(), "entry": entry})
        archive.fsync_tree(build)

    def _current_version_dir(self, name: str) -> Path | None:
        try:
            return self.versions_dir / os.readlink(self.bundles_dir / name).rsplit("/", 1)[-1]
        except OSError:
            return None

    # ---- removal and recovery ------------------------------------------------------------
    def remove(self, name: str, in_use_by: Sequence[str] = ()) -> None:
        validate_bundle_name(name)
        if in_use_by:
            raise BundleInUse(f"bundle {name} is used by processes: {', '.join(in_use_by)}")
        with self._lock:
            version = self._current_version_dir(name)
            if version is None:
                raise UnknownBundle(f"no bundle named {name!r}")
            (self.bundles_dir / name).unlink()  # invisible first; the tree goes after
            archive.fsync_dir(self.bundles_dir)
        self.prune()
        logger.info("removed bundle %s", name)

    def _recover(self) -> None:
        """Remove what a crash left behind; keep published versions (`prune` decides about
        old ones, which re-adopted processes may still run in) and fresh partial uploads."""
        live: set[str] = set()
        for entry in os.listdir(self.bundles_dir):
            link = self.bundles_dir / entry
            version = self._current_version_dir(entry)
            if entry.startswith(".") or version is None or not version.is_dir():
                logger.warning("removing stale bundle link %s", link)
                archive.remove_tree(link)
            else:
                live.add(version.name)
        for entry in os.listdir(self.versions_dir):
            if entry not in live and self._read_version(entry) is None:
                logger.info("removing unpublished bundle version %s", entry)
                archive.remove_tree(self.versions_dir / entry)
        now = time.time()
        for entry in os.listdir(self.incoming_dir):
            path = self.incoming_dir / entry
            spec = None if entry.startswith(".") else self._read_upload_spec(entry)
            if spec is None or spec.name != entry or now - _last_write(path) > self.stale_after:
                logger.info("removing stale upload leftover %s", path)
                archive.remove_tree(path)
            elif (current := self._read_current(entry)) is not None and (
                    current.sha256, current.kind, current.size) == (spec.sha256, spec.kind,
                                                                   spec.size):
                archive.remove_tree(path)  # crashed after the swap: this upload is done
