"""The server's model survives a restart: every table reads back the same (real SQLite)."""
from __future__ import annotations

import hashlib

from lotc.server.model import Model
from lotc.server.records import BundleRecord
from protocol.enums import (
    BundleKind,
    Role,
)
from tests.model_helpers import (  # noqa: F401  (fixtures)
    SHA_A,
    db_path_fixture,
    event,
    model_fixture,
    reopen,
    schedule,
    spec,
    stats,
    status,
)

# ---------------------------------------------------------------- restart


def test_everything_survives_a_restart(model: Model) -> None:
    token = model.create_token(Role.AGENT, "web1", now_us=1)
    model.agent_connected("web1", "host", "127.0.0.1:1", "lotc", now_us=2)
    model.set_desired_bundle("web1", "app", SHA_A, BundleKind.FILE, 8, now_us=3)
    model.replace_reported_bundles("web1", [BundleRecord("web1", "app", SHA_A,
                                                         BundleKind.FILE, 8, 4)])
    stored = model.put_process(spec())
    model.update_process_status(status())
    sched = model.add_schedule(schedule())
    model.add_event(event(seq=7))
    model.add_stats([stats("web1", 5)])
    before = (model.tokens(), model.agents(), model.desired_bundles(), model.reported_bundles(),
              model.processes(), model.process_statuses(), model.schedules(),
              model.events(), model.stats_history("web1"))
    model = reopen(model)
    try:
        after = (model.tokens(), model.agents(), model.desired_bundles(),
                 model.reported_bundles(), model.processes(), model.process_statuses(),
                 model.schedules(), model.events(), model.stats_history("web1"))
        assert after == before
        assert model.token_key(Role.AGENT, "web1") == hashlib.sha256(token.encode()).digest()
        assert model.process("web1", "api").revision == stored.revision
        assert model.schedule(sched.id) == sched
        assert model.add_event(event(seq=7)) is None
        assert model.mark_all_offline(now_us=9) == 1
    finally:
        model.close()
