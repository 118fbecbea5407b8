"""The REPL's bottom toolbar: where it is connected, and how many agents are online.

Redrawn whenever the session reports a change, and once a second while the
prompt is shown so "retrying in 3s" counts down.
"""
from __future__ import annotations

import math
import time

from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.styles import Style

from admin_console.render import count_of
from admin_console.session import LinkState, Session

HINTS = "Tab completes, Ctrl-R searches, Ctrl-D quits"
STYLE = Style.from_dict({
    "bottom-toolbar": "noreverse bg:#303030 #d0d0d0",
    "bottom-toolbar.good": "bg:#303030 #5fd75f bold",
    "bottom-toolbar.bad": "bg:#303030 #ff5f5f bold",
})


def toolbar_text(session: Session, now: float | None = None) -> FormattedText:
    now = time.monotonic() if now is None else now
    who = f" {session.connection.name}@{session.where}  "
    link, state = session.link, session.state
    if link.state is LinkState.CONNECTED:
        agents = (f"{state.online_agents}/{len(state.agents)} agents online · "
                  f"{count_of(len(state.processes), 'process', 'processes')}"
                  if state.fetched_at is not None else "loading…")
        return FormattedText([("class:bottom-toolbar", who),
                              ("class:bottom-toolbar.good", "connected"),
                              ("class:bottom-toolbar", f" · {agents} · {HINTS} ")])
    if link.state is LinkState.CONNECTING:
        return FormattedText([("class:bottom-toolbar", who + "connecting… ")])
    retry = ""
    if link.retry_at is not None:
        retry = f" · retrying in {max(0, math.ceil(link.retry_at - now))}s"
    return FormattedText([("class:bottom-toolbar", who),
                          ("class:bottom-toolbar.bad", "NOT CONNECTED"),
                          ("class:bottom-toolbar", f": {link.reason}{retry} ")])
