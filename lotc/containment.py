"""How an agent says what its node's cgroups give it, and those words for people.

The agent announces its cgroup layout (lotc/agent/cgroup_layout.py) as HELLO
capabilities, so the server can show them (`agent NAME`) without a message of
its own: `cgroup:KIND`, `kill:HOW`, `stop:HOW` and one `limit:NAME` per limit it
can enforce. `describe` turns them into the one line both the agent's log and
the console show. Pure.
"""
from __future__ import annotations

from collections.abc import Iterable

__all__ = ["capabilities", "describe"]


def capabilities(kind: str, kill: str, stop: str, limits: Iterable[str]) -> tuple[str, ...]:
    return (f"cgroup:{kind}", f"kill:{kill}", f"stop:{stop}",
            *(f"limit:{limit}" for limit in limits))


def describe(announced: Iterable[str]) -> str:
    """'hybrid: kill by cgroup.kill; stop by cgroup.freeze; limits: memory, cpus'."""
    words: dict[str, list[str]] = {}
    for capability in announced:
        key, sep, value = capability.partition(":")
        if sep and key in ("cgroup", "kill", "stop", "limit"):
            words.setdefault(key, []).append(value)
    if "cgroup" not in words:
        return "not reported (the agent is older than cgroup support)"
    kind = words["cgroup"][0]
    if kind == "none":
        return "none: processes are found by their marker, limits are refused"
    limits = ", ".join(words.get("limit", [])) or "none"
    return (f"{kind}: kill by {', '.join(words.get('kill', ['?']))}; "
            f"stop by {', '.join(words.get('stop', ['?']))}; limits: {limits}")
