from __future__ import annotations

import subprocess
import sys

from lotc import __version__


def test_version_is_printed_by_the_installed_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lotc.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"lotc {__version__}"
