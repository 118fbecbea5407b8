"""Log files: rotation by the agent, timestamps, tail across rotations, follow, restarts."""
# ruff: noqa: F811  (pytest fixtures imported from tests.agent_helpers, then used as arguments)
from __future__ import annotations

import os
import signal
from pathlib import Path

import trio

from lotc.agent.logs import (
    FILE_MODE,
    LogConfig,
    LogFollower,
    LogWriter,
    rotate,
    split_timestamp,
    tail,
)
from lotc.agent.supervisor import ProcessSpec
from protocol.enums import ProcessState as S
from protocol.enums import RestartPolicy, StreamKind
from tests.agent_helpers import (  # noqa
    PY,
    Harness,
    alive,
    bundle,
    kill_leftovers,
    make_supervisor,
    proc_state,
    sup,
    wait_until,
)


def _write(path: Path, *lines: str) -> None:
    with open(path, "a") as f:
        f.writelines(line + "\n" for line in lines)


def test_rotation_shifts_copies(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    for round_ in range(4):
        _write(log, f"round {round_}")
        rotate(log, backups=2)
    _write(log, "live")
    assert log.read_text() == "live\n"
    assert (tmp_path / "stdout.log.1").read_text() == "round 3\n"
    assert (tmp_path / "stdout.log.2").read_text() == "round 2\n"
    assert not (tmp_path / "stdout.log.3").exists()
    assert tail(log, 3, backups=2) == ["round 2", "round 3", "live"]
    assert tail(log, 0, backups=2) == []
    assert tail(tmp_path / "missing.log", 5, backups=2) == []


def test_a_line_finished_across_reads_does_not_rotate_a_file_with_room(tmp_path: Path) -> None:
    """A pipe read that ends mid-line: the rest of the line and what fits after it stay."""
    log = tmp_path / "out.log"
    writer = LogWriter(log, LogConfig(max_bytes=200, backups=2), lambda: 0)
    writer.write(b"a" * 10 + b"\n" + b"b" * 5)  # 28-byte stamps: 39 + 33 bytes, mid-line
    writer.write(b"b" * 5 + b"\n" + b"c" * 10 + b"\n" + b"d" * 100 + b"\n")  # d no longer fits
    writer.close()
    assert [split_timestamp(line)[1] for line in log.read_text().splitlines()] == ["d" * 100]
    assert [split_timestamp(line)[1] for line in (tmp_path / "out.log.1").read_text()
            .splitlines()] == ["a" * 10, "b" * 10, "c" * 10]  # not rotated after the b line


def test_writer_rotates_at_line_boundaries_stamps_once_and_keeps_one_mode(
        tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    clock = iter(range(1_800_000_000_000_000, 1_900_000_000_000_000, 1_000_000))
    writer = LogWriter(log, LogConfig(max_bytes=100, backups=2), lambda: next(clock))
    writer.write(b"one\ntw")  # a line in pieces is stamped once, at its start
    writer.write(b"o\n")
    writer.write(b"x" * 30 + b"\n" + b"y" * 30 + b"\n")  # the second line no longer fits
    writer.close()
    files = [tmp_path / "out.log.2", tmp_path / "out.log.1", log]
    assert [[split_timestamp(line) for line in f.read_text().splitlines()] for f in files] == [
        [("2027-01-15T08:00:00.000000Z", "one"), ("2027-01-15T08:00:00.000000Z", "two")],
        [("2027-01-15T08:00:02.000000Z", "x" * 30)], [("2027-01-15T08:00:02.000000Z", "y" * 30)]]
    assert all(f.stat().st_size <= 100 for f in files)
    reopened = LogWriter(log, LogConfig(max_bytes=100, backups=2))
    reopened.write(b"partial")  # an agent restart in the middle of a line...
    reopened.close()
    reopened = LogWriter(log, LogConfig(max_bytes=1000, backups=2))
    reopened.write(b" rest\n")  # ... continues it without a second stamp
    reopened.close()
    assert split_timestamp(log.read_text().splitlines()[-1])[1] == "partial rest"
    modes = {(tmp_path / name).stat().st_mode & 0o777 for name in ("out.log", "out.log.1", "out.log.2")}
    assert modes == {FILE_MODE}
    assert split_timestamp("no stamp here") == ("", "no stamp here")


def test_writer_with_no_backups_empties_the_file(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    writer = LogWriter(log, LogConfig(max_bytes=40, backups=0))
    writer.write(b"a" * 20 + b"\n")
    writer.write(b"b" * 20 + b"\n")
    writer.close()
    assert [split_timestamp(line)[1] for line in log.read_text().splitlines()] == ["b" * 20]
    assert not (tmp_path / "x.log.1").exists()


def test_tail_of_long_files_and_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    _write(log, *(f"line {i}" for i in range(50_000)))
    with open(log, "a") as f:
        f.write("no newline yet")
    assert tail(log, 3, backups=0) == ["line 49998", "line 49999", "no newline yet"]
    assert len(tail(log, 20_000, backups=0)) == 20_000


def test_follower_sees_new_lines_across_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "f.log"
    _write(log, "old")
    follower = LogFollower(log)
    assert follower.poll() == []
    _write(log, "one", "two")
    with open(log, "a") as f:
        f.write("thr")
    assert follower.poll() == ["one", "two"]
    with open(log, "a") as f:
        f.write("ee\n")
    rotate(log, backups=1)
    _write(log, "four")
    assert follower.poll() == ["three", "four"]


async def test_process_output_is_tailed_and_followed(sup: Harness) -> None:
    argv = sup.program("talk.py", """
        import sys, time
        print("hello out", flush=True)
        print("hello err", file=sys.stderr, flush=True)
        for line in sys.stdin:  # stdin is /dev/null: no lines
            pass
        n = 0
        while True:
            n += 1
            print(f"tick {n}", flush=True)
            time.sleep(0.02)
    """)
    await sup.sup.start(ProcessSpec("talk", "b", argv))
    await wait_until(lambda: (sup.state_dir / "logs/talk/stderr.log").read_text())
    assert (await sup.sup.tail_logs("talk", 100))[0] == "hello out"
    assert await sup.sup.tail_logs("talk", 5, StreamKind.STDERR) == ["hello err"]
    seen: list[str] = []
    with trio.fail_after(5):
        async for stream, lines in sup.sup.follow_logs("talk"):
            assert stream == StreamKind.STDOUT
            seen += lines
            if len(seen) >= 5:
                break
    numbers = [int(line.split()[1]) for line in seen]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


async def test_chatty_process_logs_rotate_and_the_loop_stays_responsive(
        tmp_path: Path, bundle: Path) -> None:
    (bundle / "chatty.py").write_text(
        "import sys\nline = 'x' * 99 + '\\n'\nwhile True:\n    sys.stdout.write(line)\n")
    config = LogConfig(max_bytes=200_000, backups=2)
    sup = make_supervisor(tmp_path / "state", bundle, [], logs=config)
    worst = 0.0
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        try:
            await sup.start(ProcessSpec("chatty", "b", [PY, "chatty.py"],
                                        restart=RestartPolicy.NEVER))
            logs = tmp_path / "state/logs/chatty"
            for _ in range(100):  # ~1 s of ticks, measuring how late the loop wakes us
                before = trio.current_time()
                await trio.sleep(0.01)
                worst = max(worst, trio.current_time() - before - 0.01)
            await wait_until(lambda: (logs / "stdout.log.2").exists())
            assert not (logs / "stdout.log.3").exists()
            assert all(line == "x" * 99 for line in (await sup.tail_logs("chatty", 50))[:-1])
            assert sup.get("chatty").state == S.RUNNING
        finally:
            with trio.CancelScope(shield=True):
                await sup.terminate_all(grace=1)
            kill_leftovers(sup)
            nursery.cancel_scope.cancel()
    assert worst < 0.1, f"the trio loop was blocked for {worst * 1e3:.0f} ms"


BURST = """
import os, sys
count, width = int(sys.argv[1]), int(sys.argv[2])
block = []
for n in range(count):
    block.append(b"%08d " % n + b"z" * (width - 10) + b"\\n")
    if len(block) == 64 or n == count - 1:
        os.write(1, b"".join(block))
        block = []
"""


def _numbers(logs: Path, keep: int) -> list[int]:
    """The line numbers found in the live file and its copies, oldest first."""
    found: list[int] = []
    for n in range(keep, -1, -1):
        path = logs / ("stdout.log" if n == 0 else f"stdout.log.{n}")
        if path.exists():
            found += [int(split_timestamp(line)[1].split()[0])
                      for line in path.read_text().splitlines()]
    return found


async def test_a_50_mb_burst_rotates_within_size_and_loses_no_line(
        tmp_path: Path, bundle: Path) -> None:
    """Issue 14 item 10: with 10 MB x 5 a 50 MB burst made stdout.log.1 24-38 MB and lost
    lines. Now every file stays within its size plus one line and every line is there."""
    (bundle / "burst.py").write_text(BURST)
    count, width, size = 50_000, 1000, 10 * 1024 * 1024
    sup = make_supervisor(tmp_path / "state", bundle, [])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        try:
            await sup.start(ProcessSpec("burst", "b", [PY, "burst.py", str(count), str(width)],
                                        restart=RestartPolicy.NEVER, log_size=size, log_keep=5))
            await sup.wait_state("burst", [S.EXITED], timeout=60)
        finally:
            with trio.CancelScope(shield=True):
                await sup.terminate_all(grace=1)
            kill_leftovers(sup)
            nursery.cancel_scope.cancel()
    logs = tmp_path / "state/logs/burst"
    assert _numbers(logs, 5) == list(range(count))
    files = sorted(logs.glob("stdout.log*"))
    assert len(files) == 5 and all(f.stat().st_size <= size + width + 28 for f in files)
    assert {f.stat().st_mode & 0o777 for f in files} == {FILE_MODE}


async def test_output_waits_through_an_agent_restart_and_nothing_is_lost(
        tmp_path: Path, bundle: Path) -> None:
    """The pipes outlive the agent: a process writing all the time neither dies (SIGPIPE)
    nor loses a line while no agent reads; its writes wait, then flow into the same files."""
    (bundle / "counter.py").write_text(
        "import os\nn = 0\nwhile True:\n    os.write(1, b'%d\\n' % n)\n    n += 1\n")
    state, config = tmp_path / "state", LogConfig(max_bytes=1_000_000, backups=50)
    first = make_supervisor(state, bundle, [], logs=config)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        pid = (await first.start(ProcessSpec("counter", "b", [PY, "counter.py"]))).pid
        await wait_until(lambda: (state / "logs/counter/stdout.log.1").exists())
        nursery.cancel_scope.cancel()  # the agent crashes; the counter keeps writing
    logs = state / "logs/counter"
    try:
        await wait_until(lambda: proc_state(pid) == "S")  # its pipe filled: it waits
        second = make_supervisor(state, bundle, [], logs=config)
        async with trio.open_nursery() as nursery:
            await nursery.start(second.run)
            try:
                assert second.get("counter").pid == pid
                before = len(_numbers(logs, 50))
                await wait_until(lambda: len(_numbers(logs, 50)) > before + 100_000)
            finally:
                with trio.CancelScope(shield=True):
                    await second.terminate_all(grace=1)
                kill_leftovers(second)
                nursery.cancel_scope.cancel()
    finally:
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
    numbers = _numbers(logs, 50)
    assert numbers == list(range(len(numbers)))


async def test_removing_a_process_removes_its_logs(sup: Harness) -> None:
    await sup.sup.start(ProcessSpec("gone", "b", ["/bin/echo", "bye"],
                                    restart=RestartPolicy.NEVER))
    await sup.sup.wait_state("gone", [S.EXITED], timeout=5)
    assert await sup.sup.tail_logs("gone", 5) == ["bye"]
    assert (await sup.sup.tail_logs("gone", 5, timestamps=True))[0].endswith("Z bye")
    await sup.sup.remove("gone")
    assert not (sup.state_dir / "logs/gone").exists()
