"""
Progress off a terminal (issue 29): under cron, SLURM or a log file a run writes a line every half minute, with one
ETA for the whole run, in `detect` and `batch`.
"""

import io
import re

import pytest
from conftest import LEGACY

from orcahello import cli, progress
from orcahello.progress import RunProgress, estimated_windows

WAVS = [LEGACY / "audio" / "edge_20k_6s.wav", LEGACY / "audio" / "edge_44k1_6s.wav"]


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_off_a_terminal_a_line_every_interval_with_the_runs_eta():
    stream, clock = io.StringIO(), Clock()
    run = RunProgress("OrcaHello", {"a.wav": 60, "b.wav": 60}, stream=stream, log_interval_s=30, clock=clock)
    clock.now += 10
    run.update(20)
    assert stream.getvalue() == ""  # not yet half a minute
    clock.now += 20
    run.update(10)
    lines = stream.getvalue().splitlines()
    # 30 of 120 windows in 30 s: 1 window/s, 90 s left for the whole run (not for the file at hand).
    assert lines == ["OrcaHello:  25% 30/120 [00:30<01:30,  1.00window/s]"]
    run.set_windows("a.wav", 30)  # the file's real count replaces its estimate: the run's total follows
    clock.now += 30
    run.update(30)
    assert stream.getvalue().splitlines()[-1] == "OrcaHello:  67% 60/90 [01:00<00:30,  1.00window/s]"
    run.close()
    assert len(stream.getvalue().splitlines()) == 3


def test_a_terminal_gets_the_bar_and_no_lines():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    run = RunProgress("OrcaHello", {"a.wav": 10}, stream=stream, log_interval_s=0)
    run.update(5)
    run.close()
    assert "\r" in stream.getvalue() and "\n" not in stream.getvalue().rstrip("\n")


@pytest.mark.needs_test_data
def test_estimates_come_from_the_header():
    assert estimated_windows(str(WAVS[0]), 2.0, 1.0) == 5  # 6 s in 2-s windows a second apart
    assert estimated_windows("https://example.org/x.wav", 2.0, 1.0) == 0


@pytest.mark.needs_test_data
def test_detect_logs_progress_lines_for_the_whole_run(tiny_model_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "LOG_INTERVAL_SECONDS", 0.0)
    arguments = ["detect", *map(str, WAVS), "--model", str(tiny_model_folder), "--output-dir", str(tmp_path / "o")]
    assert cli.main(arguments) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("OrcaHello:")]
    assert lines, "no progress line off a terminal"
    totals = {int(match.group(1)) for line in lines for match in [re.search(r" \d+/(\d+) ", line)] if match}
    # Both 6-s recordings' windows from the first line on: one total, so one ETA, for the run.
    assert totals == {10}, lines
    assert re.search(r" 10/10 ", lines[-1])
