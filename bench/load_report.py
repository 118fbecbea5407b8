"""bench.server_load's figures: the steady window's measurements turned into the result
dict (written as JSON with --json) and rendered as text with their ratio to the targets
of DESIGN.md section 6 (10,000 agents held with 1 s heartbeats and 10 s stats using
< 0.5 core; console p99 < 20 ms)."""
from __future__ import annotations

import itertools
import json
from typing import Any

from bench.console_rtt import ConsoleFigures
from bench.server_view import heard_within_s

TARGET_AGENTS = 10_000
TARGET_CORES = 0.5
TARGET_P99_MS = 20.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def window_figures(n: int, window: float, server_cpu: float, worker_cpu: float,
                   before: dict[str, int], after: dict[str, int], stats_rows: int,
                   samples: list[dict[str, Any]], rss: int, rss_idle: int,
                   unread: tuple[tuple[int, int], tuple[int, int]],
                   console: ConsoleFigures) -> dict[str, Any]:
    cores = server_cpu / window
    online_min = min(s["online"] for s in samples)
    heard_min = min(s["heard_2s"] for s in samples)
    per_second_cores = [
        (b["server_cpu"] - a["server_cpu"]) / (b["t"] - a["t"])
        for a, b in itertools.pairwise(samples) if b["t"] - a["t"] > 0.5
    ]
    rtt = {kind: {"p50_ms": round(pct(v, 50), 2), "p99_ms": round(pct(v, 99), 2),
                  "max_ms": round(max(v, default=float("nan")), 2), "n": len(v),
                  "errors": console.errors[kind]}
           for kind, v in console.rtt_ms.items()}
    worst_p99 = max(r["p99_ms"] for r in rtt.values())
    return {
        "window_s": round(window, 1),
        "online_min": online_min, "heard_within_2s_min": heard_min,
        "held_ratio": round(online_min / TARGET_AGENTS, 3),
        "server_cores": round(cores, 3), "server_cores_ratio": round(cores / TARGET_CORES, 2),
        "server_cores_max_1s": round(max(per_second_cores, default=cores), 3),
        "server_cores_per_1000": round(cores / max(1, online_min) * 1000, 4),
        "workers_cores": round(worker_cpu / window, 3),
        "server_rss_mib": round(rss / 2**20, 1),
        "server_rss_idle_mib": round(rss_idle / 2**20, 1),
        "server_rss_per_1000_mib": round((rss - rss_idle) / 2**20 / (n / 1000), 2),
        "heartbeats_per_s": round((after["heartbeats"] - before["heartbeats"]) / window),
        "stats_sent_per_s": round((after["stats"] - before["stats"]) / window, 1),
        "stats_stored_per_s": round(stats_rows / window, 1),
        "reconnects_in_window": after["reconnects"] - before["reconnects"],
        "failures_in_window": after["failures"] - before["failures"],
        "unread_bytes_start": unread[0], "unread_bytes_end": unread[1],
        "console": rtt, "console_worst_p99_ratio": round(worst_p99 / TARGET_P99_MS, 2),
        "full_agents_listing_ms": round(console.full_listing_ms, 1),
        "full_agents_listing_online": console.full_listing_online,
    }


def render(r: dict[str, Any]) -> str:
    if "server_cores" not in r:
        return json.dumps(r, indent=2)
    lines = [
        (f"server_load: {r['agents']} agents, {r['workers']} workers, {r['date']}, "
        f"{r['machine']['nproc']} CPUs, Python {r['machine']['python']}, "
        f"load average {r['loadavg_start'][0]:.2f} -> {r['loadavg_end'][0]:.2f}"),
        f"  RLIMIT_NOFILE: bench {tuple(r['nofile_bench'])}, server {tuple(r['nofile_server'])}",
        (f"  reference loopback round trip: blocking {r['echo_blocking_us']} us, "
        f"trio {r['echo_trio_us']} us (p50)"),
        (f"  ramp-up: {r['ramp_s']} s at {r['rate']:g}/s, server {r['ramp_server_cores']} cores, "
        f"{r['handshake_failures_during_ramp']} failed connects"),
        (f"  window {r['window_s']} s: agents online (server's view) min {r['online_min']}, "
        f"heard within {heard_within_s(r['agents']):g} s min {r['heard_within_2s_min']}  -> {r['held_ratio']}x the "
        f"{TARGET_AGENTS:,} target"),
        (f"  server CPU {r['server_cores']} cores (max 1 s: {r['server_cores_max_1s']}) -> "
        f"{r['server_cores_ratio']}x the {TARGET_CORES} core budget "
        f"[{'met' if r['server_cores'] < TARGET_CORES else 'MISSED'}]; load workers "
        f"{r['workers_cores']} cores"),
        (f"  server CPU per 1,000 agents held: {r['server_cores_per_1000']} cores "
        f"(x10 = {r['server_cores_per_1000'] * 10:.3f} cores for 10,000 at this rate)"),
        (f"  server RSS {r['server_rss_mib']} MiB (idle {r['server_rss_idle_mib']}), "
        f"{r['server_rss_per_1000_mib']} MiB per 1,000 agents"),
        (f"  heartbeats {r['heartbeats_per_s']}/s; stats reports sent {r['stats_sent_per_s']}/s, "
        f"stored {r['stats_stored_per_s']}/s; unread in server sockets "
        f"{r['unread_bytes_start'][0]} -> {r['unread_bytes_end'][0]} bytes; "
        f"reconnects {r['reconnects_in_window']}"),
    ]
    for kind, c in r["console"].items():
        lines.append(f"  console {kind:<12} p50 {c['p50_ms']:.2f} ms  p99 {c['p99_ms']:.2f} ms  "
                     f"max {c['max_ms']:.2f} ms  (n={c['n']}, errors {c['errors']})  -> p99 "
                     f"{c['p99_ms'] / TARGET_P99_MS:.2f}x the {TARGET_P99_MS:g} ms target")
    lines.append(f"  full `agents` listing ({r['full_agents_listing_online']} online): "
                 f"{r['full_agents_listing_ms']} ms")
    return "\n".join(lines)
