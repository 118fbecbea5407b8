"""Where the REPL keeps its command history: the user's state directory.

$LOTC_HISTORY names the file outright (tests point it into a temporary
directory); otherwise it is $XDG_STATE_HOME/lotc/history, by default
~/.local/state/lotc/history, as the XDG base directory spec asks for state
that should survive restarts but is not worth backing up.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from prompt_toolkit.history import FileHistory, History, InMemoryHistory

logger = logging.getLogger(__name__)

ENV_HISTORY = "LOTC_HISTORY"


def history_path() -> Path:
    explicit = os.environ.get(ENV_HISTORY)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lotc" / "history"


def open_history(path: Path | None = None) -> tuple[History, str | None]:
    """The history, and a warning in plain words when it cannot be kept on disk."""
    path = path or history_path()
    try:
        # 0o700: past command lines can say a lot about the fleet
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600, exist_ok=True)
    except OSError as exc:
        logger.debug("history file %s unusable", path, exc_info=True)
        return InMemoryHistory(), f"history is not saved: cannot write {path} ({exc.strerror})"
    return FileHistory(str(path)), None
