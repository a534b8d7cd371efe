"""
What `orcahello detect`'s window journal saves on an interrupted long recording (`orcahello.window_journal`): an
uninterrupted run of one long 48-kHz WAV, then a run killed with SIGKILL once its journal holds `--kill-at` of the
recording's windows, then the same command again, which resumes from the journal. Reports the three wall times, the
windows journalled, and whether the resumed run's files are the uninterrupted run's (the JSON's `created_at` aside).
Before the journal, the run after the kill scored the whole recording again (the uninterrupted run's time).

    python benchmarks/detect_resume.py --model models/standin-resnet50-synthetic-weights --hours 1 \
        --output benchmarks/results_detect_resume_xeon.json
"""

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCHMARKS)
sys.path.insert(0, BENCHMARKS)

from long_recording_memory import write_long_wav  # noqa: E402

JOURNAL_FOLDER = ".journal"  # orcahello.window_journal.JOURNAL_FOLDER (not imported: that would load torch here)


def detect_command(wav_path, output_dir, model, preset, batch_size):
    command = [sys.executable, "-m", "orcahello.cli", "detect", wav_path, "--output-dir", output_dir, "--model", model]
    command += ["--preset", preset, "--format", "json"]
    return command + (["--batch-size", str(batch_size)] if batch_size else [])


def timed_run(command):
    started = time.monotonic()
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(completed.stderr[-3000:])
    return time.monotonic() - started


def journalled_windows(output_dir):
    """Windows in the journal (whole lines after the header), 0 while there is none."""
    found = list(Path(output_dir).glob(f"{JOURNAL_FOLDER}/*.jsonl"))
    if not found:
        return 0
    lines = found[0].read_bytes().split(b"\n")[1:-1]
    return sum(len(json.loads(line)["scores"]) for line in lines)


def killed_run(command, output_dir, windows):
    """Run `command`, SIGKILL it once its journal holds `windows` windows; returns (seconds, windows journalled)."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None and journalled_windows(output_dir) < windows:
            time.sleep(0.05)
        if process.poll() is not None:
            raise SystemExit("the run finished before the kill point")
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    return time.monotonic() - started, journalled_windows(output_dir)


def recording_json(output_dir):
    (path,) = Path(output_dir).glob("*.orcahello.json")
    document = json.loads(path.read_text(encoding="utf-8"))
    document.pop("created_at")
    return document


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model folder")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--preset", default="fastai")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of the windows journalled at the kill")
    parser.add_argument("--output", help="write the figures to this JSON file too")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        wav_path = os.path.join(folder, "hour.wav")
        write_long_wav(wav_path, arguments.hours)
        model = os.path.abspath(arguments.model)
        reference, interrupted = os.path.join(folder, "uninterrupted"), os.path.join(folder, "interrupted")
        uninterrupted_s = timed_run(detect_command(wav_path, reference, model, arguments.preset, arguments.batch_size))
        total_windows = len(recording_json(reference)["windows"])
        command = detect_command(wav_path, interrupted, model, arguments.preset, arguments.batch_size)
        killed_s, journalled = killed_run(command, interrupted, int(arguments.kill_at * total_windows))
        resumed_s = timed_run(command)
        figures = {
            "hours": arguments.hours,
            "preset": arguments.preset,
            "model": os.path.basename(model),
            "batch_size": arguments.batch_size,
            "windows": total_windows,
            "windows_journalled_at_kill": journalled,
            "uninterrupted_s": round(uninterrupted_s, 1),
            "killed_after_s": round(killed_s, 1),
            "resumed_s": round(resumed_s, 1),
            "resumed_over_uninterrupted": round(resumed_s / uninterrupted_s, 3),
            "identical_results": recording_json(interrupted) == recording_json(reference),
            "journal_removed": not os.path.exists(os.path.join(interrupted, JOURNAL_FOLDER)),
            "cpu": platform.processor() or platform.machine(),
            "load_average_at_end": os.getloadavg(),
        }
    print(json.dumps(figures, indent=2))
    if arguments.output:
        with open(arguments.output, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
            handle.write("\n")


if __name__ == "__main__":
    main()
