"""Fixtures of the fault suite: the e2e cluster fixtures, plus a small tmpfs when root."""
from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import app_bundle, cluster  # noqa: F401  (re-exported fixtures)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """mount(name, size="2m", ro=False) -> a fresh tmpfs dir, unmounted after the test.

    Skips the test when mounting is not permitted (not root, or in a container
    without CAP_SYS_ADMIN).
    """
    mounted: list[Path] = []

    def mount(name: str, size: str = "2m", ro: bool = False) -> Path:
        target = tmp_path / name
        target.mkdir()
        options = f"size={size},mode=0755" + (",ro" if ro else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or 'not permitted'}")
        mounted.append(target)
        return target

    try:
        yield mount
    finally:
        for target in reversed(mounted):
            # lazy: a process killed a moment ago may still hold a file open there
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def remount(target: Path, option: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{option}", str(target)], check=True)
