"""The agent's disk figures are df's: one statvfs, df's arithmetic (issue 14 item 11).

df's Avail is f_bavail (what non-root users may still write), not f_bfree and not
Size - Used: on a filesystem with a root reserve the three differ, and "free" must
be the first. The end-to-end comparison with `df` itself is
tests/e2e/test_disk_free.py.
"""
from __future__ import annotations

import os
from pathlib import Path

from admin_console.commands.stats import use_percent
from lotc.agent.disk import entry_from_statvfs, mount_point, state_dir_disk

KIB = 1024


def statvfs(*, bsize: int = 4096, frsize: int = KIB, blocks: int, bfree: int, bavail: int,
            files: int = 100, ffree: int = 40) -> os.statvfs_result:
    return os.statvfs_result((bsize, frsize, blocks, bfree, bavail, files, ffree, ffree, 0, 255))


def test_figures_are_dfs_with_a_root_reserve() -> None:
    # 1000 blocks of 1 KiB; 300 free, of which 50 reserved for root.
    entry = entry_from_statvfs(statvfs(blocks=1000, bfree=300, bavail=250), "/s", "/")
    assert (entry.used, entry.avail, entry.total) == (700 * KIB, 250 * KIB, 1000 * KIB)
    assert entry.avail != entry.total - entry.used, "free is df's Avail, not size - used"
    assert (entry.inodes_used, entry.inodes_free, entry.inodes_total) == (60, 40, 100)
    assert (entry.path, entry.mount, entry.unknown) == ("/s", "/", "")


def test_block_counts_are_in_fragment_size_units() -> None:
    # f_frsize, not f_bsize, is the unit of f_blocks (they differ on some filesystems).
    entry = entry_from_statvfs(statvfs(bsize=65536, frsize=512, blocks=8, bfree=4, bavail=2),
                               "/s", "/")
    assert (entry.used, entry.avail, entry.total) == (2048, 1024, 4096)
    # An old kernel reporting f_frsize 0: df takes f_bsize, so do we.
    entry = entry_from_statvfs(statvfs(bsize=4096, frsize=0, blocks=8, bfree=4, bavail=2),
                               "/s", "/")
    assert entry.total == 8 * 4096


def test_use_percent_is_dfs_rounded_up_over_used_plus_avail() -> None:
    assert use_percent(700, 250) == 74  # 73.7 %: df rounds up
    assert use_percent(1, 199) == 1  # 0.5 %: still 1 %, never 0 while anything is used
    assert use_percent(50, 50) == 50  # exact stays exact
    assert use_percent(100, 0) == 100  # full for users, though root's reserve is left
    assert use_percent(0, 0) == 0  # an empty (pseudo) filesystem


def test_the_state_dirs_own_filesystem_is_measured(tmp_path: Path) -> None:
    entry = state_dir_disk(tmp_path)
    st = os.statvfs(tmp_path)
    assert entry.unknown == "" and entry.path == str(tmp_path)
    assert entry.total == st.f_blocks * st.f_frsize  # the size never changes under us
    assert os.path.ismount(entry.mount) and str(tmp_path.resolve()).startswith(entry.mount)
    assert os.stat(entry.mount).st_dev == os.stat(tmp_path).st_dev


def test_mount_point_of_a_mount_is_itself() -> None:
    assert mount_point(Path("/")) == "/"
    assert mount_point(Path("/proc/self")) == "/proc"


def test_a_missing_state_dir_is_a_plain_reason_not_a_crash(tmp_path: Path) -> None:
    entry = state_dir_disk(tmp_path / "gone")
    assert entry.unknown.startswith("statvfs failed: ") and "No such file" in entry.unknown
    assert (entry.used, entry.avail, entry.total) == (0, 0, 0)
