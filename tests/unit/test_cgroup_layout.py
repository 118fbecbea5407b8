"""Cgroup layouts this machine cannot run, over directory trees shaped like cgroupfs
(issue 16 item 11), and the limit options' parsers.

This machine is hybrid (tests/e2e/test_cgroups.py runs it for real). Pure cgroup2 with
delegated memory, pids and cpu controllers, pure v1, a mount showing a sub-tree, and no
cgroups at all are detected here from mountinfo and /proc/self/cgroup texts that point
into a temporary tree. Files the kernel would provide are plain files; what LOTC writes
is read back as written. Kept few: they cannot prove the kernel's side.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from lotc.agent.cgroup import Limits, ProcessCgroup
from lotc.agent.cgroup_layout import UNIFIED, detect
from lotc.deploy_remote import systemd_unit
from lotc.errors import InvalidRequest, SpawnFailed
from lotc.options import canonical_options, cpu_milli


def _cgroup2(tmp_path: Path, own: str, controllers: str) -> tuple[str, str]:
    mount = tmp_path / "cgroup"
    directory = mount / own.lstrip("/")
    directory.mkdir(parents=True)
    (directory / "cgroup.controllers").write_text(controllers + "\n")
    (directory / "cgroup.subtree_control").write_text("")
    return f"41 31 0:38 / {mount} rw,relatime - cgroup2 cgroup2 rw\n", f"0::{own}\n"


def test_pure_v2_with_a_delegated_subtree_writes_v2_limits(tmp_path: Path) -> None:
    mountinfo, proc_cgroup = _cgroup2(tmp_path, "/system.slice/lotc-agent.service",
                                      "cpuset cpu io memory pids")
    layout = detect(tmp_path / "state", mountinfo=mountinfo, proc_cgroup=proc_cgroup)
    assert layout.kind == "v2" and layout.v2_controllers == {"memory", "pids", "cpu"}
    own = tmp_path / "cgroup/system.slice/lotc-agent.service"
    assert layout.parents == {UNIFIED: own / layout.parents[UNIFIED].name}
    assert layout.limit_file("memory") == (UNIFIED, "memory.max")
    assert "limits: memory, cpus, max-pids" in layout.describe()
    assert (layout.parents[UNIFIED] / "cgroup.subtree_control").read_text() == "+cpu"

    limits = Limits(memory=256 * 2**20, cpu_milli=500, max_pids=64)
    cgroup = ProcessCgroup.of(layout, "web", limits)
    assert cgroup is not None
    cgroup.create(limits)
    directory = layout.parents[UNIFIED] / "proc-web"
    assert cgroup.dirs == {UNIFIED: directory}  # one hierarchy holds it all
    assert (directory / "memory.max").read_text() == str(256 * 2**20)
    assert (directory / "cpu.max").read_text() == "50000 100000"
    assert (directory / "pids.max").read_text() == "64"


def test_v2_without_the_memory_controller_refuses_memory_naming_it(tmp_path: Path) -> None:
    mountinfo, proc_cgroup = _cgroup2(tmp_path, "/user.slice", "cpu pids")
    layout = detect(tmp_path / "state", mountinfo=mountinfo, proc_cgroup=proc_cgroup)
    assert layout.kind == "v2" and "memory controller" in layout.missing
    cgroup = ProcessCgroup.of(layout, "web", Limits(memory=2**30))
    assert cgroup is not None
    with pytest.raises(SpawnFailed, match="--memory cannot be enforced here: this node has "
                                          "no memory controller"):
        cgroup.create(Limits(memory=2**30))
    cgroup.create(Limits(max_pids=10))  # what it has still works
    assert (layout.parents[UNIFIED] / "proc-web" / "pids.max").read_text() == "10"


def test_pure_v1_and_a_mount_that_shows_a_sub_tree(tmp_path: Path) -> None:
    memory, pids = tmp_path / "memory", tmp_path / "pids"
    (memory / "agent").mkdir(parents=True)  # the mount shows /docker/abc as its root
    (pids / "docker/abc/agent").mkdir(parents=True)
    mountinfo = (f"35 31 0:32 /docker/abc {memory} rw - cgroup cgroup rw,memory\n"
                 f"39 31 0:36 / {pids} rw - cgroup cgroup rw,pids\n")
    proc_cgroup = "4:memory:/docker/abc/agent\n8:pids:/docker/abc/agent\n"
    layout = detect(tmp_path / "state", mountinfo=mountinfo, proc_cgroup=proc_cgroup)
    assert layout.kind == "v1"
    assert layout.parents["memory"].parent == memory / "agent"
    assert layout.parents["pids"].parent == pids / "docker/abc/agent"
    assert layout.freezer() == "SIGSTOP" and not layout.can_kill()
    assert {"cpu controller", "freezer controller"} <= set(layout.missing)
    assert ProcessCgroup.of(layout, "db", Limits()).dirs == {  # type: ignore[union-attr]
        "memory": layout.parents["memory"] / "proc-db"}  # membership only: no limit asked
    limits = Limits(memory=64 * 2**20, max_pids=8)
    cgroup = ProcessCgroup.of(layout, "db", limits)
    assert cgroup is not None and set(cgroup.dirs) == {"memory", "pids"}
    cgroup.create(limits)
    assert (layout.parents["memory"] / "proc-db/memory.limit_in_bytes").read_text() \
        == str(64 * 2**20)
    assert (layout.parents["pids"] / "proc-db/pids.max").read_text() == "8"
    with pytest.raises(SpawnFailed, match="no cpu controller"):
        cgroup.create(Limits(cpu_milli=1000))


def test_no_cgroups_at_all(tmp_path: Path) -> None:
    layout = detect(tmp_path / "state", mountinfo="", proc_cgroup="")
    assert layout.kind == "none" and not layout.contained
    assert ProcessCgroup.of(layout, "x") is None
    assert layout.capabilities()[0] == "cgroup:none"
    assert "found by their marker" in layout.describe()


def test_two_agents_never_share_a_parent_and_one_agent_finds_its_own(tmp_path: Path) -> None:
    mountinfo, proc_cgroup = _cgroup2(tmp_path, "/", "memory")
    first = detect(tmp_path / "a", mountinfo=mountinfo, proc_cgroup=proc_cgroup)
    second = detect(tmp_path / "b", mountinfo=mountinfo, proc_cgroup=proc_cgroup)
    again = detect(tmp_path / "a", mountinfo=mountinfo, proc_cgroup=proc_cgroup)
    assert first.parents != second.parents and first.parents == again.parents


@pytest.mark.parametrize(("text", "canonical", "milli"), [
    ("0.5", "0.5", 500), ("2", "2", 2000), ("1.250", "1.25", 1250), ("0.001", "0.001", 1)])
def test_cpus_option(text: str, canonical: str, milli: int) -> None:
    assert canonical_options([("cpus", text)]) == (("cpus", canonical),)
    assert cpu_milli(canonical) == milli


@pytest.mark.parametrize(("key", "text", "words"), [
    ("cpus", "0", "not a number of CPUs"), ("cpus", "half", "not a number of CPUs"),
    ("cpus", "0.0001", "not a number of CPUs"), ("memory", "512K", "out of range"),
    ("memory", "lots", "not a size"), ("max-pids", "0", "not a number of processes")])
def test_bad_limits_are_refused_in_plain_words(key: str, text: str, words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        canonical_options([(key, text)])


def test_the_deploys_systemd_unit_delegates_cgroups_and_spares_the_processes() -> None:
    """Under systemd the unit's subtree is the agent's to divide (Delegate=yes), and
    stopping the agent leaves its processes running (KillMode=process)."""
    lines = systemd_unit("/opt/lotc").splitlines()
    assert "Delegate=yes" in lines and "KillMode=process" in lines
