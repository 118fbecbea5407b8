"""The LOTC wire protocol: the single source of truth.

Theory of operation
-------------------
A LOTC connection is a TCP (optionally TLS) byte stream of frames. A frame is a
fixed 14-byte HEADER followed by a body of `body_length` bytes whose layout is
given by BODIES[header.type]. Everything else (the codec, docs/protocol.md,
wireshark/lotc.lua) is derived from the objects in this module by walking them,
so they cannot drift apart. Keep the vocabulary small: the walkers understand
exactly the field types built by the helpers below (fixed-width integers,
floats, flags, enums, fixed bytes, length-prefixed strings and blobs,
length-prefixed arrays and nested structs).

Conventions
- Integers are big-endian ("network order").
- Times are UTC microseconds since the Unix epoch in a signed 64-bit field
  (`*_us`); 0 means "never / unknown". Durations are in milliseconds (`*_ms`).
- Strings are UTF-8, prefixed with their byte length (16-bit `Str`, 32-bit `Text`).
- `target` and `pattern` fields (admin -> server) name agents with a selector: a
  name, a glob (`web-*`), `all`, a comma list, or label terms (`role=web,zone!=b`);
  lotc/selectors.py has the rules. On the server -> agent leg the server sends the
  same message with an empty target.
- Every request carries a request id in the header; its reply (OK, ERROR,
  RESULTS or a data message) echoes it. A reply too big for one frame is sent as
  several frames of the same type and request id, all but the last flagged MORE.
  Unsolicited frames (HEARTBEAT, EVENT, STATS_REPORT, ...) use request id 0, or
  the id of the follow request (`events -f`, `logs -f`) they answer.
- Bundle uploads: BUNDLE_BEGIN (reply BUNDLE_READY with the offset the receiver
  already has, so an interrupted upload resumes), then BUNDLE_CHUNKs carrying the
  BEGIN's request id and no individual reply, then BUNDLE_END (reply OK or
  ERROR). The receiver checks the SHA-256 given in BEGIN before the bundle
  becomes visible.

- Capabilities: a client lists in HELLO what it understands beyond release 1.
  The server sends a newer message only to an agent that announced it:
  LIST_RUN_VERSIONS to agents with "run-versions", PROC_START_OPTIONS to agents
  with "start-options", QUERY_DISK to agents with "disk-free" (for the others the
  server answers DISK_USAGE itself, figures unknown: "agent too old"), and TIMING
  right after WELCOME to clients with "timing" (its numbers give the client's
  silence limit for the server: lotc/timing.py).
- Labels (110-114): protocol/spec_labels.py; bundle versions and rollback (116-119):
  protocol/spec_fleet.py; both merged below.

Wire values of message types and enums are fixed once released: only add.
"""
from __future__ import annotations

from construct import (
    Bytes,
    Const,
    Flag,
    FlagsEnum,
    Float32b,
    Int8ub,
    Int16sb,
    Int16ub,
    Int32ub,
    Int64sb,
    Int64ub,
    Struct,
)

from protocol.enums import (
    Action,
    BundleKind,
    DesiredState,
    EventKind,
    ProcessState,
    RestartPolicy,
    Role,
    ScheduleKind,
    StreamKind,
)
from protocol.errors import ErrorCode
from protocol.message_types import (  # noqa: F401  (re-exported: the spec names them)
    CONTRACT,
    DEFAULT_ADMIN_PORT,
    DEFAULT_AGENT_PORT,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_BODY,
    HEADER_SIZE,
    MAGIC,
    PROTOCOL_NAME,
    PROTOCOL_TITLE,
    VERSION,
    FrameFlag,
    MessageType,
)
from protocol.spec_fleet import FLEET_BODIES, FLEET_STRUCTS
from protocol.spec_labels import LABEL_BODIES, LABEL_STRUCTS
from protocol.vocabulary import (
    Blob,
    DurationMs,
    Sha256,
    Str,
    Text,
    TimeUs,
    array_of,
    enum_of,
)

# The vocabulary (Str, Text, Blob, Sha256, TimeUs, DurationMs, enum_of, array_of) is
# protocol/vocabulary.py's, imported above.

# ---------------------------------------------------------------- header

HEADER = Struct(
    "magic" / Const(MAGIC) * "always 'LT'",
    "version" / Int8ub * "protocol version, currently 1",
    "type" / enum_of(MessageType) * "message type: selects the body layout",
    "flags" / FlagsEnum(Int16ub, FrameFlag) * "MORE: further frames of this reply follow",
    "request_id" / Int32ub * "echoed by the reply; 0 for unsolicited frames",
    "body_length" / Int32ub * "bytes of body after the header",
)

# ---------------------------------------------------------------- shared parts

KeyValue = Struct("key" / Str, "value" / Text)

BundleEntry = Struct(
    "agent" / Str * "agent holding it (empty in an agent's own report)",
    "name" / Str,
    "sha256" / Sha256,
    "kind" / enum_of(BundleKind),
    "size" / Int64ub * "bytes as transferred",
    "stored_us" / TimeUs,
)

ProcessEntry = Struct(
    "agent" / Str * "agent running it (empty in an agent's own report)",
    "name" / Str,
    "bundle" / Str,
    "revision" / Int64ub * "server's revision of the desired spec the agent runs",
    "state" / enum_of(ProcessState),
    "desired" / enum_of(DesiredState),
    "pid" / Int32ub * "0 when not running",
    "exit_code" / Int16sb * "last exit code, -1 when none",
    "exit_signal" / Int8ub * "signal that ended it, 0 when none",
    "restarts" / Int32ub,
    "started_us" / TimeUs,
    "last_liveness_us" / TimeUs,
    "status" / Str * "last STATUS= text sent by the process",
)

ProcessFactsEntry = Struct(
    "agent" / Str * "agent running it (empty in an agent's own answer)",
    "process" / Str,
    "facts" / array_of(KeyValue) * "label and text: health, health-why, ready, oom-kills...",
)

RunVersion = Struct(
    "agent" / Str * "agent running it (empty in an agent's own answer)",
    "process" / Str,
    "sha256" / Sha256 * "bundle version (SHA-256) the process's current or last run uses",
)

ScheduleEntry = Struct(
    "id" / Int64ub * "assigned by the server",
    "agent" / Str,
    "process" / Str,
    "action" / enum_of(Action),
    "signal" / Str * "for kill: signal name, empty for SIGKILL",
    "kind" / enum_of(ScheduleKind),
    "cron" / Str * "cron expression (kind CRON)",
    "tz" / Str * "IANA time zone for cron, empty for UTC",
    "at_us" / TimeUs * "fire time (kind AT)",
    "next_fire_us" / TimeUs,
    "last_fire_us" / TimeUs,
)

# What `df` shows for the filesystem holding an agent's state dir (os.statvfs).
DiskEntry = Struct(
    "agent" / Str * "agent whose state dir it is (empty in an agent's own answer)",
    "path" / Str * "the agent's state dir",
    "mount" / Str * "mount point of the filesystem holding it",
    "used" / Int64ub * "bytes, (f_blocks - f_bfree) * f_frsize: df's Used",
    "avail" / Int64ub * "bytes free to unprivileged users, f_bavail * f_frsize: df's Avail",
    "total" / Int64ub * "bytes, f_blocks * f_frsize: df's Size",
    "inodes_used" / Int64ub * "f_files - f_ffree: df -i's IUsed",
    "inodes_free" / Int64ub * "f_ffree: df -i's IFree",
    "inodes_total" / Int64ub * "f_files: df -i's Inodes",
    "unknown" / Str * "why the figures are unknown (agent too old, offline, ...); empty if known",
)

NodeStats = Struct(
    "cpu_percent" / Float32b,
    "load1" / Float32b,
    "load5" / Float32b,
    "load15" / Float32b,
    "mem_total" / Int64ub,
    "mem_used" / Int64ub,
    "swap_used" / Int64ub,
    "disk_read_bytes" / Int64ub,
    "disk_write_bytes" / Int64ub,
    "net_sent_bytes" / Int64ub,
    "net_recv_bytes" / Int64ub,
    "disk_used" / Int64ub * "of the filesystem holding the agent's state dir",
    "disk_total" / Int64ub,
    "uptime_s" / Int32ub,
)

ProcessStats = Struct(
    "name" / Str,
    "pid" / Int32ub,
    "cpu_percent" / Float32b * "whole process tree",
    "rss" / Int64ub * "bytes, whole process tree",
    "threads" / Int16ub,
    "open_files" / Int16ub,
    "restarts" / Int32ub,
    "last_liveness_us" / TimeUs,
)

AgentEntry = Struct(
    "name" / Str,
    "online" / Flag,
    "hostname" / Str,
    "address" / Str * "peer address of its connection",
    "version" / Str,
    "last_seen_us" / TimeUs,
    "connected_us" / TimeUs,
    "clock_offset_us" / Int64sb * "measured by the agent against NTP",
    "clock_delay_us" / Int64sb,
    "clock_source" / Str * "NTP server used, empty when unsynced",
    "clock_measured_us" / TimeUs * "when the offset was measured (its age)",
    "processes" / Int16ub,
)

AgentResult = Struct(
    "agent" / Str,
    "code" / enum_of(ErrorCode, Int16ub) * "OK (0) or the error code",
    "message" / Str,
)

Target = "target" / Str * "agent name, glob or 'all' (empty on the server -> agent leg)"

ProcTarget = Struct(
    Target,
    "name" / Str * "process name",
    "signal" / Str * "PROC_KILL: signal name, empty for SIGKILL",
    "grace_ms" / DurationMs * "PROC_TERMINATE: grace before SIGKILL, 0 for the default",
)

Pattern = Struct("pattern" / Str * "agent name, glob or 'all'; empty means all")

# ---------------------------------------------------------------- bodies

# PROC_START's fields, shared with PROC_START_OPTIONS (which appends its options).
PROC_START_FIELDS = (
    Target,
    "name" / Str * "process name, unique on the agent",
    "bundle" / Str,
    "revision" / Int64ub * "set by the server",
    "argv" / array_of(Text),
    "env" / array_of(KeyValue),
    "cwd" / Str * "relative to the bundle, empty for its root",
    "restart" / enum_of(RestartPolicy),
    "liveness_ms" / DurationMs * "0: no liveness watchdog",
    "grace_ms" / DurationMs * "terminate grace before SIGKILL",
    "backoff_base_ms" / DurationMs,
    "backoff_cap_ms" / DurationMs,
    "restart_limit" / Int16ub * "restarts allowed within restart_window_s",
    "restart_window_s" / Int32ub,
)


BODIES: dict[MessageType, Struct] = {
    MessageType.HELLO: Struct(
        "role" / enum_of(Role),
        "name" / Str * "agent name or admin name",
        "software" / Str * "software version, e.g. lotc 0.1.0",
        "hostname" / Str,
        "addresses" / array_of(Str, Int8ub),
        "capabilities" / array_of(Str, Int8ub),
    ),
    MessageType.CHALLENGE: Struct(
        "nonce" / Bytes(32) * "random, fresh for every connection",
        "server_time_us" / TimeUs,
    ),
    MessageType.AUTH: Struct(
        "mac" / Bytes(32) * "HMAC-SHA256(key=SHA-256(token), nonce || role || name)",
    ),
    MessageType.WELCOME: Struct(
        "server" / Str * "server software version",
        "heartbeat_ms" / DurationMs * "interval the client must send heartbeats at",
        "max_body" / Int32ub,
        "last_event_seq" / Int64ub * "agents: highest event seq the server has stored",
    ),
    MessageType.TIMING: Struct(
        "heartbeat_ms" / DurationMs * "you beat this often (as WELCOME.heartbeat_ms)",
        "ping_ms" / DurationMs * "the server beats you this often (on your own beats, "
        "to agents: one may come a heartbeat late)",
        "missed" / Int8ub * "beats missed before either side presumes the link dead",
        "silence_limit_ms" / DurationMs * "the server closes your link after this much silence",
    ),
    MessageType.HEARTBEAT: Struct(
        "seq" / Int32ub,
        "time_us" / TimeUs * "sender's corrected clock",
        "running" / Int16ub * "processes running on the sender",
    ),
    MessageType.TIME_INFO: Struct(
        "source" / Str * "NTP server, empty when none answered",
        "offset_us" / Int64sb,
        "delay_us" / Int64sb,
        "stratum" / Int8ub,
        "measured_us" / TimeUs,
    ),
    MessageType.OK: Struct("message" / Str),
    MessageType.ERROR: Struct(
        "code" / enum_of(ErrorCode, Int16ub),
        "message" / Str * "plain words, for humans",
    ),
    MessageType.RESULTS: Struct("results" / array_of(AgentResult)),
    MessageType.BUNDLE_READY: Struct(
        "offset" / Int64ub * "bytes already held: continue from here",
    ),
    MessageType.TOKEN: Struct("token" / Str),
    MessageType.CANCEL: Struct(
        "cancel_request_id" / Int32ub * "follow request (events -f, logs -f) to end",
    ),
    MessageType.BUNDLE_BEGIN: Struct(
        Target,
        "name" / Str,
        "kind" / enum_of(BundleKind),
        "size" / Int64ub,
        "sha256" / Sha256,
    ),
    MessageType.BUNDLE_CHUNK: Struct(
        "offset" / Int64ub * "position of data in the bundle",
        "data" / Blob,
    ),
    MessageType.BUNDLE_END: Struct("size" / Int64ub * "total bytes sent"),
    MessageType.BUNDLE_REMOVE: Struct(Target, "name" / Str),
    MessageType.PROC_START: Struct(*PROC_START_FIELDS),
    # PROC_START's layout is frozen (agents of release 1 parse it): options travel in
    # a message of their own, sent only to agents announcing "start-options". Keys are
    # those of lotc.options.OPTIONS; a new option is a row there, not a new message.
    MessageType.PROC_START_OPTIONS: Struct(
        *PROC_START_FIELDS,
        "options" / array_of(KeyValue) * "process options (log-size, log-keep, ...) as text",
    ),
    MessageType.PROC_STOP: ProcTarget,
    MessageType.PROC_RESUME: ProcTarget,
    MessageType.PROC_TERMINATE: ProcTarget,
    MessageType.PROC_KILL: ProcTarget,
    MessageType.PROC_RESTART: ProcTarget,
    MessageType.PROC_REMOVE: ProcTarget,
    MessageType.SCHEDULE_SET: Struct(Target, "schedule" / ScheduleEntry),
    MessageType.SCHEDULE_CLEAR: Struct(Target, "id" / Int64ub),
    MessageType.AGENT_STATE: Struct(
        "bundles" / array_of(BundleEntry),
        "processes" / array_of(ProcessEntry),
        "schedules" / array_of(ScheduleEntry),
    ),
    MessageType.STATS_REPORT: Struct(
        "agent" / Str * "empty from the agent; set by the server when relaying",
        "time_us" / TimeUs,
        "node" / NodeStats,
        "processes" / array_of(ProcessStats),
    ),
    MessageType.EVENT: Struct(
        "seq" / Int64ub * "per agent, increasing; the server acknowledges and de-duplicates",
        "agent" / Str,
        "time_us" / TimeUs,
        "kind" / enum_of(EventKind),
        "process" / Str,
        "old_state" / enum_of(ProcessState),
        "new_state" / enum_of(ProcessState),
        "exit_code" / Int16sb * "-1 when none",
        "signal" / Int8ub * "0 when none",
        "message" / Str,
        "schedule_id" / Int64ub
        * "SCHEDULE_FIRED: the schedule that acted, so the server's desired state follows it",
    ),
    MessageType.EVENT_ACK: Struct("seq" / Int64ub * "every event up to seq is stored"),
    MessageType.LOG_LINES: Struct(
        "agent" / Str,
        "process" / Str,
        "stream" / enum_of(StreamKind),
        "lines" / array_of(Text),
    ),
    MessageType.LIST_AGENTS: Pattern,
    MessageType.LIST_PROCESSES: Pattern,
    MessageType.LIST_BUNDLES: Pattern,
    MessageType.LIST_SCHEDULES: Pattern,
    MessageType.QUERY_STATS: Struct(
        "agent" / Str,
        "since_us" / TimeUs,
        "limit" / Int32ub * "most recent reports to return",
    ),
    MessageType.QUERY_EVENTS: Struct(
        "pattern" / Str,
        "since_us" / TimeUs,
        "limit" / Int32ub,
        "follow" / Flag * "keep streaming new events until CANCEL",
    ),
    MessageType.QUERY_LOGS: Struct(
        Target,
        "process" / Str,
        "lines" / Int32ub * "last N lines of each stream",
        "follow" / Flag * "keep streaming new lines until CANCEL",
    ),
    MessageType.LIST_RUN_VERSIONS: Struct(
        "pattern" / Str * "agent name, glob or 'all'; empty means all (server -> agent: empty)",
    ),
    MessageType.QUERY_DISK: Struct(
        "pattern" / Str * "agent name, glob or 'all' (server -> agent: empty, its own disk)",
    ),
    MessageType.AGENT_LIST: Struct("agents" / array_of(AgentEntry, Int32ub)),
    MessageType.PROCESS_LIST: Struct("processes" / array_of(ProcessEntry, Int32ub)),
    MessageType.BUNDLE_LIST: Struct("bundles" / array_of(BundleEntry, Int32ub)),
    MessageType.SCHEDULE_LIST: Struct("schedules" / array_of(ScheduleEntry, Int32ub)),
    MessageType.STATS_HISTORY: Struct(
        "agent" / Str,
        "samples" / array_of(Struct("time_us" / TimeUs, "node" / NodeStats), Int32ub),
        "processes" / array_of(ProcessStats) * "latest per-process stats",
    ),
    MessageType.RUN_VERSIONS: Struct(
        "runs" / array_of(RunVersion, Int32ub)
        * "processes whose bundle version is known; agents of release 1 send none",
    ),
    MessageType.DISK_USAGE: Struct(
        "disks" / array_of(DiskEntry, Int32ub)
        * "one per agent asked (an agent answers one, its own, agent empty)",
    ),
    MessageType.TOKEN_CREATE: Struct("role" / enum_of(Role), "name" / Str),
    MessageType.TOKEN_REVOKE: Struct("name" / Str),
    MessageType.QUERY_PROCESS: Struct(
        "agent" / Str * "one agent's name",
        "name" / Str * "process name",
        "show_env" / Flag * "give environment values, not only their keys",
    ),
    MessageType.PROCESS_DETAIL: Struct(
        "agent" / Str,
        "name" / Str,
        "fields" / array_of(KeyValue)
        * "label and text, in display order: state, pid, version, restarts, then every "
          "start option the process was started with; env values hidden unless asked",
    ),
    MessageType.QUERY_AGENT: Struct("agent" / Str * "one agent's name"),
    MessageType.AGENT_DETAIL: Struct(
        "agent" / Str,
        "fields" / array_of(KeyValue) * "label and text, in display order; its cgroups too",
    ),
    MessageType.LIST_PROCESS_FACTS: Struct("pattern" / Str * "agent name or glob"),
    MessageType.PROCESS_FACTS: Struct("processes" / array_of(ProcessFactsEntry, Int32ub)),
    MessageType.ROLLING_RESTART: Struct(
        Target, "name" / Str * "process name",
        "max_unavailable" / Int16ub * "agents restarted at once (a batch); 0 means 1",
        "healthy_deadline_ms" / DurationMs * "a batch must be ready within this",
    ),
    MessageType.EXEC_RUN: Struct(
        Target, "argv" / array_of(Text), "timeout_ms" / DurationMs,
        "parallel" / Int16ub * "agents running it at once; 0: all", "user" / Str,
    ),
    MessageType.EXEC_COMMAND: Struct(
        "argv" / array_of(Text), "timeout_ms" / DurationMs, "user" / Str,
        "max_output" / Int32ub * "bytes kept of stdout, and of stderr",
    ),
    MessageType.EXEC_RESULT: Struct(
        "agent" / Str, "status" / Str * "exited, killed, timed out, offline, refused...",
        "exit_code" / Int16sb * "-1 when none", "signal" / Int8ub, "duration_us" / Int64ub,
        "stdout" / Blob, "stderr" / Blob, "truncated" / Flag * "output past max_output cut",
        "message" / Str * "why it did not run, in words",
    ),
    MessageType.SCALE_PROCESS: Struct(
        Target,
        "name" / Str * "the set's name P: its instances are P-0 ... P-(N-1)",
        "instances" / Int16ub * "how many instances the set must have (highest go first)",
    ),
    **LABEL_BODIES,
    **FLEET_BODIES,
}

# Named shared structs, for generated documentation and dissector subtrees.
SHARED_STRUCTS: dict[str, Struct] = {
    "KeyValue": KeyValue,
    "BundleEntry": BundleEntry,
    "ProcessEntry": ProcessEntry,
    "RunVersion": RunVersion,
    "ScheduleEntry": ScheduleEntry,
    "DiskEntry": DiskEntry,
    "NodeStats": NodeStats,
    "ProcessStats": ProcessStats,
    "AgentEntry": AgentEntry,
    "ProcessFactsEntry": ProcessFactsEntry,
    "AgentResult": AgentResult,
    **LABEL_STRUCTS,
    **FLEET_STRUCTS,
}

# Who may send each message, and when: CONTRACT, beside MessageType (no construct needed).
assert set(BODIES) == set(MessageType) == set(CONTRACT), "every message type needs a body and a rule"
assert HEADER.sizeof() == HEADER_SIZE
