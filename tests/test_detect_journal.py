"""
An interrupted `orcahello detect` resumes a long recording where it stopped (issue 29): the scored windows are
journalled in the output folder (`orcahello.window_journal`), a run killed with SIGKILL in the middle of a recording
is run again and gives the files an uninterrupted run gives (the recording JSON's creation time aside), for both
presets; the journalled windows are not scored again; a last line cut short by the kill is dropped; a changed
parameter or recording discards the journal.

The recording is four minutes of the real recordings end to end, scored by the tiny model in batches of four
windows: about sixty batches, so that the kill lands in the middle. One uninterrupted run per preset is the
reference.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import REAL_AUDIO, REPO_ROOT, comparable_output

from orcahello import window_journal, writers

pytestmark = pytest.mark.needs_test_data

BATCH_SIZE = 4
RECORDING_MINUTES = 4
# A score no model gives a window exactly (a float32 value): written into a journal to see whether it is used.
PLANTED_SCORE = 0.015625


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory):
    """The 48-kHz real recordings end to end, repeated to `RECORDING_MINUTES` minutes, as 16-bit PCM."""
    pieces = [
        soundfile.read(path, dtype="int16")[0]
        for path in sorted(REAL_AUDIO.glob("*.wav"))
        if soundfile.info(str(path)).samplerate == 48000 and soundfile.info(str(path)).channels == 1
    ]
    audio = np.concatenate(pieces)
    audio = np.tile(audio, -(-RECORDING_MINUTES * 60 * 48000 // audio.size))[: RECORDING_MINUTES * 60 * 48000]
    folder = tmp_path_factory.mktemp("long_recording")
    soundfile.write(folder / "hydrophone_hour.wav", audio, 48000, subtype="PCM_16")
    return folder / "hydrophone_hour.wav"


@pytest.fixture(scope="module")
def fastai_reference(long_recording, tiny_model_folder, tmp_path_factory):
    """An uninterrupted run's output folder (the model folder's preset, fastai)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    run_to_completion(long_recording, folder, tiny_model_folder)
    return folder


def detect_command(recording, output_dir, model, *options, batch_size=BATCH_SIZE):
    return [sys.executable, "-m", "orcahello.cli", "detect", str(recording), "--output-dir", str(output_dir),
            "--model", str(model), "--batch-size", str(batch_size), "--engine", "torch", *options]  # fmt: skip


def run_to_completion(recording, output_dir, model, *options, batch_size=BATCH_SIZE):
    command = detect_command(recording, output_dir, model, *options, batch_size=batch_size)
    completed = subprocess.run(command, cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=900)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def journals(output_dir):
    return sorted(Path(output_dir).glob(f"{window_journal.JOURNAL_FOLDER}/*.jsonl"))


def journalled_windows(path):
    """How many windows a journal holds (its whole lines after the header)."""
    lines = path.read_bytes().split(b"\n")[1:-1]
    return sum(len(json.loads(line)["scores"]) for line in lines)


def kill_once_journalled(recording, output_dir, model, *options, windows=3 * BATCH_SIZE):
    """Start `detect`, SIGKILL it once its journal holds at least `windows` windows; returns the journal's path."""
    process = subprocess.Popen(detect_command(recording, output_dir, model, *options), cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and process.poll() is None:
            found = journals(output_dir)
            if found and journalled_windows(found[0]) >= windows:
                break
            time.sleep(0.005)
        assert process.poll() is None, "the run ended before its journal held the windows waited for"
        assert time.monotonic() < deadline, "no journal of the recording's windows appeared"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert not list(Path(output_dir).glob("*.orcahello.json")), "killed before the recording's results"
    (journal,) = journals(output_dir)
    return journal


def result_files(folder):
    # The run file records the run's times and its scored/skipped counts: different by design.
    return sorted(
        str(path.relative_to(folder))
        for path in Path(folder).rglob("*")
        if path.is_file() and path.name != writers.RUN_PARAMETERS_JSON
    )


def assert_same_results(folder, reference):
    assert result_files(folder) == result_files(reference)
    for relative in result_files(reference):
        assert comparable_output(folder, relative) == comparable_output(reference, relative), relative
    assert not (Path(folder) / window_journal.JOURNAL_FOLDER).exists(), "the journal goes with the results written"


def plant_first_score(journal):
    """Replace the journal's first window score by `PLANTED_SCORE` (the run that reads it then reports it)."""
    lines = journal.read_text(encoding="utf-8").split("\n")
    batch = json.loads(lines[1])
    batch["scores"][0] = PLANTED_SCORE
    lines[1] = json.dumps(batch, separators=(",", ":"))
    journal.write_text("\n".join(lines), encoding="utf-8")


def first_window_score(output_dir):
    (result,) = Path(output_dir).glob("*.orcahello.json")
    return json.loads(result.read_text(encoding="utf-8"))["windows"][0]["score"]


@pytest.mark.parametrize("preset", ["fastai", "v1"])
def test_a_killed_run_resumes_the_recording_to_the_same_files(
    long_recording, tiny_model_folder, fastai_reference, tmp_path, preset
):
    reference = fastai_reference
    if preset != "fastai":
        reference = tmp_path / "uninterrupted"
        run_to_completion(long_recording, reference, tiny_model_folder, "--preset", preset)
    windows = len(json.loads(next(reference.glob("*.orcahello.json")).read_text())["windows"])
    assert windows > 25 * BATCH_SIZE

    output_dir = tmp_path / "killed"
    journal = kill_once_journalled(long_recording, output_dir, tiny_model_folder, "--preset", preset)
    assert 0 < journalled_windows(journal) < windows
    completed = run_to_completion(long_recording, output_dir, tiny_model_folder, "--preset", preset)
    assert "1 scored" in completed.stdout
    assert_same_results(output_dir, reference)


def test_the_journal_is_kept_up_to_a_last_line_cut_short(long_recording, tiny_model_folder, fastai_reference, tmp_path):
    output_dir = tmp_path / "killed"
    journal = kill_once_journalled(long_recording, output_dir, tiny_model_folder)
    plant_first_score(journal)  # the resumed run reports it: the journalled windows are not scored again
    next_window = journalled_windows(journal)
    with open(journal, "ab") as handle:  # a batch whose write the kill cut short
        handle.write(f'{{"first_window":{next_window},"scores":[0.5,0.2'.encode())

    run_to_completion(long_recording, output_dir, tiny_model_folder)
    assert first_window_score(output_dir) == PLANTED_SCORE
    expected = json.loads(next(fastai_reference.glob("*.orcahello.json")).read_text())["windows"]
    resumed = json.loads(next(output_dir.glob("*.orcahello.json")).read_text())["windows"]
    assert resumed[1:] == expected[1:]  # the cut batch scored again, as every window after it
    assert not journal.exists()


@pytest.mark.parametrize("change", ["parameter", "recording"])
def test_a_change_discards_the_journal(long_recording, tiny_model_folder, fastai_reference, tmp_path, change):
    recording = tmp_path / long_recording.name
    recording.write_bytes(long_recording.read_bytes())
    output_dir = tmp_path / "killed"
    journal = kill_once_journalled(recording, output_dir, tiny_model_folder)
    plant_first_score(journal)
    options = ("--threshold", "0.3") if change == "parameter" else ()
    if change == "recording":  # the same size, other samples: the modification time tells
        audio, rate = soundfile.read(recording, dtype="int16")
        soundfile.write(recording, audio[::-1].copy(), rate, subtype="PCM_16")
        os.utime(recording, ns=(time.time_ns(), time.time_ns() + 10**9))
    run_to_completion(recording, output_dir, tiny_model_folder, *options)
    assert first_window_score(output_dir) != PLANTED_SCORE
    assert not journal.exists() and not journals(output_dir)
    windows = json.loads(next(output_dir.glob("*.orcahello.json")).read_text())["windows"]
    expected = json.loads(next(fastai_reference.glob("*.orcahello.json")).read_text())["windows"]
    if change == "parameter":  # a decision threshold: the same scores, all of them scored again
        assert [window["score"] for window in windows] == [window["score"] for window in expected]
    else:
        assert [window["score"] for window in windows] != [window["score"] for window in expected]


def test_a_resumed_run_warns_of_samples_only_the_killed_run_read(long_recording, tiny_model_folder, tmp_path):
    # The far-out-of-range sample sits in the first batch: the resumed run never reads it again, its journal must
    # carry it (issue 30, F11), or the resumed result would lose the warning an uninterrupted run gives.
    audio, rate = soundfile.read(long_recording, dtype="float32")
    audio[100] = -1e30
    recording = tmp_path / "spiked.wav"
    soundfile.write(recording, audio, rate, subtype="FLOAT")
    output_dir = tmp_path / "killed"
    kill_once_journalled(recording, output_dir, tiny_model_folder)
    run_to_completion(recording, output_dir, tiny_model_folder)
    (result,) = output_dir.glob("*.orcahello.json")
    warnings = json.loads(result.read_text(encoding="utf-8"))["warnings"]
    assert [warning for warning in warnings if "float samples reach 1e+30" in warning]
