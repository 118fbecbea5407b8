"""What cgroups this node offers the agent, found once at start-up (issue 16).

Four layouts, from /proc/self/mountinfo and /proc/self/cgroup:

* **v2**: one cgroup2 hierarchy (the usual modern host; under systemd the
  agent's unit needs `Delegate=yes`). Kill (`cgroup.kill`), freeze
  (`cgroup.freeze`) and cpu.stat come with every cgroup2; the memory, pids
  and cpu limits need those controllers enabled for the agent's subtree.
* **hybrid**: a cgroup2 mount beside v1 hierarchies (often
  /sys/fs/cgroup/unified with no controllers). cgroup2 gives kill, freeze and
  cpu.stat; the v1 hierarchies give the limits.
* **v1**: v1 hierarchies only: memory, pids, cpu, freezer as mounted.
* **none**: nothing usable. Processes are then found by their marker (see
  lotc/agent/cgroup.py) and the agent warns, naming what is missing.

Each process gets a directory `proc-NAME` under a per-agent parent
`lotc-ID` in every hierarchy used, ID derived from the state dir: the same
agent finds its cgroups again after a restart, and two agents on one node
(tests, or two fleets) never share one. Parents sit under the agent's own
cgroup of each hierarchy, so the node's own limits on the agent still hold.
Pure: the paths read are parameters, so tests point them at a fake tree.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from lotc import containment

__all__ = ["LIMIT_SOURCES", "Layout", "detect", "own_cgroups", "parent_name",
           "remove_parents"]

logger = logging.getLogger(__name__)

V1_CONTROLLERS = ("memory", "pids", "cpu", "freezer")
V2_CONTROLLERS = ("memory", "pids", "cpu")
UNIFIED = "unified"  # the key of the cgroup2 hierarchy in Layout.parents

# limit -> (controller it needs, cgroup2 file, cgroup v1 file): the one table of limits
LIMIT_SOURCES: dict[str, tuple[str, str, str]] = {
    "memory": ("memory", "memory.max", "memory.limit_in_bytes"),
    "cpus": ("cpu", "cpu.max", "cpu.cfs_quota_us"),
    "max-pids": ("pids", "pids.max", "pids.max"),
}


def parent_name(state_dir: Path) -> str:
    """The per-agent parent's name: stable for one state dir, distinct between two."""
    digest = hashlib.sha256(os.fsencode(os.path.realpath(state_dir))).hexdigest()
    return f"lotc-{digest[:12]}"


@dataclass(frozen=True)
class Layout:
    """The hierarchies this agent uses, each as the directory of its per-agent parent."""

    kind: str  # "v2", "hybrid", "v1" or "none"
    parents: dict[str, Path] = field(default_factory=dict)  # UNIFIED or a v1 controller
    v2_controllers: frozenset[str] = frozenset()  # enabled below the cgroup2 parent
    missing: tuple[str, ...] = ()  # what could not be had, in words, for the warning
    kill: bool = False  # the cgroup2 hierarchy has cgroup.kill (Linux 5.14)
    freeze: bool = False  # ... and cgroup.freeze (5.2)

    @property
    def contained(self) -> bool:
        return bool(self.parents)

    def limit_file(self, limit: str) -> tuple[str, str] | None:
        """(hierarchy, file) that enforces `limit` here, None when nothing does."""
        controller, v2_file, v1_file = LIMIT_SOURCES[limit]
        if UNIFIED in self.parents and controller in self.v2_controllers:
            return UNIFIED, v2_file
        if controller in self.parents:
            return controller, v1_file
        return None

    def can_kill(self) -> bool:
        return self.kill

    def freezer(self) -> str:
        """How stop freezes: "cgroup.freeze", "freezer" (v1) or "SIGSTOP"."""
        if self.freeze:
            return "cgroup.freeze"
        return "freezer" if "freezer" in self.parents else "SIGSTOP"

    def membership(self) -> str:
        """The hierarchy every process joins, whatever its limits: it is the one that
        says who the members are (cgroup2 where there is one)."""
        return UNIFIED if UNIFIED in self.parents else next(iter(self.parents))

    def describe(self) -> str:
        """One line for the agent's log; the console shows the same (lotc.containment)."""
        return containment.describe(self.capabilities())

    def capabilities(self) -> tuple[str, ...]:
        """What the agent announces in HELLO: its layout and the limits it enforces."""
        return containment.capabilities(
            self.kind, "cgroup.kill" if self.can_kill() else "signal to each member",
            self.freezer(), [limit for limit in LIMIT_SOURCES if self.limit_file(limit)])


@dataclass(frozen=True)
class _Mount:
    root: str  # the hierarchy's path shown at the mount point
    point: Path


def _mounts(mountinfo: str) -> tuple[_Mount | None, dict[str, _Mount]]:
    """The cgroup2 mount and the v1 mounts by controller (see proc(5), mountinfo)."""
    unified = None
    v1: dict[str, _Mount] = {}
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, after = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(after) < 3:
            continue
        mount = _Mount(fields[3], Path(fields[4].replace("\\040", " ")))
        if after[0] == "cgroup2" and unified is None:
            unified = mount
        elif after[0] == "cgroup":
            for option in after[2].split(","):
                if option in V1_CONTROLLERS:
                    v1.setdefault(option, mount)
    return unified, v1


def _own_paths(proc_cgroup: str) -> tuple[str | None, dict[str, str]]:
    """The agent's own cgroup: the cgroup2 path and the v1 path of each controller."""
    unified = None
    v1 = {}
    for line in proc_cgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and not controllers:
            unified = path
        for controller in controllers.split(","):
            v1[controller] = path
    return unified, v1


def _inside(mount: _Mount, path: str) -> Path:
    """The directory of cgroup `path` under `mount` (a mount may show a sub-tree only)."""
    relative = os.path.relpath(path, mount.root) if mount.root != "/" else path.lstrip("/")
    return mount.point if relative in ("", ".") else mount.point / relative


def _make_parent(own: Path, name: str, what: str, missing: list[str]) -> Path | None:
    parent = own / name
    try:
        parent.mkdir(exist_ok=True)
    except OSError as exc:
        missing.append(f"{what} ({own}: {exc.strerror})")
        return None
    return parent


def _enable_v2(own: Path, parent: Path, missing: list[str]) -> frozenset[str]:
    """Enable the limit controllers for the per-process cgroups under `parent`."""
    try:
        offered = set((own / "cgroup.controllers").read_text().split())
    except OSError:
        offered = set()
    enabled = set()
    for controller in V2_CONTROLLERS:
        if controller not in offered:
            continue
        try:  # own's subtree first, then the per-agent parent's
            for directory in (own, parent):
                _enable(directory, controller, own)
        except OSError as exc:
            missing.append(f"cgroup2 {controller} ({exc.strerror}: is the subtree delegated?)")
            continue
        enabled.add(controller)
    return frozenset(enabled)


def _enable(directory: Path, controller: str, own: Path) -> None:
    """+controller in directory's subtree_control. cgroup2 refuses it (EBUSY) while the
    directory itself holds processes, as the agent's own cgroup does under systemd's
    Delegate=yes: the agent then moves itself into a leaf `agent` first, as systemd's
    delegation rules ask, and tries once more."""
    control = directory / "cgroup.subtree_control"
    try:
        control.write_text(f"+{controller}")
    except OSError as exc:
        if exc.errno != errno.EBUSY or directory != own:
            raise
        leaf = own / "agent"
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
        control.write_text(f"+{controller}")


def own_cgroups(*, mountinfo: str | None = None,
                proc_cgroup: str | None = None) -> dict[str, Path]:
    """The directory of this process's own cgroup in each hierarchy LOTC may use
    (UNIFIED and the v1 controllers mounted), whether or not it can write there."""
    if mountinfo is None:
        mountinfo = _read("/proc/self/mountinfo")
    if proc_cgroup is None:
        proc_cgroup = _read("/proc/self/cgroup")
    unified_mount, v1_mounts = _mounts(mountinfo)
    own_unified, own_v1 = _own_paths(proc_cgroup)
    own: dict[str, Path] = {}
    if unified_mount is not None and own_unified is not None:
        own[UNIFIED] = _inside(unified_mount, own_unified)
    for controller, mount in v1_mounts.items():
        if controller in own_v1:
            own[controller] = _inside(mount, own_v1[controller])
    return own


def detect(state_dir: Path, *, mountinfo: str | None = None,
           proc_cgroup: str | None = None) -> Layout:
    """Find what this node offers and make the per-agent parents. Blocking."""
    own = own_cgroups(mountinfo=mountinfo, proc_cgroup=proc_cgroup)
    name = parent_name(state_dir)
    missing: list[str] = []
    parents: dict[str, Path] = {}
    v2_controllers: frozenset[str] = frozenset()
    kill = freeze = False
    if UNIFIED in own:
        made = _make_parent(own[UNIFIED], name, "cgroup2", missing)
        if made is not None:
            parents[UNIFIED] = made
            v2_controllers = _enable_v2(own[UNIFIED], made, missing)
            kill, freeze = (made / "cgroup.kill").exists(), (made / "cgroup.freeze").exists()
    for controller in V1_CONTROLLERS:
        if controller in v2_controllers:
            continue  # cgroup2 gives it: one hierarchy per controller
        if controller == "freezer" and freeze:
            continue  # cgroup.freeze does it, and reports when it is done
        if controller not in own:
            if controller != "freezer" or UNIFIED not in parents:
                missing.append(f"{controller} controller")
            continue
        made = _make_parent(own[controller], name, f"v1 {controller}", missing)
        if made is not None:
            parents[controller] = made
    has_v1 = any(key != UNIFIED for key in parents)
    kind = ("hybrid" if has_v1 else "v2") if UNIFIED in parents else ("v1" if has_v1 else "none")
    return Layout(kind, parents, v2_controllers, tuple(missing), kill, freeze)


def remove_parents(layout: Layout) -> None:
    """Remove the per-agent parents that are empty (the agent is stopping; processes
    that keep running keep theirs, and the next agent finds them)."""
    for parent in layout.parents.values():
        with contextlib.suppress(OSError):
            parent.rmdir()


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
