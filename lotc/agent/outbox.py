"""The agent's outbox of events: numbered, on disk, kept until the server acknowledges.

Theory of operation
-------------------
Every event the agent produces (a crash, a watchdog restart, a missed
schedule...) gets the next sequence number and is appended to
`events.jsonl` before anything tries to send it, so it survives a
disconnect and an agent restart. The server stores each (agent, seq) once
and answers EVENT_ACK(seq); acknowledged events are dropped. On reconnect the
server's WELCOME says the highest seq it holds, which acknowledges
everything up to it (the ACK may have been lost with the connection), and
the rest is sent again: the server's de-duplication makes delivery exactly
once.

The file is append-only (one JSON object a line, with `{"ack": N}` lines
recording acknowledgements) and is rewritten compactly once it holds many
acknowledged lines. The outbox is bounded: past `max_events` unacknowledged
events the oldest are dropped, and a note says how many, rather than filling
the disk of a node cut off for weeks.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import trio

from protocol.enums import EventKind, ProcessState
from protocol.messages import Event

logger = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS = 10_000
COMPACT_AFTER_LINES = 2_000


def _to_json(event: Event) -> str:
    return json.dumps({
        "seq": event.seq, "time_us": event.time_us, "kind": int(event.kind),
        "process": event.process, "old": int(event.old_state), "new": int(event.new_state),
        "exit_code": event.exit_code, "signal": event.signal, "message": event.message,
        "schedule_id": event.schedule_id,
    })


def _from_json(data: dict[str, Any]) -> Event:
    return Event(
        seq=int(data["seq"]), agent="", time_us=int(data["time_us"]),
        kind=EventKind(data["kind"]), process=str(data["process"]),
        old_state=ProcessState(data["old"]), new_state=ProcessState(data["new"]),
        exit_code=int(data["exit_code"]), signal=int(data["signal"]),
        message=str(data["message"]), schedule_id=int(data.get("schedule_id", 0)),
    )


class EventOutbox:
    def __init__(self, state_dir: Path, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        self.path = state_dir / "events.jsonl"
        self.max_events = max_events
        self._pending: OrderedDict[int, Event] = OrderedDict()
        self._last_seq = 0
        self._acked = 0
        self._lines = 0
        self.changed = trio.Event()
        state_dir.mkdir(parents=True, exist_ok=True)
        self._load()
        self._file = self.path.open("a", encoding="utf-8")

    def _load(self) -> None:
        if not self.path.exists():
            return
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(line)
                if "ack" in data:
                    self._drop_through(int(data["ack"]))
                else:
                    event = _from_json(data)
                    self._pending[event.seq] = event
                    self._last_seq = max(self._last_seq, event.seq)
            except (ValueError, KeyError, TypeError):
                logger.warning("skipping a damaged line in %s", self.path)  # torn last write
            self._lines += 1
        self._last_seq = max(self._last_seq, self._acked)

    def add(self, event: Event) -> Event:
        """Number the event, make it durable, and return it as it will be sent."""
        self._last_seq += 1
        numbered = dataclasses.replace(event, seq=self._last_seq)
        self._pending[numbered.seq] = numbered
        self._write(_to_json(numbered))
        while len(self._pending) > self.max_events:
            dropped_seq, _ = self._pending.popitem(last=False)
            logger.warning("outbox full: dropped event %d (server unreachable too long)",
                           dropped_seq)
        self._notify()
        return numbered

    def ack(self, seq: int) -> None:
        """The server holds every event up to `seq`."""
        if seq <= self._acked:
            return
        # The server may hold more than we do (our state dir was wiped): number on from there.
        self._last_seq = max(self._last_seq, seq)
        self._drop_through(seq)
        self._write(json.dumps({"ack": seq}))
        if self._lines > COMPACT_AFTER_LINES and self._lines > 2 * len(self._pending):
            self._compact()

    def pending(self) -> list[Event]:
        return list(self._pending.values())

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def _drop_through(self, seq: int) -> None:
        self._acked = max(self._acked, seq)
        while self._pending and next(iter(self._pending)) <= seq:
            self._pending.popitem(last=False)

    def _write(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._lines += 1

    def _compact(self) -> None:
        temp = self.path.with_suffix(".tmp")
        with temp.open("w", encoding="utf-8") as out:
            out.write(json.dumps({"ack": self._acked}) + "\n")
            for event in self._pending.values():
                out.write(_to_json(event) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self._file.close()
        os.replace(temp, self.path)
        self._file = self.path.open("a", encoding="utf-8")
        self._lines = len(self._pending) + 1

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def close(self) -> None:
        self._file.close()
