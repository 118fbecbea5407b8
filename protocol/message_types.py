"""Message types, frame flags, the wire's fixed numbers and the CONTRACT (who may
send what, when): the part of the spec that needs no `construct`.

The running code (codec, servers, agent) imports these from here; protocol/spec.py
re-exports them beside the body layouts, which only the generators and the
reference codec need. Wire values are fixed once released: only add.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

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
    TIMING = 5  # right after WELCOME, to clients announcing "timing" (lotc/timing.py)
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
    LIST_PROCESS_FACTS = 103  # what an agent knows of each run beyond ProcessEntry
    PROCESS_FACTS = 104
    # a restart that rolls through the agents in batches (issue 17: 115-119)
    ROLLING_RESTART = 115
    LIST_BUNDLE_VERSIONS = 116  # the versions an agent keeps (protocol/spec_fleet.py)
    BUNDLE_VERSIONS = 117
    ROLLBACK = 118
    BUNDLE_SWITCH = 119
    # a command run once on many agents (issue 20: 120-129)
    EXEC_RUN = 120
    EXEC_COMMAND = 121
    EXEC_RESULT = 122
    # labels (issue 17: 110-114)
    AGENT_LABELS = 110
    LABEL_SET = 111
    LABEL_UNSET = 112
    LIST_LABELS = 113
    LABEL_LIST = 114


class FrameFlag(IntEnum):
    MORE = 0x0001  # more frames of this reply follow


# ------------------------------------------------------------------ the contract
#
# Theory of operation (as h11's _state.py: one table that both documents and enforces)
# ---------------------------------------------------------------------------------
# A LOTC link joins a client (an agent on the agent port, a console on the admin
# port) to the server. Each link carries frames two ways, so there are four legs.
# A link is first in HANDSHAKE (HELLO, CHALLENGE, AUTH, until the server's WELCOME),
# then AUTHENTICATED until it closes; WELCOME is the only transition. CONTRACT names,
# for each message type, the legs that may carry it in each phase. Every receiver
# checks each frame against it (protocol/contract.py) and answers anything else
# with ERROR UNEXPECTED_MESSAGE and a closed link; docs/protocol.md prints it.
# It says what the code sends today, no more: widening a cell is a protocol change.


class Leg(Enum):
    """One direction of one kind of link: who sends, to whom."""

    AGENT_TO_SERVER = "agent → server"
    ADMIN_TO_SERVER = "console → server"
    SERVER_TO_AGENT = "server → agent"
    SERVER_TO_ADMIN = "server → console"


class Phase(Enum):
    HANDSHAKE = "handshake"  # from connect until WELCOME
    AUTHENTICATED = "authenticated"  # from WELCOME until the link closes


@dataclass(frozen=True)
class Rule:
    """The legs that may carry one message type, in each phase."""

    handshake: frozenset[Leg] = frozenset()
    authenticated: frozenset[Leg] = frozenset()

    def legs(self, phase: Phase) -> frozenset[Leg]:
        return self.handshake if phase is Phase.HANDSHAKE else self.authenticated


_A, _C = Leg.AGENT_TO_SERVER, Leg.ADMIN_TO_SERVER
_TA, _TC = Leg.SERVER_TO_AGENT, Leg.SERVER_TO_ADMIN
_CLIENTS = frozenset({_A, _C})
_SERVER = frozenset({_TA, _TC})


def _session(*legs: Leg) -> Rule:
    return Rule(authenticated=frozenset(legs))


_COMMAND = _session(_C, _TA)  # a console asks the server, which passes it on to agents
_QUERY = _session(_C)  # a console asks; the server answers itself
_ANSWER = _session(_TC)  # the server's answer to a console
_RELAYED = _session(_A, _TC)  # an agent's answer or report, passed on to consoles

CONTRACT: dict[MessageType, Rule] = {
    MessageType.HELLO: Rule(handshake=_CLIENTS),
    MessageType.CHALLENGE: Rule(handshake=_SERVER),
    MessageType.AUTH: Rule(handshake=_CLIENTS),
    MessageType.WELCOME: Rule(handshake=_SERVER),
    MessageType.TIMING: _session(_TA, _TC),  # the first frame after WELCOME, if any
    MessageType.HEARTBEAT: _session(_A, _C, _TA, _TC),
    MessageType.TIME_INFO: _session(_A),
    MessageType.OK: _RELAYED,
    # The server explains a refusal before it closes, in either phase; a client's
    # ERROR answers a server request (agents) or is a peer's last word.
    MessageType.ERROR: Rule(handshake=_SERVER, authenticated=frozenset({_A, _TA, _TC})),
    MessageType.RESULTS: _ANSWER,
    MessageType.BUNDLE_READY: _RELAYED,
    MessageType.TOKEN: _ANSWER,
    MessageType.CANCEL: _COMMAND,
    MessageType.BUNDLE_BEGIN: _COMMAND,
    MessageType.BUNDLE_CHUNK: _COMMAND,
    MessageType.BUNDLE_END: _COMMAND,
    MessageType.BUNDLE_REMOVE: _COMMAND,
    MessageType.PROC_START: _COMMAND,
    MessageType.PROC_STOP: _COMMAND,
    MessageType.PROC_RESUME: _COMMAND,
    MessageType.PROC_TERMINATE: _COMMAND,
    MessageType.PROC_KILL: _COMMAND,
    MessageType.PROC_RESTART: _COMMAND,
    MessageType.PROC_REMOVE: _COMMAND,
    MessageType.PROC_START_OPTIONS: _COMMAND,
    MessageType.SCHEDULE_SET: _COMMAND,
    MessageType.SCHEDULE_CLEAR: _COMMAND,
    MessageType.AGENT_STATE: _session(_A),
    MessageType.STATS_REPORT: _session(_A),
    MessageType.EVENT: _RELAYED,
    MessageType.EVENT_ACK: _session(_TA),
    MessageType.LOG_LINES: _RELAYED,
    MessageType.LIST_AGENTS: _QUERY,
    MessageType.LIST_PROCESSES: _COMMAND,  # to an agent: the server refreshing its view
    MessageType.LIST_BUNDLES: _QUERY,
    MessageType.LIST_SCHEDULES: _QUERY,
    MessageType.QUERY_STATS: _QUERY,
    MessageType.QUERY_EVENTS: _QUERY,
    MessageType.QUERY_LOGS: _COMMAND,
    MessageType.LIST_RUN_VERSIONS: _COMMAND,
    MessageType.QUERY_DISK: _COMMAND,
    MessageType.AGENT_LIST: _ANSWER,
    MessageType.PROCESS_LIST: _ANSWER,
    MessageType.BUNDLE_LIST: _ANSWER,
    MessageType.SCHEDULE_LIST: _ANSWER,
    MessageType.STATS_HISTORY: _ANSWER,
    MessageType.RUN_VERSIONS: _RELAYED,
    MessageType.DISK_USAGE: _RELAYED,
    MessageType.TOKEN_CREATE: _QUERY,
    MessageType.TOKEN_REVOKE: _QUERY,
    MessageType.QUERY_PROCESS: _QUERY,
    MessageType.PROCESS_DETAIL: _ANSWER,
    MessageType.SCALE_PROCESS: _QUERY,
    MessageType.QUERY_AGENT: _QUERY,
    MessageType.AGENT_DETAIL: _ANSWER,
    MessageType.LIST_PROCESS_FACTS: _COMMAND,
    MessageType.PROCESS_FACTS: _RELAYED,
    MessageType.ROLLING_RESTART: _QUERY,  # the server restarts batch after batch
    MessageType.LIST_BUNDLE_VERSIONS: _COMMAND,
    MessageType.BUNDLE_VERSIONS: _RELAYED,
    MessageType.ROLLBACK: _QUERY,  # the server switches and restarts, rolling
    MessageType.BUNDLE_SWITCH: _session(_TA),
    MessageType.EXEC_RUN: _QUERY,  # the server fans it out as EXEC_COMMAND
    MessageType.EXEC_COMMAND: _session(_TA),
    MessageType.EXEC_RESULT: _RELAYED,
    MessageType.AGENT_LABELS: _session(_A),  # before its AGENT_STATE (spec_labels.py)
    MessageType.LABEL_SET: _QUERY,  # labels live on the server: agents are never asked
    MessageType.LABEL_UNSET: _QUERY,
    MessageType.LIST_LABELS: _QUERY,
    MessageType.LABEL_LIST: _ANSWER,
}
