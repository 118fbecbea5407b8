"""What bench.server_load's database holds before the server starts: a token for every
agent and the admin (Model.create_token, as `lotc token create` does), and desired state
(a bundle, three processes) for the probe agent, which its simulated twin reports
holding (agents.json, read by bench/loadgen.py), so its reconcile is a no-op."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from lotc.server.model import Model
from lotc.server.records import ProcessSpecRecord
from protocol.enums import BundleKind, DesiredState, RestartPolicy, Role

PROBE_PROCESSES = ("p0", "p1", "p2")
ADMIN = "bench-admin"


def agent_name(i: int) -> str:
    return f"bench-{i:05d}"


def prepare_db(root: Path, n: int) -> tuple[Path, str, float]:
    """Tokens for N agents and the admin; desired state for the probe agent."""
    db = root / "lotc.db"
    model = Model(db)
    began = time.perf_counter()
    now = time.time_ns() // 1000
    try:
        admin_token = model.create_token(Role.ADMIN, ADMIN, now)
        agents: list[dict[str, Any]] = [
            {"name": agent_name(i), "token": model.create_token(Role.AGENT, agent_name(i), now)}
            for i in range(n)
        ]
        sha = hashlib.sha256(b"lotc bench bundle").digest()
        probe = agents[0]
        model.set_desired_bundle(probe["name"], "app", sha, BundleKind.FILE, 1000, now)
        probe["bundles"] = [["app", sha.hex()]]
        probe["processes"] = []
        for name in PROBE_PROCESSES:
            spec = model.put_process(ProcessSpecRecord(
                agent=probe["name"], name=name, bundle="app", argv=("sleep", "1000"), env=(),
                cwd="", restart=RestartPolicy.ALWAYS, liveness_ms=0, grace_ms=0,
                backoff_base_ms=0, backoff_cap_ms=0, restart_limit=0, restart_window_s=0,
                desired=DesiredState.RUNNING, revision=0, updated_us=now))
            probe["processes"].append([name, spec.revision])
    finally:
        model.close()
    elapsed = time.perf_counter() - began
    (root / "agents.json").write_text(json.dumps(agents))
    return db, admin_token, elapsed
