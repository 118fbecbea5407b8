"""Bundle versions kept for rollback, and switching back to one (issue 17 item 4), on a real
store over real files."""
from __future__ import annotations

from pathlib import Path

import pytest

from lotc.agent.bundle_versions import KEEP_VERSIONS
from lotc.agent.store import BundleStore
from lotc.errors import InvalidRequest, UnknownBundle


def _tree(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "VERSION").write_text(text)
    return path


def test_the_newest_replaced_versions_are_kept_one_per_sha(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "state")
    shas = [store.put_path("web", _tree(tmp_path / f"v{n}", f"v{n}")).sha256
            for n in range(1, 6)]
    store.put_path("web", tmp_path / "v5")  # the same content again: no second copy kept
    kept = [v.sha256 for v in store.versions("web")]
    assert kept == shas[::-1][:KEEP_VERSIONS + 1]  # current (v5) and the 3 before it
    assert len(list(store.versions_dir.iterdir())) == KEEP_VERSIONS + 1  # no 2nd copy of v5
    store.remove("web")
    assert store.versions("web") == [] and list(store.versions_dir.iterdir()) == []


def test_switch_back_to_the_previous_or_a_named_version(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "state")
    first = store.put_path("web", _tree(tmp_path / "v1", "v1"))
    store.put_path("web", _tree(tmp_path / "v2", "v2"))
    store.put_path("web", _tree(tmp_path / "v3", "v3"))
    back = store.switch("web", "")  # the newest before the current: v2
    assert (back.path / "VERSION").read_text() == "v2"
    assert (store.acquire("web") / "VERSION").read_text() == "v2"  # new runs use it
    named = store.switch("web", first.sha256[:10].upper())
    assert named.sha256 == first.sha256
    with pytest.raises(UnknownBundle, match="no stored version of web has a SHA-256 "
                                            "starting 'ffff'"):
        store.switch("web", "ffff")
    assert store.get("web").sha256 == first.sha256  # a refused switch changed nothing
    with pytest.raises(InvalidRequest, match="hex digits of a SHA-256"):
        store.switch("web", "not-hex")
