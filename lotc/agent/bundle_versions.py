"""The stored versions of the agent's bundles, and which of them are kept (issue 17 item 4).

A version is a directory versions/<vid>/ of the store (store.py) with its meta.json.
Beside each bundle's current version and every version a run holds, the newest
KEEP_VERSIONS replaced versions of each bundle stay on disk (one per SHA-256), so
`rollback` can go back to them without a new upload; older ones are deleted. A
removed bundle keeps nothing. File reads only; the store holds the lock.
"""
from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from protocol.enums import BundleKind

__all__ = ["KEEP_VERSIONS", "BundleInfo", "kept_versions", "read_version", "versions_of"]

KEEP_VERSIONS = 3


@dataclass(frozen=True)
class BundleInfo:
    """A stored bundle. `path` is the directory to run in; `entry` is the file of a FILE bundle."""

    name: str
    sha256: str  # lowercase hex
    kind: BundleKind
    size: int  # bytes as transferred
    path: Path
    entry: Path | None
    stored_at: float  # Unix time, seconds

    @property
    def stored_us(self) -> int:
        return int(self.stored_at * 1_000_000)

    @property
    def sha256_bytes(self) -> bytes:
        return bytes.fromhex(self.sha256)

    @property
    def version_id(self) -> str:
        return self.path.parent.name


def read_version(versions_dir: Path, vid: str) -> BundleInfo | None:
    version = versions_dir / vid
    try:
        meta = json.loads((version / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    tree = version / "tree"
    entry = tree / meta["entry"] if meta.get("entry") else None
    return BundleInfo(meta["name"], meta["sha256"], BundleKind[meta["kind"]], meta["size"],
                      tree, entry, meta["stored_at"])


def _all_versions(versions_dir: Path) -> list[BundleInfo]:
    found = [read_version(versions_dir, vid) for vid in os.listdir(versions_dir)]
    return sorted((v for v in found if v is not None), key=lambda v: -v.stored_at)


def versions_of(versions_dir: Path, name: str) -> list[BundleInfo]:
    """Every stored version of `name`, newest first, one per SHA-256."""
    seen: set[str] = set()
    result = []
    for version in _all_versions(versions_dir):
        if version.name == name and version.sha256 not in seen:
            seen.add(version.sha256)
            result.append(version)
    return result


def kept_versions(versions_dir: Path, current: Mapping[str, str], held: Collection[str],
                  keep_others: int = KEEP_VERSIONS) -> set[str]:
    """The version ids to keep: `current` (bundle name -> vid), `held`, and the newest
    `keep_others` others of each current bundle, one per SHA-256."""
    keep = set(held) | set(current.values())
    others: dict[str, list[str]] = {}
    versions = _all_versions(versions_dir)
    shas: dict[str, set[str]] = {}  # per bundle: the current SHA-256, then those kept
    for version in versions:
        if current.get(version.name) == version.version_id:
            shas.setdefault(version.name, set()).add(version.sha256)
    for version in versions:
        vid = version.version_id
        if version.name not in current or vid == current[version.name]:
            continue
        name_shas = shas.setdefault(version.name, set())
        if version.sha256 in name_shas:
            continue
        name_shas.add(version.sha256)
        others.setdefault(version.name, []).append(vid)
    for vids in others.values():
        keep.update(vids[:keep_others])
    return keep
