"""The state dir's filesystem as `df` shows it: the agent's answer to QUERY_DISK.

NodeStats (in STATS_REPORT, frozen since release 1) carries used and total only;
"free" is what df calls Avail: the blocks an unprivileged user may still take
(f_bavail), which is less than f_bfree by the root reserve (5 % on ext4 by default).
The figures below are GNU df's, from one statvfs call:

    Size  = f_blocks * f_frsize
    Used  = (f_blocks - f_bfree) * f_frsize
    Avail = f_bavail * f_frsize
    Use%  = ceil(Used / (Used + Avail))      (so Used + Avail < Size when root reserves)
"""
from __future__ import annotations

import os
from pathlib import Path

from lotc.errors import wire_text
from protocol.messages import DiskEntry


def entry_from_statvfs(st: os.statvfs_result, path: str, mount: str) -> DiskEntry:
    """df's figures from one statvfs result (f_frsize is the unit of the block counts)."""
    unit = st.f_frsize or st.f_bsize  # f_frsize 0 on some old kernels: df falls back too
    return DiskEntry(
        agent="", path=path, mount=mount,
        used=(st.f_blocks - st.f_bfree) * unit,
        avail=st.f_bavail * unit,
        total=st.f_blocks * unit,
        inodes_used=max(st.f_files - st.f_ffree, 0),
        inodes_free=st.f_ffree,
        inodes_total=st.f_files,
        unknown="",
    )


def use_percent(used: int, avail: int) -> int:
    """df's Use%: used over what non-root users could have, rounded up (0 for an empty fs)."""
    whole = used + avail
    return -(-100 * used // whole) if whole else 0


def mount_point(path: Path) -> str:
    """The mount point holding `path` (df's "Mounted on"): the nearest ancestor that is one."""
    current = path.resolve()
    while not os.path.ismount(current):
        current = current.parent
    return str(current)


def state_dir_disk(state_dir: Path) -> DiskEntry:
    """The answer for `state_dir`: figures, or why there are none (the link stays up)."""
    try:
        return entry_from_statvfs(os.statvfs(state_dir), str(state_dir), mount_point(state_dir))
    except OSError as exc:
        return DiskEntry(path=str(state_dir), unknown=wire_text(f"statvfs failed: {exc}"))
