"""
Faults lose nothing for `orcahello detect` (issue 19): killed with SIGKILL at several points and run again, it leaves
the same result files as an uninterrupted run (no half-written or temporary file left); two runs into one output
folder at once: the second is refused with a message naming the first; a killed run's lock is taken over.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LEGACY, REPO_ROOT, comparable_output

from orcahello import run_lock, writers

RECORDINGS = ("edge_20k_6s.wav", "edge_44k1_6s.wav", "edge_stereo_48k_6s.wav", "edge_10s_48k.wav",
              "rec03_boat_only.wav", "edge_float32_48k_6s.wav")  # fmt: skip


def detect_command(recordings, output_dir, model):
    return [sys.executable, "-m", "orcahello.cli", "detect", str(recordings), "--output-dir", str(output_dir),
            "--model", str(model), "--threshold", "0.3"]  # fmt: skip


def run_to_completion(recordings, output_dir, model):
    completed = subprocess.run(detect_command(recordings, output_dir, model), cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=600)  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    return completed


def files_under(folder):
    return sorted(str(path.relative_to(folder)) for path in Path(folder).rglob("*") if path.is_file())


def kill_when(process, output_dir, ready):
    """SIGKILL `process` as soon as `ready(files under output_dir)` holds (polled every 5 ms)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if ready(files_under(output_dir) if Path(output_dir).exists() else []):
            break
        time.sleep(0.005)
    assert process.poll() is None, "the run finished before the kill point"
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fault_recordings")
    for name in RECORDINGS:
        shutil.copyfile(LEGACY / "audio" / name, folder / name)
    return folder


@pytest.mark.needs_test_data
def test_killed_runs_resume_to_the_same_files(recordings, tiny_model_folder, tmp_path):
    reference = tmp_path / "uninterrupted"
    run_to_completion(recordings, reference, tiny_model_folder)
    expected = files_under(reference)
    assert len([name for name in expected if name.endswith(".orcahello.json")]) == len(RECORDINGS)

    output_dir = tmp_path / "killed"
    json_count = lambda files: sum(name.endswith(".orcahello.json") for name in files)  # noqa: E731
    kill_points = (
        lambda files: os.path.exists(output_dir / run_lock.LOCK_FILE_NAME),  # started: nothing scored yet
        lambda files: json_count(files) >= 1,  # in the middle of the recordings
        lambda files: any(name.endswith(".orcahello.csv") for name in files) and json_count(files) >= 3,
        lambda files: json_count(files) >= len(RECORDINGS),  # every recording done, the summary not yet
    )
    for ready in kill_points:
        process = subprocess.Popen(detect_command(recordings, output_dir, tiny_model_folder), cwd=REPO_ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        kill_when(process, output_dir, ready)
    # What a run killed while writing leaves (its partial files, hidden unique names), and a user's files that look
    # alike (one with the partial suffix but not one of detect's outputs).
    (output_dir / f".edge_10s_48k.orcahello.csv.k1ll3d00{writers.PARTIAL_SUFFIX}").write_text(
        "wav_filename\nhalf a row"
    )
    (output_dir / "notes.txt.tmp1234").write_text("the user's own")
    (output_dir / f".notes.txt.abcdefgh{writers.PARTIAL_SUFFIX}").write_text("the user's own too")
    assert (output_dir / run_lock.LOCK_FILE_NAME).exists()  # the last killed run's, never released

    completed = run_to_completion(recordings, output_dir, tiny_model_folder)
    assert "skipped (already scored" in completed.stdout
    (output_dir / "notes.txt.tmp1234").unlink()  # only the dead run's partial outputs were cleaned up
    (output_dir / f".notes.txt.abcdefgh{writers.PARTIAL_SUFFIX}").unlink()
    assert files_under(output_dir) == expected
    for relative in expected:
        if relative == writers.RUN_PARAMETERS_JSON:
            continue  # its times, elapsed seconds and scored/skipped counts differ by design
        assert comparable_output(output_dir, relative) == comparable_output(reference, relative), relative


@pytest.mark.needs_test_data
def test_a_second_run_into_the_same_folder_is_refused(recordings, tiny_model_folder, tmp_path):
    output_dir = tmp_path / "shared"
    first = subprocess.Popen(detect_command(recordings, output_dir, tiny_model_folder), cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (output_dir / run_lock.LOCK_FILE_NAME).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        second = subprocess.run(detect_command(recordings, output_dir, tiny_model_folder), cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert second.returncode == 2
        assert f"is in use by another run (orcahello detect, pid {first.pid}, since " in second.stderr
        assert first.wait(timeout=600) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert not (output_dir / run_lock.LOCK_FILE_NAME).exists()  # released at the end


def test_lock_is_exclusive_and_taken_over_from_a_killed_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from orcahello.run_lock import OutputFolderLock; "
         "lock = OutputFolderLock(sys.argv[1], 'holder').acquire(); print('held', flush=True); time.sleep(600)",
         str(tmp_path)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(run_lock.OutputFolderBusy, match=f"is in use by another run \\(holder, pid {holder.pid}"):
            run_lock.OutputFolderLock(tmp_path, "second").acquire()
    finally:
        holder.kill()
        holder.wait()
    with run_lock.OutputFolderLock(tmp_path, "after the kill") as lock:
        assert lock.stale_holder["pid"] == holder.pid and lock.stale_holder["command"] == "holder"
    assert not (tmp_path / run_lock.LOCK_FILE_NAME).exists()
    with run_lock.OutputFolderLock(tmp_path, "after a clean release") as lock:
        assert lock.stale_holder is None
