"""Message types, frame flags and the wire's fixed numbers: the part of the spec
that needs no `construct`.

The running code (codec, servers, agent) imports these from here; protocol/spec.py
re-exports them beside the body layouts, which only the generators and the
reference codec need. Wire values are fixed once released: only add.
"""
from __future__ import annotations

from enum import IntEnum

PROTOCOL_NAME = "lotc"
PROTOCOL_TITLE = "Low Orbit Task Cannon"
MAGIC = b"LT"
VERSION = 1
HEADER_SIZE = 14
DEFAULT_MAX_BODY = 4 * 1024 * 1024  # enforced from the header, before the body is read
DEFAULT_CHUNK_SIZE = 256 * 1024  # bundle chunk payload
DEFAULT_AGENT_PORT = 7370
DEFAULT_ADMIN_PORT = 7371


class MessageType(IntEnum):
    # handshake (both roles)
    HELLO = 1
    CHALLENGE = 2
    AUTH = 3
    WELCOME = 4
    # liveness and time
    HEARTBEAT = 10
    TIME_INFO = 11
    # replies
    OK = 20
    ERROR = 21
    RESULTS = 22
    BUNDLE_READY = 23
    TOKEN = 24
    CANCEL = 25
    # bundles
    BUNDLE_BEGIN = 30
    BUNDLE_CHUNK = 31
    BUNDLE_END = 32
    BUNDLE_REMOVE = 33
    # processes
    PROC_START = 40
    PROC_STOP = 41
    PROC_RESUME = 42
    PROC_TERMINATE = 43
    PROC_KILL = 44
    PROC_RESTART = 45
    PROC_REMOVE = 46
    PROC_START_OPTIONS = 47
    # schedules
    SCHEDULE_SET = 50
    SCHEDULE_CLEAR = 51
    # agent state, events, stats, logs
    AGENT_STATE = 60
    STATS_REPORT = 61
    EVENT = 62
    EVENT_ACK = 63
    LOG_LINES = 64
    # admin queries and their replies
    LIST_AGENTS = 70
    LIST_PROCESSES = 71
    LIST_BUNDLES = 72
    LIST_SCHEDULES = 73
    QUERY_STATS = 74
    QUERY_EVENTS = 75
    QUERY_LOGS = 76
    LIST_RUN_VERSIONS = 77
    QUERY_DISK = 78
    QUERY_AGENT = 79  # one agent in detail (issue 16: its cgroups)
    AGENT_LIST = 80
    PROCESS_LIST = 81
    BUNDLE_LIST = 82
    SCHEDULE_LIST = 83
    STATS_HISTORY = 84
    RUN_VERSIONS = 85
    DISK_USAGE = 86
    AGENT_DETAIL = 87
    # token administration
    TOKEN_CREATE = 90
    TOKEN_REVOKE = 91
    # one process in detail, and instance sets (issue 16: 100-109)
    QUERY_PROCESS = 100
    PROCESS_DETAIL = 101
    SCALE_PROCESS = 102
    # labels (issue 17: 110-114)
    AGENT_LABELS = 110
    LABEL_SET = 111
    LABEL_UNSET = 112
    LIST_LABELS = 113
    LABEL_LIST = 114


class FrameFlag(IntEnum):
    MORE = 0x0001  # more frames of this reply follow
