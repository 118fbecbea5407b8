from __future__ import annotations

import subprocess
import sys

from lotc import __version__


def test_version_is_printed_by_the_installed_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lotc.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"lotc {__version__}"


def test_agent_option_default_matches_timesync() -> None:
    from lotc.agent.timesync import DEFAULT_INTERVAL_S
    from lotc.commands.agent_cmd import NTP_INTERVAL_S

    assert NTP_INTERVAL_S == DEFAULT_INTERVAL_S


def test_the_console_does_not_load_the_agent_or_server_stacks() -> None:
    probe = ("import sys, lotc.cli; lotc.cli.build_parser(); "
             "print(sorted(m for m in sys.modules if m.startswith(('lotc.agent.', 'lotc.server.app'))"
             "))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # shared parsing lives in lotc.parse, not lotc.agent
