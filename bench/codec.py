"""Codec benchmark: encode+decode round trips per second, beside msgpack and json.

    .venv/bin/python -m bench.codec [--seconds 25]

The same logical messages go through every codec: LOTC's generated fast path
(encode + FrameDecoder.feed, so framing and validation included), construct's
compiled and interpreted parsers on the spec (body only, for reference),
msgpack and json on the message as a plain dict. msgpack is measured twice:
with a streaming Unpacker (what a framed TCP stream needs, the like-for-like
peer of FrameDecoder) and as bare packb/unpackb. json carries bytes as base64.

The machine is noisy (a shared VM: the same loop varies by 2x from one second
to the next), so codecs are measured in interleaved rounds and the best round
of each is kept, as timeit does.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import msgpack

from protocol import reference, spec
from protocol.codec import FrameDecoder, encode
from protocol.enums import StreamKind
from protocol.messages import (
    BundleChunk,
    Heartbeat,
    LogLines,
    Message,
    NodeStats,
    ProcessStats,
    StatsReport,
)

NOW_US = 1_700_000_000_123_456


def stats_report(processes: int = 20) -> StatsReport:
    node = NodeStats(cpu_percent=37.5, load1=1.25, load5=0.75, load15=0.5, mem_total=16 << 30,
                     mem_used=9 << 30, swap_used=1 << 20, disk_read_bytes=123_456_789,
                     disk_write_bytes=987_654_321, net_sent_bytes=5_555_555,
                     net_recv_bytes=6_666_666, disk_used=50 << 30, disk_total=200 << 30,
                     uptime_s=864_000)
    procs = tuple(ProcessStats(name=f"worker-{i:02d}", pid=10_000 + i, cpu_percent=2.5,
                               rss=(64 + i) << 20, threads=8, open_files=24, restarts=i % 3,
                               last_liveness_us=NOW_US) for i in range(processes))
    return StatsReport(agent="", time_us=NOW_US, node=node, processes=procs)


LOG_LINE = "2026-05-09T07:35:25Z INFO GET /v1/jobs 200 12.5ms request_id=7f3a9c user=alice"
CASES: dict[str, Message] = {
    "heartbeat": Heartbeat(seq=123_456, time_us=NOW_US, running=20),
    "stats report, 20 processes": stats_report(),
    "log line": LogLines(agent="web-01", process="api", stream=StreamKind.STDOUT,
                         lines=(LOG_LINE,)),
    "bundle chunk, 64 KiB": BundleChunk(offset=1 << 20, data=os.urandom(64 * 1024)),
}


def as_dict(message: Message) -> Any:
    """The message as msgpack/json would carry it: dicts, lists, plain ints."""
    def plain(value: Any) -> Any:
        if isinstance(value, IntEnum):
            return int(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(message))  # type: ignore[call-overload]


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    raise TypeError(value)


def _json_hook(obj: dict[str, Any]) -> Any:
    return base64.b64decode(obj["b64"]) if obj.keys() == {"b64"} else obj


def round_trips(message: Message) -> dict[str, tuple[Callable[[], Any], int]]:
    """codec name -> (one encode+decode round trip, bytes on the wire)."""
    data = as_dict(message)
    decoder = FrameDecoder()
    unpacker = msgpack.Unpacker()
    body_struct = spec.BODIES[message.TYPE]
    compiled = reference.compiled(message.TYPE)
    built = reference.to_construct(reference.body_node(message.TYPE), message)

    def lotc() -> Any:
        return decoder.feed(encode(message, 7))

    def msgpack_stream() -> Any:
        unpacker.feed(msgpack.packb(data))
        return next(unpacker)

    def msgpack_plain() -> Any:
        return msgpack.unpackb(msgpack.packb(data))

    def json_rt() -> Any:
        return json.loads(json.dumps(data, default=_json_default), object_hook=_json_hook)

    assert lotc()[0].body == message
    assert msgpack_stream() == msgpack_plain() == data and json_rt() == data
    return {
        "lotc (generated)": (lotc, len(encode(message))),
        "construct compiled": (lambda: compiled.parse(compiled.build(built)), 0),
        "construct interpreted": (lambda: body_struct.parse(body_struct.build(built)), 0),
        "msgpack (stream)": (msgpack_stream, len(msgpack.packb(data))),
        "msgpack (packb/unpackb)": (msgpack_plain, len(msgpack.packb(data))),
        "json": (json_rt, len(json.dumps(data, default=_json_default))),
    }


def measure(fns: dict[str, Callable[[], Any]], seconds: float) -> dict[str, float]:
    """Best round trips/s of each, over interleaved rounds lasting about `seconds` in all."""
    batch = {name: _batch_size(fn) for name, fn in fns.items()}
    best = dict.fromkeys(fns, 0.0)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for name, fn in fns.items():
            n = batch[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            best[name] = max(best[name], n / (time.perf_counter() - start))
    return best


def _batch_size(fn: Callable[[], Any], target: float = 0.01) -> int:
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - start >= target / 4:
            return max(1, int(n * target / (time.perf_counter() - start)))
        n *= 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=25.0, help="total measuring time")
    args = parser.parse_args(argv)
    print(f"# bench.codec  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  "
          f"nproc={os.cpu_count()}  python {platform.python_version()}  "
          f"msgpack {msgpack.version}  {platform.machine()}")
    header = (f"{'message':28} {'codec':24} {'round trips/s':>14} {'MB/s':>8} {'bytes':>7}"
              f" {'x msgpack':>10} {'x msgpack':>10}")
    print(header)
    print(f"{'':28} {'':24} {'':>14} {'':>8} {'':>7} {'(stream)':>10} {'(plain)':>10}")
    for case, message in CASES.items():
        fns = round_trips(message)
        rates = measure({name: fn for name, (fn, _) in fns.items()}, args.seconds / len(CASES))
        stream, plain = rates["msgpack (stream)"], rates["msgpack (packb/unpackb)"]
        for name, (_, size) in fns.items():
            mbps = f"{rates[name] * size / 1e6:8.1f}" if size else f"{'':8}"
            print(f"{case:28} {name:24} {rates[name]:14,.0f} {mbps} {size or '':>7}"
                  f" {rates[name] / stream:10.2f} {rates[name] / plain:10.2f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
