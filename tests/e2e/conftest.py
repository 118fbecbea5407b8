from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster, cluster_fixture


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path)


@pytest.fixture
def app_bundle(tmp_path: Path) -> Path:
    """A directory bundle: a Python program that prints a line every 0.1 s and spawns a child."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'])\n"
        "i = 0\n"
        "while True:\n"
        "    print('tick', i, flush=True)\n"
        "    i += 1\n"
        "    time.sleep(0.1)\n"
    )
    return app
