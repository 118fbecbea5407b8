"""A hostile client against a real server, while a real agent and a console carry on.

The server (serve_server on 127.0.0.1 and ::1, port 0) and one agent (serve_agent) run
in this trio run, with the real TCP stack between them. A hostile client then opens
connection after connection to both ports and sends garbage, oversize headers, frames of
the wrong type for its role (before and after authenticating), truncated frames, or
nothing at all, and then over 10,000 random and mutated frames. Throughout, a console
asks `agents` and `ps` and must get answers with the agent online.

What must hold for every hostile connection: the server closes it within its deadline,
with an ERROR frame of the right code where one is due, and logs it once; no server task
fails; the server never holds more hostile connections than the test has open, and none
once the test has closed them.
"""
from __future__ import annotations

import inspect
import logging
import random
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import trio

from admin_console.client import AdminClient
from lotc.net.address import Address
from lotc.net.auth import compute_mac, token_key
from lotc.net.refusals import MAX_LOGIN_DELAY_S
from protocol import contract, messages
from protocol.codec import EncodeError, Frame, FrameDecoder, encode
from protocol.enums import EventKind, Role
from protocol.errors import ErrorCode, ProtocolError
from protocol.message_types import Leg, Phase
from protocol.messages import (
    MESSAGE_CLASSES,
    AgentList,
    Auth,
    BundleBegin,
    Challenge,
    Error,
    Event,
    Hello,
    ListAgents,
    ListProcesses,
    Message,
    ProcStart,
    QueryEvents,
    Welcome,
)
from protocol.spec import HEADER_SIZE, MAGIC, VERSION, MessageType
from tests.server_helpers import InProcessCluster, in_process_cluster

pytestmark = pytest.mark.timeout(90)
HANDSHAKE_S = 1.0  # the server's handshake_timeout_s in these tests
PROMPT_S = 2.0  # a refused connection is closed within this (plus the handshake time if silent)
# 64 fuzz connections at once beside the server and the agent; a failed login may be slowed
FUZZ_LIMIT_S = HANDSHAKE_S + 2 * PROMPT_S + MAX_LOGIN_DELAY_S
FUZZ_FRAMES = 10_000
FUZZ_CONCURRENCY = 64
FUZZ_BUDGET_S = 45.0  # a guard against a hang; it takes 5-15 s
CONSOLE_TIMEOUT_S = 5.0  # each console request of the watcher; they take milliseconds
SERVER_LOGGERS = ("lotc.server", "lotc.net")


# ------------------------------------------------------------------ one hostile connection


@dataclass
class Outcome:
    peer: str  # the client's address as the server names it in logs
    frames: list[Frame]
    closed_after: float
    reset: bool = False  # closed with RST rather than FIN
    undecodable: bool = False  # the server's bytes did not decode (they always should)

    @property
    def errors(self) -> list[Error]:
        return [f.body for f in self.frames if isinstance(f.body, Error)]


Script = Callable[[trio.SocketStream], Awaitable[None]]


async def hostile(address: Address, script: Script, limit: float) -> Outcome:
    """Connect, run `script`, then read until the server closes; fail if it takes > `limit`."""
    stream = await trio.open_tcp_stream(address.host, address.port)
    try:
        host, port = stream.socket.getsockname()[:2]
        peer = str(Address(host, port))
        start = trio.current_time()
        received = bytearray()
        reset = False
        try:
            await script(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            reset = True  # the server hung up while we were still sending
        with trio.move_on_after(limit) as scope:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    reset = True
                    break
                if not data:
                    break
                received += data
        assert not scope.cancelled_caught, (
            f"the server kept {peer} open for more than {limit} s after {script.__name__}")
        outcome = Outcome(peer, [], trio.current_time() - start, reset)
        try:
            outcome.frames = FrameDecoder().feed(bytes(received))
        except ProtocolError:
            outcome.undecodable = True
        return outcome
    finally:
        await trio.aclose_forcefully(stream)


def sends(*chunks: bytes, eof: bool = False) -> Script:
    async def script(stream: trio.SocketStream) -> None:
        for chunk in chunks:
            await stream.send_all(chunk)
        if eof:
            await stream.send_eof()

    shown = b"".join(chunks)[:80].hex()
    script.__name__ = f"sends({len(chunks)} chunks{', eof' if eof else ''}: {shown})"
    return script


def header(message_type: int, length: int, request_id: int = 1) -> bytes:
    return struct.pack(">2sBBHII", MAGIC, VERSION, message_type, 0, request_id, length)


def authenticated(name: str, token: str, then: list[bytes]) -> Script:
    """Do the admin handshake properly, then send `then`."""

    async def script(stream: trio.SocketStream) -> None:
        await stream.send_all(encode(Hello(role=Role.ADMIN, name=name), 1))
        decoder = FrameDecoder()
        frames: list[Frame] = []
        while not frames:
            frames = decoder.feed(await stream.receive_some(65536))
        challenge = frames[0].body
        assert isinstance(challenge, Challenge), challenge
        mac = compute_mac(token_key(token), challenge.nonce, Role.ADMIN, name)
        await stream.send_all(encode(Auth(mac=mac), 2))
        frames = []
        while not frames:
            frames = decoder.feed(await stream.receive_some(65536))
        assert isinstance(frames[0].body, Welcome), frames[0].body
        for chunk in then:
            await stream.send_all(chunk)

    script.__name__ = f"authenticated({name}, then {len(then)} frames)"
    return script


# ------------------------------------------------------------------ the legitimate side


@dataclass
class Watch:
    rounds: int = 0
    worst_s: float = 0.0
    failures: list[str] = field(default_factory=list)


async def watch_console(client: AdminClient, agent: str, watch: Watch) -> None:
    """`agents` and `ps`, over and over: each must answer promptly, with the agent online."""
    while True:
        start = trio.current_time()
        try:
            frames = await client.request(ListAgents(pattern=""), timeout=CONSOLE_TIMEOUT_S)
            online = {a.name: a.online for f in frames if isinstance(f.body, AgentList)
                      for a in f.body.agents}
            if not online.get(agent):
                watch.failures.append(f"agents shows {agent} offline at round {watch.rounds}")
            await client.request(ListProcesses(pattern=""), timeout=CONSOLE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - recorded, asserted on at the end
            watch.failures.append(f"round {watch.rounds}: {type(exc).__name__}: {exc}")
        watch.rounds += 1
        watch.worst_s = max(watch.worst_s, trio.current_time() - start)
        await trio.sleep(0.05)  # pacing between rounds


def server_side_connections(ports: set[int]) -> int:
    """Accepted (not listening) TCP sockets of the server's ports held by this process."""
    return sum(1 for c in psutil.Process().net_connections(kind="tcp")
               if c.laddr and c.laddr.port in ports and c.raddr)


@dataclass
class SocketWatch:
    samples: list[int] = field(default_factory=list)


async def watch_sockets(ports: set[int], watch: SocketWatch) -> None:
    while True:
        watch.samples.append(await trio.to_thread.run_sync(server_side_connections, ports))
        await trio.sleep(0.1)


async def wait_online(client: AdminClient, agent: str) -> None:
    with trio.fail_after(10):
        while True:
            frames = await client.request(ListAgents(pattern=agent))
            if any(a.online for f in frames for a in f.body.agents):
                return
            await trio.sleep(0.02)


# ------------------------------------------------------------------ the fuzz corpus


def corpus() -> list[bytes]:
    """One encoded frame of every message type (defaults, plus a few with content)."""
    frames = []
    for _, cls in inspect.getmembers(messages, inspect.isclass):
        if issubclass(cls, Message) and cls is not Message:
            try:
                frames.append(encode(cls(), 1))
            except EncodeError:
                pass  # needs a fixed-size field: made below
    frames += [
        encode(Hello(role=Role.AGENT, name="web-1", software="lotc", addresses=("10.0.0.1",)), 1),
        encode(Hello(role=Role.ADMIN, name="alice", capabilities=("x",)), 1),
        encode(Auth(mac=bytes(range(32))), 2),
        encode(Challenge(nonce=bytes(32)), 1),
        encode(BundleBegin(target="all", name="b", size=10, sha256=bytes(32)), 3),
        encode(ProcStart(target="all", name="p", bundle="b", argv=("sh", "-c", "x")), 4),
        encode(Event(seq=1, agent="web-1", message="hi"), 0),
    ]
    return frames


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    op = rng.randrange(7)
    if op == 0:  # flip a few bits anywhere
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # cut it short
        del data[rng.randrange(1, len(data)):]
    elif op == 2:  # lie about the body length
        data[10:14] = struct.pack(">I", rng.choice(
            [0, 1, len(data) - HEADER_SIZE + rng.randint(1, 64), rng.getrandbits(32)]))
    elif op == 3:  # another message type
        data[3] = rng.randrange(256)
    elif op == 4:  # junk after it
        data += rng.randbytes(rng.randint(1, 64))
    elif op == 5:  # body bytes replaced
        for i in range(HEADER_SIZE, len(data)):
            if rng.random() < 0.3:
                data[i] = rng.randrange(256)
    else:  # a bad magic or version
        data[rng.choice([0, 1, 2])] = rng.randrange(256)
    return bytes(data)


def fuzz_frame(rng: random.Random, frames: list[bytes]) -> bytes:
    roll = rng.random()
    if roll < 0.15:
        return rng.randbytes(rng.randint(1, 300))
    if roll < 0.25:
        return header(rng.randrange(256), rng.getrandbits(32))
    if roll < 0.35:
        return rng.choice(frames)  # valid, but not what the server expects now
    return mutate(rng, rng.choice(frames))


def fuzz_connection(rng: random.Random, frames: list[bytes],
                    hello_agent: bytes, hello_admin: bytes) -> tuple[list[bytes], bool, int]:
    """(frames to send, whether to half-close after, on which port kind: 0 agent, 1 admin)."""
    kind = rng.randrange(2)
    sent = [fuzz_frame(rng, frames) for _ in range(rng.randint(1, 8))]
    if rng.random() < 0.3:  # get past HELLO, so AUTH and later steps are fuzzed too
        sent.insert(0, hello_agent if kind == 0 else hello_admin)
        if rng.random() < 0.5:  # and a wrong AUTH: reaching that stage must not need luck
            sent.insert(1, encode(Auth(mac=rng.randbytes(32)), 2))
    return sent, rng.random() < 0.8, kind


# ------------------------------------------------------------------ the test


def closing_warnings(records: list[logging.LogRecord]) -> Counter[str]:
    counts: Counter[str] = Counter()  # WARNING+ records of the server, by the peer they name
    for record in records:
        if record.levelno >= logging.WARNING and record.name.startswith(SERVER_LOGGERS):
            message = record.getMessage()
            for word in message.replace(",", " ").split():
                if word.startswith(("127.0.0.1:", "[::1]:")):
                    counts[word.rstrip(":")] += 1
                    break
    return counts


async def test_hostile_clients_are_cut_off_and_nobody_else_notices(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with in_process_cluster(
        tmp_path, agents=("web-1",), admins=("alice", "mallory"), handshake_timeout_s=HANDSHAKE_S,
    ) as cluster, AdminClient.connect(
        cluster.admin_address(6), token=cluster.tokens["alice"], name="alice",
    ) as console:
        await wait_online(console, "web-1")
        legit = await trio.to_thread.run_sync(server_side_connections, cluster.ports)
        assert legit == 2  # the agent's and the console's
        watch, sockets = Watch(), SocketWatch()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_console, console, "web-1", watch)
            nursery.start_soon(watch_sockets, cluster.ports, sockets)
            started = trio.current_time()
            outcomes = await refused_one_by_one(cluster)
            # (A later connection may get the same client port: count each phase's own lines.)
            scenario_records = list(caplog.records)
            scenario_s = trio.current_time() - started
            fuzz = await fuzz_both_ports(cluster)
            fuzz_records = caplog.records[len(scenario_records):]
            fuzz_s = trio.current_time() - started - scenario_s
            nursery.cancel_scope.cancel()
        print(f"one by one: {len(outcomes)} connections in {scenario_s:.1f} s; fuzz: "
              f"{fuzz.frames_sent} frames over {len(fuzz.outcomes)} connections in {fuzz_s:.1f} s;"
              f" slowest close {max(o.closed_after for o in fuzz.outcomes):.2f} s;"
              f" console: {watch.rounds} rounds, worst {watch.worst_s * 1000:.0f} ms")

        # ---- every hostile connection was logged once, naming its peer
        warned = closing_warnings(scenario_records)
        reused = {p for p, n in Counter(o.peer for o in outcomes.values()).items() if n > 1}
        for what, outcome in outcomes.items():
            if outcome.peer in reused:  # the kernel gave two connections one client port
                continue
            assert warned[outcome.peer] == 1, (what, outcome.peer, [
                r.getMessage() for r in scenario_records if outcome.peer in r.getMessage()])
        warned = closing_warnings(fuzz_records)
        repeated_ports = {p for p, n in Counter(o.peer for o in fuzz.outcomes).items() if n > 1}
        for outcome in fuzz.outcomes:  # failed logins: logged once a window (refusals.py)
            if outcome.peer not in repeated_ports and not any(  # reused port: 2 connections
                    e.code == ErrorCode.AUTH_FAILED for e in outcome.errors):
                assert warned[outcome.peer] <= 1, outcome.peer
                assert warned[outcome.peer] == len(outcome.errors), outcome

        # ---- no server task failed, nothing logged as a bug
        bugs = [r for r in caplog.records if r.levelno >= logging.ERROR
                and r.name.startswith(SERVER_LOGGERS)]
        assert bugs == [], [r.getMessage() for r in bugs]

        # ---- the legitimate side never noticed
        assert watch.failures == []
        assert watch.rounds >= 10 and watch.worst_s < CONSOLE_TIMEOUT_S
        frames = await console.request(QueryEvents(pattern="web-1", limit=1000))
        kinds = [f.body.kind for f in frames if isinstance(f.body, Event)]
        assert kinds.count(EventKind.AGENT_ONLINE) == 1 and EventKind.AGENT_OFFLINE not in kinds

        # ---- no leak: bounded while it ran, none left after
        assert max(sockets.samples) <= legit + FUZZ_CONCURRENCY, max(sockets.samples)
        with trio.fail_after(PROMPT_S):
            while await trio.to_thread.run_sync(server_side_connections, cluster.ports) != legit:
                await trio.sleep(0.02)


async def refused_one_by_one(cluster: InProcessCluster) -> dict[str, Outcome]:
    """Each kind of hostility on its own connection, on both ports and both families."""
    agent4, agent6 = cluster.agent_address(4), cluster.agent_address(6)
    admin4, admin6 = cluster.admin_address(4), cluster.admin_address(6)
    mallory = cluster.tokens["mallory"]
    event = encode(Event(seq=1, agent="web-1", kind=EventKind.AGENT_OFFLINE), 0)
    cases: dict[str, tuple[Address, Script, float, ErrorCode | None]] = {
        "garbage on agent port": (
            agent4, sends(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), PROMPT_S, ErrorCode.BAD_MAGIC),
        "garbage on admin port": (
            admin6, sends(bytes(range(256))), PROMPT_S, ErrorCode.BAD_MAGIC),
        "bad version": (
            agent6, sends(b"LT\x09" + bytes(11)), PROMPT_S, ErrorCode.UNSUPPORTED_VERSION),
        "unknown type": (
            admin4, sends(header(250, 0)), PROMPT_S, ErrorCode.UNKNOWN_MESSAGE_TYPE),
        "oversize header on agent port": (
            agent4, sends(header(MessageType.HELLO, 0xFFFFFFFF)), PROMPT_S,
            ErrorCode.OVERSIZE_FRAME),
        "oversize header on admin port": (
            admin6, sends(header(MessageType.BUNDLE_CHUNK, cluster.config.max_body + 1)),
            PROMPT_S, ErrorCode.OVERSIZE_FRAME),
        "malformed hello": (
            agent6, sends(header(MessageType.HELLO, 3) + b"\x01\xff\xff"), PROMPT_S,
            ErrorCode.MALFORMED_BODY),
        "PROC_START on agent port before auth": (
            agent4, sends(encode(ProcStart(target="all", name="p", bundle="b", argv=("x",)), 1)),
            PROMPT_S, ErrorCode.UNEXPECTED_MESSAGE),
        "agent HELLO on admin port": (
            admin4, sends(encode(Hello(role=Role.AGENT, name="web-1"), 1)), PROMPT_S,
            ErrorCode.NOT_ALLOWED),
        "wrong MAC": (
            agent6, sends(encode(Hello(role=Role.AGENT, name="web-1"), 1),
                          encode(Auth(mac=bytes(32)), 2)), PROMPT_S, ErrorCode.AUTH_FAILED),
        "EVENT on admin port after auth": (
            admin4, authenticated("mallory", mallory, [event]), PROMPT_S,
            ErrorCode.UNEXPECTED_MESSAGE),
        "WELCOME on admin port after auth": (
            admin6, authenticated("mallory", mallory, [encode(Welcome(), 5)]), PROMPT_S,
            ErrorCode.UNEXPECTED_MESSAGE),
        "truncated frame then silence": (
            agent4, sends(encode(Hello(role=Role.AGENT, name="web-1"), 1)[:-4]),
            HANDSHAKE_S + PROMPT_S, ErrorCode.TIMEOUT),
        "header then silence": (
            admin6, sends(header(MessageType.HELLO, 100)), HANDSHAKE_S + PROMPT_S,
            ErrorCode.TIMEOUT),
        "hello then silence": (
            agent6, sends(encode(Hello(role=Role.AGENT, name="web-1"), 1)),
            HANDSHAKE_S + PROMPT_S, ErrorCode.TIMEOUT),
        "nothing at all (agent port)": (
            agent4, sends(), HANDSHAKE_S + PROMPT_S, ErrorCode.TIMEOUT),
        "nothing at all (admin port)": (
            admin6, sends(), HANDSHAKE_S + PROMPT_S, ErrorCode.TIMEOUT),
    }
    outcomes: dict[str, Outcome] = {}

    async def one(what: str) -> None:
        address, script, limit, _ = cases[what]
        outcomes[what] = await hostile(address, script, limit)

    async with trio.open_nursery() as nursery:  # all at once: they must not hold each other up
        for what in cases:
            nursery.start_soon(one, what)
    for what, (_, _, _, code) in cases.items():
        outcome = outcomes[what]
        assert not outcome.undecodable, what
        assert [e.code for e in outcome.errors] == [code], (what, outcome)
        assert outcome.frames[-1].body == outcome.errors[0], what  # the ERROR is the last word
    return outcomes


@dataclass
class FuzzReport:
    outcomes: list[Outcome] = field(default_factory=list)
    frames_sent: int = 0


async def fuzz_both_ports(cluster: InProcessCluster) -> FuzzReport:
    rng = random.Random(20261123)
    frames = corpus()
    hello_agent = encode(Hello(role=Role.AGENT, name="web-1"), 1)
    hello_admin = encode(Hello(role=Role.ADMIN, name="alice"), 1)
    report = FuzzReport()
    limiter = trio.CapacityLimiter(FUZZ_CONCURRENCY)
    plans = []
    while report.frames_sent < FUZZ_FRAMES:
        sent, eof, kind = fuzz_connection(rng, frames, hello_agent, hello_admin)
        family = rng.choice((4, 6))
        address = cluster.agent_address(family) if kind == 0 else cluster.admin_address(family)
        plans.append((address, sends(b"".join(sent), eof=eof)))
        report.frames_sent += len(sent)
    # And some authenticated consoles sending what consoles may not send, mutated inside.
    forbidden = [f for f in frames if _type_of(f) not in ALLOWED_FROM_CONSOLES]
    for _ in range(100):
        frame = bytearray(rng.choice(forbidden))
        for i in range(HEADER_SIZE, len(frame)):
            if rng.random() < 0.2:
                frame[i] = rng.randrange(256)
        address = cluster.admin_address(rng.choice((4, 6)))
        plans.append((address, authenticated("mallory", cluster.tokens["mallory"],
                                             [bytes(frame)])))
        report.frames_sent += 1

    async def one(address: Address, script: Script) -> None:
        async with limiter:
            report.outcomes.append(await hostile(address, script, FUZZ_LIMIT_S))

    with trio.fail_after(FUZZ_BUDGET_S):
        async with trio.open_nursery() as nursery:
            for address, script in plans:
                nursery.start_soon(one, address, script)
    assert report.frames_sent >= FUZZ_FRAMES and len(report.outcomes) == len(plans)
    codes = Counter(e.code for o in report.outcomes for e in o.errors)
    assert ErrorCode.INTERNAL not in codes, codes
    assert all(not o.undecodable for o in report.outcomes)
    assert all(len(o.errors) <= 1 for o in report.outcomes)
    # The fuzz reached every stage: framing, handshake, auth, and after auth.
    for code in (ErrorCode.BAD_MAGIC, ErrorCode.OVERSIZE_FRAME, ErrorCode.MALFORMED_BODY,
                 ErrorCode.UNEXPECTED_MESSAGE, ErrorCode.AUTH_FAILED, ErrorCode.TIMEOUT):
        assert codes[code] > 0, (code, codes)
    return report


ALLOWED_FROM_CONSOLES = {MESSAGE_CLASSES[t] for t in
                         contract.allowed(Leg.ADMIN_TO_SERVER, Phase.AUTHENTICATED)}


def _type_of(frame: bytes) -> type:
    return MESSAGE_CLASSES[MessageType(frame[3])]
