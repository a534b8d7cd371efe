"""
Throughput of `orcahello batch` (Ray Data) next to the single-process `orcahello detect`, on the same recordings,
measured from outside both commands in the same way.

    python benchmarks/batch_throughput.py --minutes 16 --workers 1 2 --output benchmarks/results_batch_2core.json

The recordings are copies of the fixtures' four one-minute recordings (59 windows each), scored with the ResNet50
fixture learner (converted on the fly; `--model` for another folder). Each command runs in a fresh process, into a
fresh output folder. A watcher thread notes when each recording's JSON appears, which gives for every run:

- `wall_s`: the whole command, start-up included (what a user waits for);
- `startup_s`: until the first recording is finished (imports, model loading, ONNX export; for `batch` also Ray's
  start and its actors');
- `steady_windows_per_s`: windows finished between the first and the last recording, per second between them:
  the rate the job keeps on a long run.

`batch` runs on a local Ray instance of `--num-cpus` CPUs (default: the machine's cores) with 1, 2... model actors of
one CPU each; `detect` uses its default threads (all cores). The machine's load average is recorded with each run:
other work on the machine slows every figure.
"""

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO_ROOT), "shared")
LEGACY_AUDIO = os.path.join(SHARED, "fixtures", "legacy", "audio")
MINUTE_RECORDINGS = ("rec01_calls_quiet_bg.wav", "rec02_calls_mixed_snr_bouts.wav", "rec03_boat_only.wav",
                     "rec06_faint_calls.wav")  # fmt: skip
WINDOWS_PER_MINUTE = 59
DEFAULT_LEARNER = os.path.join(SHARED, "fixtures", "legacy", "model_resnet50_legacy_format", "model.pkl")


def convert_fixture_learner(folder):
    subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "conversion", "convert_fastai.py"), "--input", DEFAULT_LEARNER,
         "--output-dir", folder],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return folder


def make_recordings(folder, minutes):
    """`minutes` one-minute WAVs: the fixture minutes in turn, copied under distinct names."""
    os.makedirs(folder, exist_ok=True)
    for index in range(minutes):
        source = MINUTE_RECORDINGS[index % len(MINUTE_RECORDINGS)]
        shutil.copyfile(os.path.join(LEGACY_AUDIO, source), os.path.join(folder, f"minute{index:03d}_{source}"))
    return minutes * WINDOWS_PER_MINUTE


def timed_run(command, json_pattern, expected_files):
    """Run `command`; return its wall time and the times (from its start) at which each JSON appeared."""
    seen, stop = {}, threading.Event()
    started = time.monotonic()

    def watch():
        while not stop.is_set():
            for path in glob.glob(json_pattern, recursive=True):
                seen.setdefault(path, time.monotonic() - started)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    load_before = os.getloadavg()[0]
    watcher.start()
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    stop.set()
    watcher.join()
    for path in glob.glob(json_pattern, recursive=True):
        seen.setdefault(path, wall)
    if completed.returncode != 0 or len(seen) != expected_files:
        raise SystemExit(f"{command} failed ({completed.returncode}, {len(seen)} JSONs):\n{completed.stderr[-3000:]}")
    finished = sorted(seen.values())
    steady_seconds = finished[-1] - finished[0]
    steady_windows = (len(finished) - 1) * WINDOWS_PER_MINUTE
    return {
        "wall_s": round(wall, 2),
        "startup_s": round(finished[0], 2),
        "steady_windows_per_s": round(steady_windows / steady_seconds, 2) if steady_seconds > 0 else None,
        "end_to_end_windows_per_s": round(len(finished) * WINDOWS_PER_MINUTE / wall, 2),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=16, help="one-minute recordings to score (default 16)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="batch model actors to try")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of batch's local Ray instance")
    parser.add_argument("--model", default=None, help="model folder (default: the ResNet50 fixture, converted)")
    parser.add_argument("--skip-detect", action="store_true")
    parser.add_argument("--output", default=None, help="write the figures here as JSON")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="orcahello-batch-bench-")
    try:
        model = args.model or convert_fixture_learner(os.path.join(work, "resnet50"))
        recordings = os.path.join(work, "recordings")
        windows = make_recordings(recordings, args.minutes)
        cli = [sys.executable, "-m", "orcahello.cli"]
        runs = []
        if not args.skip_detect:
            output_dir = os.path.join(work, "detect")
            figures = timed_run(
                [*cli, "detect", recordings, "--model", model, "--output-dir", output_dir, "--format", "json"],
                os.path.join(output_dir, "*.orcahello.json"), args.minutes,
            )  # fmt: skip
            runs.append({"command": "detect", "workers": None, **figures})
            print(json.dumps(runs[-1]), flush=True)
        for workers in args.workers:
            output_dir = os.path.join(work, f"batch_{workers}")
            command = [*cli, "batch", recordings, "--model", model, "--output-dir", output_dir,
                       "--num-workers", str(workers)]  # fmt: skip
            if args.num_cpus:
                command += ["--num-cpus", str(args.num_cpus)]
            figures = timed_run(command, os.path.join(output_dir, "json", "**", "*.orcahello.json"), args.minutes)
            with open(os.path.join(output_dir, "orcahello_batch_run.json")) as handle:
                run = json.load(handle)
            figures["job_timing"] = run["timing"]
            if figures["steady_windows_per_s"]:
                figures["steady_windows_per_s_per_worker"] = round(figures["steady_windows_per_s"] / workers, 2)
            runs.append({"command": "batch", "workers": workers, "cluster_cpus": run["cluster"]["cpus"], **figures})
            print(json.dumps(runs[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results = {
        "recordings": args.minutes,
        "windows": windows,
        "model": "ResNet50 fixture learner" if not args.model else args.model,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "runs": runs,
    }
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(results, handle, indent=2)
            handle.write("\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
