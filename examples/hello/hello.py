"""The demo's sample program: a line a second, and a liveness beat with each.

    python3 hello.py                   runs until stopped
    python3 hello.py --crash-after 5   exits with code 1 after 5 s (watch the restarts)
    python3 hello.py --hang-after 5    stops beating after 5 s: started with
                                       --liveness, it is restarted when it misses its deadline

The beat is `lotc.liveness.beat()` when lotc is importable, else the same
sd_notify datagram sent by hand: the agent may run a `python3` without lotc.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time


def _send_beat() -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False  # run by hand: nobody is listening
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"WATCHDOG=1", address)
    return True


try:
    from lotc.liveness import beat
except ImportError:
    beat = _send_beat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crash-after", type=float, metavar="SECONDS")
    parser.add_argument("--hang-after", type=float, metavar="SECONDS")
    args = parser.parse_args()
    started = time.monotonic()
    tick = 0
    while True:
        elapsed = time.monotonic() - started
        if args.crash_after is not None and elapsed >= args.crash_after:
            print(f"crashing on purpose after {elapsed:.0f} s", file=sys.stderr, flush=True)
            return 1
        if args.hang_after is None or elapsed < args.hang_after:
            beat()
        print(f"hello from pid {os.getpid()}, tick {tick}", flush=True)
        tick += 1
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
