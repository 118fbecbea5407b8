"""Log files: copytruncate rotation, tail across rotations, follow, a chatty process."""
# ruff: noqa: F811  (pytest fixtures imported from tests.agent_helpers, then used as arguments)
from __future__ import annotations

from pathlib import Path

import trio

from lotc.agent.logs import LogConfig, LogFollower, rotate, rotate_if_needed, tail
from lotc.agent.supervisor import ProcessSpec
from protocol.enums import ProcessState as S
from protocol.enums import RestartPolicy, StreamKind
from tests.agent_helpers import (  # noqa
    PY,
    Harness,
    bundle,
    kill_leftovers,
    make_supervisor,
    sup,
    wait_until,
)


def _write(path: Path, *lines: str) -> None:
    with open(path, "a") as f:
        f.writelines(line + "\n" for line in lines)


def test_rotation_shifts_copies_and_keeps_the_inode(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    with open(log, "a") as writer:  # like the process: one O_APPEND descriptor forever
        for round_ in range(4):
            writer.write(f"round {round_}\n")
            writer.flush()
            rotate(log, backups=2)
        writer.write("live\n")
    assert log.read_text() == "live\n"
    assert (tmp_path / "stdout.log.1").read_text() == "round 3\n"
    assert (tmp_path / "stdout.log.2").read_text() == "round 2\n"
    assert not (tmp_path / "stdout.log.3").exists()
    assert tail(log, 3, backups=2) == ["round 2", "round 3", "live"]
    assert tail(log, 0, backups=2) == []
    assert tail(tmp_path / "missing.log", 5, backups=2) == []


def test_rotate_if_needed_and_zero_backups(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    _write(log, "a" * 50)
    assert not rotate_if_needed(log, LogConfig(max_bytes=100))
    assert rotate_if_needed(log, LogConfig(max_bytes=10, backups=0))
    assert log.read_text() == "" and not (tmp_path / "x.log.1").exists()


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
    config = LogConfig(max_bytes=200_000, backups=2, check_interval=0.05)
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
