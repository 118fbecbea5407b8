"""bench.run_all's generated block in docs/performance.md (no real benchmark is run)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bench import run_all
from bench.run_all import BEGIN, END, Bench, update_doc

HAND = textwrap.dedent("""\
    # Performance

    Intro paragraph, hand-written.  Trailing spaces kept.  \n\
    Second line of it.

    ## Codec

    ```text
    # not a heading: inside a fence
    ```

    | a | b |
    |---|---|
    | 1 | 2 |

    ## Server

    Hand-written; another engineer edits this.
    """)


def _split(doc: str) -> tuple[str, str, str]:
    """(before the begin marker, between the markers, from the end marker on)."""
    start, stop = doc.index(BEGIN), doc.index(END)
    return doc[:start], doc[start + len(BEGIN):stop], doc[stop:]


def test_insert_when_markers_missing_keeps_hand_text() -> None:
    doc = update_doc(HAND, "## Latest `make bench` run\n\nfigures\n")
    assert doc.count(BEGIN) == doc.count(END) == 1
    before, inner, after = _split(doc)
    assert inner == "\n## Latest `make bench` run\n\nfigures\n"
    # after the title and the intro, before the first section
    assert before.endswith("Second line of it.\n\n")
    assert after.startswith(END + "\n\n## Codec\n")
    # removing what was added gives the original back, byte for byte
    added = BEGIN + inner + END + "\n\n"
    assert doc.replace(added, "", 1) == HAND


def test_replace_between_markers_only() -> None:
    first = update_doc(HAND, "old figures\n")
    second = update_doc(first, "new figures\nmore\n")
    b1, _, a1 = _split(first)
    b2, i2, a2 = _split(second)
    assert (b1, a1) == (b2, a2)
    assert i2 == "\nnew figures\nmore\n"
    # hand edits around the block survive a rewrite
    edited = second.replace("Hand-written; another", "Edited by hand; another")
    third = update_doc(edited, "newest\n")
    assert third == edited.replace("\nnew figures\nmore\n", "\nnewest\n")


def test_idempotent() -> None:
    once = update_doc(HAND, "block\n")
    assert update_doc(once, "block\n") == once
    assert update_doc(update_doc(once, "other\n"), "block\n") == once


def test_marker_placement_edge_cases() -> None:
    assert update_doc("", "x\n") == f"{BEGIN}\nx\n{END}\n"
    assert update_doc("plain text\n", "x\n") == f"{BEGIN}\nx\n{END}\n\nplain text\n"
    assert update_doc("# Title\n", "x\n") == f"# Title\n\n{BEGIN}\nx\n{END}\n"
    assert update_doc("# T\n## A\n", "x\n") == f"# T\n\n{BEGIN}\nx\n{END}\n\n## A\n"
    # markers anywhere in the document are honoured, whatever surrounds them
    odd = f"# T\n\n## A\n\ntext {BEGIN}stale{END} more\n"
    assert update_doc(odd, "x\n") == f"# T\n\n## A\n\ntext {BEGIN}\nx\n{END} more\n"


@pytest.mark.parametrize("bad", [f"{BEGIN}\n", f"{END}\n", f"{END}\n{BEGIN}\n",
                                 f"{BEGIN}\n{END}\n{BEGIN}\n{END}\n"])
def test_malformed_markers_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="markers"):
        update_doc("# T\n\n" + bad, "x\n")


# closing sections as the real benchmarks print them (shortened)
REAL_OUTPUTS = {
    "codec": ["# bench.codec  2026-11-23 15:36 UTC  nproc=2  python 3.11.7",
              ("message                      codec                     round trips/s     MB/s"
               "   bytes  x msgpack  x msgpack"),
              ("heartbeat                    lotc (generated)                797,775     22.3"
               "      28       0.72       0.72")],
    "agent": ["interpreter for managed Python programs: /x/python (Python 3.11.7); 2 CPUs", "",
              "sleep programs (N=30):", "  LOTC is 28.7x faster than supervisord", "",
              "python programs (N=30):", "  LOTC is 15.9x faster than supervisord", "",
              "liveness miss -> restart (3 samples, timeout 0.3 s, Python program):",
              "  restarted process running:       p50 9.1 ms, max 11.4 ms [target <= 100 ms]"],
    "schedule": ["", "Schedules: 2 agents (separate processes) x 2 rounds",
                 "    0     0             1.790        1.807", "",
                 "fire error vs NTP-corrected target     p50   1.871 ms   max   1.955 ms",
                 "", "target < 10 ms: OK; vs systemd timers' default accuracy (60 s): 30,691x"],
    "server_load": ["work dir /tmp/lotc-server-load-t4hyfr05",
                    "  ramp: 602 agents online (workers), 680 (server)",
                    "server_load: 2000 agents, 4 workers, 2026-11-23 15:36 UTC, 2 CPUs",
                    "  server CPU 0.125 cores -> 0.25x the 0.5 core budget [met]"],
    "metrics_scrape": ["machine: 2 cores, load average 4.46 4.09 3.38",
                       "metrics_scrape: 10000 agents x 5 processes (~240000 samples, 16.0 MB)",
                       "  scrape over HTTP: median 253 ms, max 447 ms  [target < 1 s]"],
}
FIRST_FIGURE_LINE = {"codec": 1, "agent": 2, "schedule": 4, "server_load": 2,
                     "metrics_scrape": 0}


@pytest.mark.parametrize("bench", run_all.BENCHES, ids=lambda b: b.name)
def test_real_benches_figure_sections(bench: Bench) -> None:
    lines = REAL_OUTPUTS[bench.name]
    figures, found = run_all.figure_lines(bench, lines)
    assert found
    assert figures == lines[FIRST_FIGURE_LINE[bench.name]:]


def test_figure_lines_fallback_is_the_tail() -> None:
    lines = [f"line {i}" for i in range(100)] + ["", ""]
    figures, found = run_all.figure_lines(Bench("x", 1, figures_from="^nothing"), lines)
    assert not found and figures == lines[-run_all.SUMMARY_LINES:-2]


FAKE = textwrap.dedent("""\
    import sys, time
    mode = sys.argv[1]
    print("warming up")
    if mode == "fail":
        print("Traceback: boom")
        sys.exit(3)
    if mode == "hang":
        print("figures:", flush=True)
        time.sleep(60)
    print()
    print("figures:")
    print("  widgets 1,234/s -> 1.23x the peer  [target >= 1x]")
    print("  latency p99 4.5 ms -> 0.22x the 20 ms target")
    """)


def test_run_all_writes_the_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # `python -m fake_bench` finds it here
    (tmp_path / "fake_bench.py").write_text(FAKE)
    doc = tmp_path / "performance.md"
    doc.write_text(HAND)
    benches = (
        Bench("good", 30, ("full",), ("quick",), figures_from=r"^figures:", module="fake_bench"),
        Bench("bad", 30, ("fail",), ("fail",), figures_from=r"^figures:", module="fake_bench"),
        Bench("slow", 1.5, ("hang",), ("hang",), figures_from=r"^figures:",
              module="fake_bench"),
        Bench("unused", 30, module="fake_bench"),
    )
    monkeypatch.setattr(run_all, "KILL_GRACE_S", 2.0)
    code = run_all.main(["--quick", "--only", "good,bad,slow", "--doc", str(doc)],
                        benches=benches, out_dir=tmp_path / "out")
    assert code == 1  # two failed
    text = doc.read_text()
    before, inner, after = _split(text)
    assert before + after.removeprefix(END + "\n\n") == HAND  # hand text byte for byte
    assert "kept.  \n" in HAND
    assert "## Latest `make bench` run" in inner
    assert "quick run" in inner.lower()
    assert "- machine: " in inner and "load average" in inner and " at start" in inner
    assert "--quick --only good,bad,slow" in inner
    assert "| good | ok |" in inner
    assert "| bad | FAILED (exit 3) |" in inner
    assert "| slow | FAILED (over its 2 s limit: stopped) |" in inner
    assert "unused" not in inner
    good = inner.split("### good: ok, ")[1].split("###")[0]
    assert "```text\nfigures:\n  widgets 1,234/s -> 1.23x the peer  [target >= 1x]\n" \
           "  latency p99 4.5 ms -> 0.22x the 20 ms target\n```" in good
    assert "warming up" not in good
    bad = inner.split("### bad: FAILED (exit 3), ")[1].split("###")[0]
    assert "no figure section recognised" in bad and "Traceback: boom" in bad
    assert (tmp_path / "out" / "summary.md").exists()
    assert (tmp_path / "out" / "good.txt").read_text().startswith("warming up\n")
    assert "latest-run block written" in capsys.readouterr().out

    # a second run rewrites the block only; --no-docs leaves the file alone
    assert run_all.main(["--only", "good", "--doc", str(doc)], benches=benches,
                        out_dir=tmp_path / "out") == 0
    rewritten = doc.read_text()
    b2, i2, a2 = _split(rewritten)
    assert (b2, a2) == (before, after)
    assert "quick run" not in i2.lower() and "| good | ok |" in i2 and "| bad |" not in i2
    assert run_all.main(["--only", "good", "--no-docs", "--doc", str(doc)], benches=benches,
                        out_dir=tmp_path / "out") == 0
    assert doc.read_text() == rewritten
