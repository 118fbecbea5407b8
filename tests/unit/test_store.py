"""The bundle store: chunked uploads, atomic replacement, resume, limits and crash safety."""
from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from lotc.agent.store import BundleStore
from lotc.bundle_source import pack
from lotc.errors import (
    BadBundle,
    BundleInUse,
    ChecksumMismatch,
    InvalidRequest,
    StorageFull,
    TooLarge,
    UnknownBundle,
)
from protocol.enums import BundleKind

REPO = Path(__file__).resolve().parents[2]


def _tree(root: Path, version: str, extra_bytes: int = 0) -> Path:
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "VERSION").write_text(version)
    run = root / "bin" / "run.sh"
    run.write_text(f"#!/bin/sh\necho {version}\n")
    run.chmod(0o755)
    if extra_bytes:
        (root / "blob").write_bytes(os.urandom(extra_bytes))
    return root


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> BundleStore:
    # keep_versions=0: these tests are about what a run holds; versions kept for
    # rollback are tested apart (test_bundle_versions.py)
    return BundleStore(tmp_path / "state", max_bundle_bytes=1024 * 1024, keep_versions=0)


def test_directory_bundle_round_trip(store: BundleStore, tmp_path: Path) -> None:
    info = store.put_path("web", _tree(tmp_path / "src", "v1"))
    assert info.kind is BundleKind.TAR and info.entry is None
    assert store.get("web") == info and store.list() == [info]
    assert store.path("web") == info.path
    assert (info.path / "VERSION").read_text() == "v1"
    assert os.access(info.path / "bin" / "run.sh", os.X_OK)
    with pack(tmp_path / "src") as packed:
        assert info.sha256 == packed.sha256 and info.size == packed.size


def test_raw_file_bundle_stored_as_named_executable(store: BundleStore) -> None:
    """What older consoles send: a FILE, stored under the bundle's name."""
    data = b"print('hi')\n"
    up = store.begin("job.py", BundleKind.FILE, len(data), _sha(data))
    up.write(0, data)
    info = up.commit()
    assert info.kind is BundleKind.FILE and info.size == len(data)
    assert info.entry == info.path / "job.py"
    assert info.entry.read_text() == "print('hi')\n" and os.access(info.entry, os.X_OK)
    assert info.sha256 == _sha(data) and len(info.sha256_bytes) == 32


def test_a_single_file_keeps_its_own_name(store: BundleStore, tmp_path: Path) -> None:
    """Issue 14 item 7: `upload n tool ./tool.py`, then `python3 tool.py` runs."""
    src = tmp_path / "tool.py"
    src.write_text("print('hi')\n")
    info = store.put_path("tool", src)
    assert sorted(os.listdir(info.path)) == ["tool", "tool.py"]
    assert (info.path / "tool.py").read_text() == "print('hi')\n"
    assert os.readlink(info.path / "tool") == "tool.py", "the bundle's name still runs it"
    assert os.access(info.path / "tool.py", os.X_OK)


def test_chunked_upload_accepts_wire_sha_bytes(store: BundleStore) -> None:
    data = os.urandom(10_000)
    up = store.begin("blob", BundleKind.FILE, len(data), hashlib.sha256(data).digest())
    for offset in range(0, len(data), 3000):
        up.write(offset, data[offset:offset + 3000])
    assert up.received == len(data)
    assert store.pending("blob") is not None
    info = up.commit()
    assert info.entry is not None and info.entry.read_bytes() == data
    assert store.pending("blob") is None


def test_same_version_again_is_a_no_op(store: BundleStore, tmp_path: Path) -> None:
    first = store.put_path("web", _tree(tmp_path / "src", "v1"))
    with pack(tmp_path / "src") as packed:
        up = store.begin("web", packed.kind, packed.size, packed.sha256)
    assert up.received == first.size, "the sender can skip straight to BUNDLE_END"
    assert up.commit() == first


def test_replace_swaps_version_and_drops_the_old(store: BundleStore, tmp_path: Path) -> None:
    old = store.put_path("web", _tree(tmp_path / "v1", "v1"))
    new = store.put_path("web", _tree(tmp_path / "v2", "v2"))
    assert new.sha256 != old.sha256
    assert (store.path("web") / "VERSION").read_text() == "v2"
    assert not old.path.exists()
    assert len(list(store.versions_dir.iterdir())) == 1


def test_a_held_version_outlives_its_replacement(store: BundleStore, tmp_path: Path) -> None:
    """Issue 14 item 6: a re-upload never deletes the tree a process runs in."""
    store.put_path("web", _tree(tmp_path / "v1", "v1"))
    held = store.acquire("web")
    store.put_path("web", _tree(tmp_path / "v2", "v2"))
    assert (held / "VERSION").read_text() == "v1", "still there for the running process"
    assert (store.acquire("web") / "VERSION").read_text() == "v2", "new runs get v2"
    version = store.version_of(held)
    assert version is not None and version.sha256 != store.get("web").sha256
    store.release(held)
    assert not held.exists(), "dropped once nothing runs in it"
    assert len(list(store.versions_dir.iterdir())) == 1


def test_held_versions_survive_a_reopen_until_pruned(tmp_path: Path) -> None:
    root = tmp_path / "store"
    first = BundleStore(root, keep_versions=0)
    first.put_path("web", _tree(tmp_path / "v1", "v1"))
    held = first.acquire("web")
    first.put_path("web", _tree(tmp_path / "v2", "v2"))
    reopened = BundleStore(root, prune_on_open=False, keep_versions=0)  # an agent restart
    assert reopened.hold(held), "a re-adopted process holds its version again"
    reopened.prune()
    assert (held / "VERSION").read_text() == "v1"
    reopened.release(held)
    assert not held.exists()
    assert not reopened.hold(held), "a version that is gone cannot be held"


def test_checksum_mismatch_keeps_old_version(store: BundleStore, tmp_path: Path) -> None:
    old = store.put_path("web", _tree(tmp_path / "v1", "v1"))
    up = store.begin("web", BundleKind.FILE, 5, _sha(b"other"))
    up.write(0, b"hello")
    with pytest.raises(ChecksumMismatch, match="expected"):
        up.commit()
    assert store.get("web") == old
    assert list(store.incoming_dir.iterdir()) == []


def test_out_of_order_chunk_refused_then_upload_continues(store: BundleStore) -> None:
    data = b"abcdefgh"
    up = store.begin("f", BundleKind.FILE, len(data), _sha(data))
    up.write(0, data[:4])
    for bad in (0, 2, 6):
        with pytest.raises(InvalidRequest, match="expected 4"):
            up.write(bad, data[4:])
    up.write(4, data[4:])
    assert up.commit().size == 8


def test_incomplete_commit_refused(store: BundleStore) -> None:
    up = store.begin("f", BundleKind.FILE, 8, _sha(b"abcdefgh"))
    up.write(0, b"abcd")
    with pytest.raises(InvalidRequest, match="incomplete: 4 of 8"):
        up.commit()


def test_size_limits(store: BundleStore) -> None:
    with pytest.raises(TooLarge, match="limit is 1048576"):
        store.begin("big", BundleKind.FILE, 1024 * 1024 + 1, _sha(b""))
    up = store.begin("f", BundleKind.FILE, 4, _sha(b"abcd"))
    with pytest.raises(TooLarge, match="announced 4 bytes"):
        up.write(0, b"abcde")
    assert store.pending("f") is None and list(store.incoming_dir.iterdir()) == []
    with pytest.raises(InvalidRequest):
        up.write(0, b"abcd")


def test_tar_bomb_refused_through_upload(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "state", max_bundle_bytes=64 * 1024)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(2):
            info = tarfile.TarInfo(f"f{i}")
            info.size = 40 * 1024
            tar.addfile(info, io.BytesIO(b"\0" * info.size))
    # cut to fit the upload limit; the headers still claim 80 KiB of files
    data = buf.getvalue()[:64 * 1024]
    up = store.begin("bomb", BundleKind.TAR, len(data), _sha(data))
    up.write(0, data)
    with pytest.raises(BadBundle, match="expands past the limit of 65536 bytes at member 'f1'"):
        up.commit()
    assert store.list() == [] and list(store.incoming_dir.iterdir()) == []


@pytest.mark.parametrize("member", ["../escape", "/abs", "ok/../../escape"])
def test_traversal_upload_refused_old_version_kept(store: BundleStore, tmp_path: Path,
                                                   member: str) -> None:
    old = store.put_path("web", _tree(tmp_path / "v1", "v1"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(member)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    data = buf.getvalue()
    up = store.begin("web", BundleKind.TAR, len(data), _sha(data))
    up.write(0, data)
    with pytest.raises(BadBundle, match="archive member"):
        up.commit()
    assert store.get("web") == old and (old.path / "VERSION").read_text() == "v1"
    assert list(store.incoming_dir.iterdir()) == []
    assert len(list(store.versions_dir.iterdir())) == 1
    assert not (tmp_path / "escape").exists() and not Path("/abs").exists()


def test_resume_in_process_and_after_restart(tmp_path: Path) -> None:
    root = tmp_path / "state"
    data = os.urandom(50_000)
    store = BundleStore(root)
    up = store.begin("f", BundleKind.FILE, len(data), _sha(data))
    up.write(0, data[:20_000])
    assert store.begin("f", BundleKind.FILE, len(data), _sha(data)) is up
    pending = store.pending("f")
    assert pending is not None and pending.received == 20_000
    restarted = BundleStore(root)  # as after an agent restart: re-hashes what is on disk
    assert restarted.pending("f") == pending
    up2 = restarted.begin("f", BundleKind.FILE, len(data), _sha(data))
    assert up2.received == 20_000
    up2.write(20_000, data[20_000:])
    assert up2.commit().entry.read_bytes() == data  # type: ignore[union-attr]


def test_new_sha_discards_partial_upload(store: BundleStore) -> None:
    up = store.begin("f", BundleKind.FILE, 4, _sha(b"abcd"))
    up.write(0, b"ab")
    up2 = store.begin("f", BundleKind.FILE, 4, _sha(b"wxyz"))
    assert up2.received == 0 and not up.is_open
    up2.write(0, b"wxyz")
    assert up2.commit().sha256 == _sha(b"wxyz")


def test_stale_leftovers_cleaned_on_start(tmp_path: Path) -> None:
    root = tmp_path / "state"
    store = BundleStore(root, stale_after=3600)
    store.begin("old", BundleKind.FILE, 4, _sha(b"abcd")).write(0, b"ab")
    store.begin("fresh", BundleKind.FILE, 4, _sha(b"abcd")).write(0, b"ab")
    long_ago = time.time() - 7200
    os.utime(root / "incoming" / "old" / "data", (long_ago, long_ago))
    (root / "incoming" / ".build-dead").mkdir()
    (root / "versions" / "orphan.0.0" / "tree").mkdir(parents=True)
    (root / "bundles" / "dangling").symlink_to("../versions/nothing")
    restarted = BundleStore(root, stale_after=3600)
    assert sorted(os.listdir(root / "incoming")) == ["fresh"]
    assert restarted.pending("old") is None and restarted.pending("fresh") is not None
    assert os.listdir(root / "versions") == [] and os.listdir(root / "bundles") == []


def test_out_of_space_while_writing(store: BundleStore) -> None:
    up = store.begin("f", BundleKind.FILE, 4, _sha(b"abcd"))
    os.dup2(os.open("/dev/full", os.O_WRONLY), up._fd)  # type: ignore[arg-type]  # ENOSPC
    with pytest.raises(StorageFull, match="no space left"):
        up.write(0, b"abcd")
    assert store.pending("f") is None and list(store.incoming_dir.iterdir()) == []


def test_storage_full_refused_up_front(tmp_path: Path) -> None:
    import shutil
    free = shutil.disk_usage(tmp_path).free
    store = BundleStore(tmp_path / "state", max_bundle_bytes=free * 4)
    with pytest.raises(StorageFull, match="are free"):
        store.begin("huge", BundleKind.TAR, free, _sha(b""))
    assert list(store.incoming_dir.iterdir()) == []


def test_remove(store: BundleStore, tmp_path: Path) -> None:
    info = store.put_path("web", _tree(tmp_path / "src", "v1"))
    with pytest.raises(BundleInUse, match="^bundle web is used by processes: a, b$"):
        store.remove("web", in_use_by=["a", "b"])
    assert store.get("web") == info
    store.remove("web")
    assert store.list() == [] and not info.path.exists()
    with pytest.raises(UnknownBundle, match="no bundle named 'web'"):
        store.remove("web")
    with pytest.raises(UnknownBundle):
        store.get("web")


@pytest.mark.parametrize("name", ["", ".hidden", "-rf", "a/b", "..", "x" * 65, "sp ace", "é"])
def test_invalid_names(store: BundleStore, name: str) -> None:
    with pytest.raises(InvalidRequest, match="bundle name"):
        store.begin(name, BundleKind.FILE, 0, _sha(b""))


def test_bad_begin_arguments(store: BundleStore) -> None:
    with pytest.raises(InvalidRequest, match="sha256"):
        store.begin("f", BundleKind.FILE, 0, "abc")
    with pytest.raises(InvalidRequest, match="kind"):
        store.begin("f", 9, 0, _sha(b""))
    with pytest.raises(InvalidRequest, match="size"):
        store.begin("f", BundleKind.FILE, -1, _sha(b""))


_CRASH_CHILD = """
import os, signal, sys
from pathlib import Path
from lotc.agent import store as store_mod
from lotc.bundle_source import pack

root, phase, src = sys.argv[1:4]

def crash(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

store = store_mod.BundleStore(Path(root), keep_versions=0)
if phase == "mid-write":
    with pack(src) as packed:
        up = store.begin("web", packed.kind, packed.size, packed.sha256)
        offset, data = next(packed.chunks(chunk_size=4096))
        up.write(offset, data)
        crash()
hooks = {"staged": "_publish_version", "published": "_swap_link", "swapped": "_drop_version"}
setattr(store_mod, hooks[phase], crash)
store.put_path("web", src)
"""


@pytest.mark.parametrize("phase", ["mid-write", "staged", "published", "swapped"])
def test_crash_leaves_old_or_new_never_partial(tmp_path: Path, phase: str) -> None:
    root = tmp_path / "state"
    old = BundleStore(root, keep_versions=0).put_path("web", _tree(tmp_path / "v1", "v1"))
    new_src = _tree(tmp_path / "v2", "v2", extra_bytes=100_000)
    child = subprocess.run([sys.executable, "-c", _CRASH_CHILD, str(root), phase, str(new_src)],
                           check=False, cwd=REPO, capture_output=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()

    store = BundleStore(root, keep_versions=0)
    current = store.get("web")
    expected = "v2" if phase == "swapped" else "v1"
    assert (current.path / "VERSION").read_text() == expected
    if phase != "swapped":
        assert current == old
    assert os.listdir(root / "versions") == [current.path.parent.name], "leftovers cleaned"
    assert [e for e in os.listdir(root / "incoming") if e.startswith(".")] == []
    if phase == "mid-write":
        pending = store.pending("web")
        assert pending is not None and pending.received == 4096
        info = store.put_path("web", new_src)  # resumes from 4096
        assert (info.path / "VERSION").read_text() == "v2"
    elif phase == "swapped":
        assert os.listdir(root / "incoming") == []
    else:  # crashed after verifying: the complete upload is kept, a BEGIN finishes it at once
        pending = store.pending("web")
        assert pending is not None and pending.received == pending.size
        assert (store.put_path("web", new_src).path / "VERSION").read_text() == "v2"


def _snapshot(root: Path) -> dict[str, tuple[str, object]]:
    """Path -> (type, content or link target) plus exec bit, for comparing trees."""
    snap: dict[str, tuple[str, object]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                snap[rel] = ("link", os.readlink(full))
            elif full.is_dir():
                snap[rel] = ("dir", None)
            else:
                snap[rel] = ("file", (full.read_bytes(), os.access(full, os.X_OK)))
    return snap


def test_tricky_tree_round_trips_exactly(store: BundleStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    deep = src / ("d" * 60) / ("e" * 60) / "f"
    deep.mkdir(parents=True)
    (deep / ("long-name-" * 8)).write_bytes(b"deep")
    (src / "empty").mkdir()
    (src / "héllo wörld.txt").write_text("unicode")
    (src / "tool").write_bytes(b"#!/bin/sh\n")
    (src / "tool").chmod(0o750)
    os.link(src / "tool", src / "tool-hardlink")
    (src / "to-dir").symlink_to("d" * 60)
    (src / "dangling").symlink_to("not-there-yet")
    info = store.put_path("tricky", src)
    assert _snapshot(info.path) == _snapshot(src)
