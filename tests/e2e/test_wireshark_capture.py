"""Real traffic: a scripted session captured on loopback with dumpcap, dissected by tshark.

A real `lotc server`, two agents (IPv4 and IPv6) and console commands (upload,
start, stop, resume, kill, schedule, stats, events, logs, an authentication
failure) run while dumpcap captures loopback; a raw client then sends garbage.
Every TCP payload is fed to the Python FrameDecoder, and for every packet the
LOTC trees tshark shows must equal what the decoder read from the same bytes;
the garbage must come out as expert info, never a Lua error.

`python -m tests.e2e.test_wireshark_capture wireshark/sample.pcapng` records the
same session on the default ports: that is how the sample capture is made.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from protocol.codec import Frame, FrameDecoder, ProtocolError
from protocol.spec import DEFAULT_ADMIN_PORT, DEFAULT_AGENT_PORT, MessageType
from tests.cluster import Cluster, wait_until
from tests.pcap_helpers import TSHARK, TSHARK_MISSING, Sent, keys_below, packets, run_tshark

DUMPCAP = shutil.which("dumpcap")
PY = sys.executable
pytestmark = pytest.mark.skipif(TSHARK is None, reason=TSHARK_MISSING)
needs_capture = pytest.mark.skipif(
    DUMPCAP is None or os.geteuid() != 0,
    reason="capturing loopback needs dumpcap (package tshark) and root")
SAMPLE = Path(__file__).resolve().parents[2] / "wireshark" / "sample.pcapng"
APP = ("import time\n"
       "i = 0\n"
       "while True:\n"
       "    print('tick', i, flush=True)\n"
       "    i += 1\n"
       "    time.sleep(0.2)\n")


@contextmanager
def capturing(path: Path, ports: tuple[int, int]) -> Iterator[None]:
    """dumpcap on loopback for the LOTC ports, from before the block until after it."""
    assert DUMPCAP is not None
    bpf = " or ".join(f"tcp port {port}" for port in ports)
    proc = subprocess.Popen([DUMPCAP, "-q", "-i", "lo", "-f", bpf, "-w", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # dumpcap writes the file header once the filter is attached.
        wait_until(lambda: (path.exists() and path.stat().st_size > 0) or proc.poll() is not None,
                   10, what="dumpcap started")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield
        # dumpcap writes what the kernel buffered every few hundred ms, and SIGINT drops
        # what it has not read yet: stop only once the file has stopped growing.
        sizes = [-1]

        def settled() -> bool:
            sizes.append(path.stat().st_size)
            return sizes[-1] == sizes[-2]

        wait_until(settled, 10, interval=1.0, what="capture file settled")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def send_garbage(port: int) -> None:
    """A client that speaks something else: the server answers ERROR and closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: lotc\r\n\r\n")
        while sock.recv(4096):
            pass


def session(cluster: Cluster, app: Path) -> None:
    cluster.start_server()
    cluster.start_agent("node4", "127.0.0.1")
    cluster.start_agent("node6", "::1")
    cluster.wait_online("node4", "node6")
    # One console connection for the whole script: each console start costs a second.
    cluster.console(f"upload all app {app}; start all app --name web -- {PY} main.py; "
                    "stop node4 web; resume node4 web; kill node6 web; "
                    'schedule node4 web kill cron "0 3 * * *" --tz Europe/Paris --signal TERM; '
                    "schedules; stats node4; logs node4 web -n 3; events -n 5; ps; bundles")
    assert cluster.console("agents", check=False, token="not-a-token").returncode != 0
    send_garbage(cluster.admin_port)


def record(root: Path, out: Path, ports: tuple[int, int] | None = None) -> Cluster:
    """Run the session under dumpcap; returns the (closed) cluster."""
    app = root / "app"
    app.mkdir(parents=True)
    (app / "main.py").write_text(APP)
    cluster = Cluster(root) if ports is None else Cluster(root, *ports)
    try:
        with capturing(out, (cluster.agent_port, cluster.admin_port)):
            session(cluster, app)
            cluster.close()  # inside the capture: the connections' ends are in it too
    finally:
        cluster.close()
    return cluster


def decode_capture(cap: Path) -> tuple[dict[int, list[Sent]], set[int]]:
    """What the Python decoder reads: frame number -> frames it completes; bad packets."""
    fields = ["frame.number", "tcp.stream", "tcp.srcport", "tcp.seq", "tcp.payload"]
    out = run_tshark(cap, ["-Y", "tcp.len > 0", "-T", "fields",
                           *(arg for name in fields for arg in ("-e", name))], lua=False)
    streams: dict[tuple[str, str], Direction] = {}
    frames: dict[int, list[Sent]] = {}
    bad: set[int] = set()
    for line in out.splitlines():
        number, stream, port, seq, payload = line.split("\t")
        direction = streams.setdefault((stream, port), Direction())
        try:
            done = direction.feed(int(seq), bytes.fromhex(payload))
        except ProtocolError:
            bad.add(int(number))
            continue
        if done:
            frames[int(number)] = [Sent(f.body, f.request_id, f.more) for f in done]
    return frames, bad


class Direction:
    """One direction of a TCP stream: drops retransmitted bytes, then decodes."""

    def __init__(self) -> None:
        self.decoder: FrameDecoder | None = FrameDecoder()
        self.next_seq: int | None = None

    def feed(self, seq: int, data: bytes) -> list[Frame]:
        if self.decoder is None:
            return []  # already failed: the peer closes the connection
        if self.next_seq is not None:
            assert seq <= self.next_seq, f"bytes missing from the capture before seq {seq}"
            data = data[self.next_seq - seq:]  # loopback retransmits too, now and then
        self.next_seq = seq + len(data) if self.next_seq is None else self.next_seq + len(data)
        try:
            return self.decoder.feed(data) if data else []
        except ProtocolError:
            self.decoder = None
            raise


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Cluster]:
    root = tmp_path_factory.mktemp("capture")
    cap = root / "session.pcapng"
    return cap, record(root / "cluster", cap)


def check_capture(cap: Path, ports: tuple[int, ...]) -> set[MessageType]:
    """tshark's LOTC trees equal the Python decoder's frames, packet by packet."""
    expected, bad = decode_capture(cap)
    dissected = packets(run_tshark(cap, ["-T", "json"], decode_as=ports))
    for number, layers in dissected.items():
        got = [value for key, value in layers if key == "lotc"]
        if number in bad:
            assert "lotc.expert.bad_magic" in set(keys_below(got[0])), f"frame {number}"
        else:
            assert got == [item.expected() for item in expected.get(number, [])], f"frame {number}"
    assert bad, "the garbage client's bytes were captured"
    return {item.body.TYPE for items in expected.values() for item in items}


SESSION_TYPES = {
    MessageType.HELLO, MessageType.CHALLENGE, MessageType.AUTH, MessageType.WELCOME,
    MessageType.HEARTBEAT, MessageType.BUNDLE_BEGIN, MessageType.BUNDLE_CHUNK,
    MessageType.BUNDLE_END, MessageType.PROC_START, MessageType.PROC_STOP,
    MessageType.PROC_RESUME, MessageType.PROC_KILL, MessageType.SCHEDULE_SET,
    MessageType.STATS_REPORT, MessageType.EVENT, MessageType.ERROR,
}


@needs_capture
def test_every_captured_frame_matches_the_python_decoder(recorded: tuple[Path, Cluster]) -> None:
    cap, cluster = recorded
    seen = check_capture(cap, (cluster.agent_port, cluster.admin_port))
    assert SESSION_TYPES <= seen, SESSION_TYPES - seen


def test_the_sample_capture_matches_the_python_decoder() -> None:
    """wireshark/sample.pcapng: the same session on the default ports, no Decode As."""
    assert SESSION_TYPES <= check_capture(SAMPLE, ())


def main(argv: list[str]) -> int:
    """Record the session on the default ports into argv[0] (wireshark/sample.pcapng)."""
    import tempfile

    out = Path(argv[0]).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        record(Path(tmp), out, (DEFAULT_AGENT_PORT, DEFAULT_ADMIN_PORT))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
