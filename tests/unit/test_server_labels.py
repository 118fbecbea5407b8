"""Labels on the server: model storage, announced vs console labels, label selectors.

A real model on a tmp SQLite file; fake agents speak the real codec and handshake
to the real `handle_agent` over memory streams (tests/server_helpers.py).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import trio

from lotc.errors import InvalidRequest, UnknownAgent
from lotc.server.controller import Controller
from lotc.server.labels import label_entries, set_labels, unset_labels
from lotc.server.model import Model
from lotc.server.schema import MIGRATIONS, connect, migrate
from protocol.enums import EventKind, Role
from protocol.errors import ErrorCode
from protocol.messages import AgentLabels, Event, Label, LabelSet, LabelUnset
from tests.model_helpers import reopen
from tests.server_helpers import (  # noqa: F401  (fixtures)
    connect_agent,
    ctl_fixture,
    ensure_token,
    model_fixture,
    wait_until,
    wall_fixture,
)


def labels(**pairs: str) -> tuple[Label, ...]:
    return tuple(Label(key=k, value=v) for k, v in pairs.items())


def effective(ctl: Controller, agent: str) -> dict[str, str]:
    record = ctl.model.labels(agent).get(agent)
    return {} if record is None else {**record.announced, **record.console}


def test_the_model_keeps_both_sources_apart_across_a_reopen(model: Model) -> None:
    model.replace_announced_labels("web-1", {"role": "web", "zone": "a"})
    model.set_console_labels("web-1", {"zone": "b"})
    model = reopen(model)  # a server restart
    try:
        record = model.labels()["web-1"]
        assert record.announced == {"role": "web", "zone": "a"}
        assert record.console == {"zone": "b"}
        model.replace_announced_labels("web-1", {"tier": "x"})  # the agent's next connect
        record = model.labels("web-1")["web-1"]
        assert record.announced == {"tier": "x"} and record.console == {"zone": "b"}
        assert model.unset_console_labels("web-1", ["zone", "nope"]) == ["zone"]
        model.replace_announced_labels("web-1", {})
        assert model.labels() == {}
    finally:
        model.close()


async def test_an_agent_announces_its_labels_at_connect(ctl: Controller,
                                                        nursery: trio.Nursery) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    await fake.send(AgentLabels(labels=labels(role="web", zone="a")))
    await wait_until(lambda: effective(ctl, "web-1") == {"role": "web", "zone": "a"})
    assert ctl.resolve_targets("role=web") == ["web-1"]
    # a bad set (not from our agent, which checks its --label) is refused whole, with an event
    await fake.send(AgentLabels(labels=labels(role="w*b")))
    await wait_until(lambda: any("labels refused" in e.message
                                 for e in ctl.model.events(agent="web-1")))
    assert effective(ctl, "web-1") == {"role": "web", "zone": "a"}
    assert ctl.session("web-1") is not None  # and the agent stays connected
    assert [e.kind for e in ctl.model.events(agent="web-1") if "refused" in e.message] == \
        [EventKind.ERROR]


async def test_a_state_without_labels_before_it_means_none(ctl: Controller,
                                                          nursery: trio.Nursery) -> None:
    # what the agent announced at its last connect, and a console label
    ctl.model.replace_announced_labels("web-1", {"role": "web"})
    ctl.model.set_console_labels("web-1", {"zone": "b"})
    fake = await connect_agent(nursery, ctl, "web-1", capabilities=("labels",))
    await fake.send(fake.state)  # restarted without --label: no AGENT_LABELS before its state
    await wait_until(lambda: effective(ctl, "web-1") == {"zone": "b"})
    # an agent of release 1 (no "labels" capability) never announces: nothing is cleared
    ctl.model.replace_announced_labels("old-1", {"role": "db"})
    old = await connect_agent(nursery, ctl, "old-1")
    await old.send(old.state)
    await old.send(Event(seq=1, time_us=1, kind=EventKind.ERROR, message="after the state"))
    await wait_until(lambda: ctl.model.events(agent="old-1"))  # read after the state: done
    assert effective(ctl, "old-1") == {"role": "db"}


async def test_label_and_unlabel_answer_per_agent(ctl: Controller) -> None:
    for name in ("web-1", "web-2", "db-1"):
        ensure_token(ctl, Role.AGENT, name)
    ctl.model.replace_announced_labels("web-1", {"role": "web", "zone": "a"})
    ctl.model.replace_announced_labels("web-2", {"role": "web"})

    results = await set_labels(ctl, LabelSet(target="web-*", labels=labels(zone="b")))
    assert [(r.agent, r.code) for r in results] == [("web-1", ErrorCode.OK),
                                                    ("web-2", ErrorCode.OK)]
    assert "overrides the agent's own zone=a" in results[0].message
    assert results[1].message == "labels role=web zone=b"
    assert ctl.resolve_targets("role=web,zone=b") == ["web-1", "web-2"]
    assert ctl.resolve_targets("zone!=b") == ["db-1"]  # no zone label at all

    results = await unset_labels(ctl, LabelUnset(target="web-1", keys=("zone",)))
    assert results[0].code == ErrorCode.OK
    assert "the agent's own zone=a applies again" in results[0].message
    assert ctl.resolve_targets("zone=a") == ["web-1"]

    # what only the agent's --label sets cannot be removed from the console: said, as a failure
    results = await unset_labels(ctl, LabelUnset(target="web-1", keys=("role",)))
    assert results[0].code == ErrorCode.CONFLICT
    assert "comes from the agent's own --label" in results[0].message
    results = await unset_labels(ctl, LabelUnset(target="db-1", keys=("role",)))
    assert results[0].code == ErrorCode.OK and "role not set" in results[0].message

    entries = label_entries(ctl, "")
    assert [e.agent for e in entries] == ["web-1", "web-2"]
    assert label_entries(ctl, "role=web")[1].console == labels(zone="b")


async def test_label_commands_refuse_bad_input_and_no_match(ctl: Controller) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    with pytest.raises(InvalidRequest, match="invalid value"):
        await set_labels(ctl, LabelSet(target="web-1", labels=labels(role="a b")))
    with pytest.raises(InvalidRequest, match="no label given"):
        await set_labels(ctl, LabelSet(target="web-1", labels=()))
    with pytest.raises(InvalidRequest, match="invalid label key"):
        await unset_labels(ctl, LabelUnset(target="web-1", keys=("a b",)))
    with pytest.raises(InvalidRequest, match="at most 32 console labels"):
        await unset_labels(ctl, LabelUnset(target="web-1", keys=tuple(f"k{i}" for i in range(33))))
    with pytest.raises(UnknownAgent, match=r"^no agent matches 'role=cache'$"):
        await set_labels(ctl, LabelSet(target="role=cache", labels=labels(x="y")))
    with pytest.raises(InvalidRequest, match="mixes agent names and label terms"):
        ctl.resolve_targets("web-1,role=web")


def test_a_database_of_the_previous_schema_gets_the_labels_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = connect(path)
    migrate(conn, path, MIGRATIONS[:3])  # as the release before labels left it
    conn.execute("INSERT INTO agents (name, hostname, address, version, online, first_seen_us,"
                 " last_seen_us, connected_us) VALUES ('web-1', 'h', 'a', 'v', 0, 1, 1, 1)")
    conn.close()
    model = Model(path)
    try:
        assert [a.name for a in model.agents()] == ["web-1"]  # kept
        model.set_console_labels("web-1", {"role": "web"})
        assert model.labels()["web-1"].console == {"role": "web"}
    finally:
        model.close()
