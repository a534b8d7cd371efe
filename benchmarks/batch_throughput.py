"""
Throughput of `orcahello batch` (Ray Data) next to the single-process `orcahello detect`, on the same recordings,
measured from outside both commands in the same way.

    python benchmarks/batch_throughput.py --minutes 8 24 --workers 1 2 --output benchmarks/results_batch_2core.json

The recordings are copies of the fixtures' four one-minute recordings (59 windows each), scored with the ResNet50
fixture learner (converted on the fly; `--model` for another folder). Every command runs in a fresh process into a
fresh output folder, once per workload size. Reported per command:

- `wall_s` per workload: the whole command, start-up included (what a user waits for);
- `marginal_windows_per_s`: the extra windows of the larger workload over the extra seconds it took. Start-up
  (imports, model loading, ONNX export; for `batch` also Ray and its actors) cancels out: this is the rate a long
  job keeps, measured the same way for both commands (the order in which a Ray job finishes recordings says
  little about its rate: it interleaves their blocks);
- `startup_s`: what the smaller workload took beyond its windows at that rate.

`batch` runs on a local Ray instance of `--num-cpus` CPUs (default: the machine's cores) with 1, 2... model actors of
one CPU (one thread) each; `detect` uses its default threads (all cores). The machine's load average is recorded
with each run: other work on the machine slows every figure.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
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
        [sys.executable, "-m", "orcahello.conversion.convert_fastai", "--input", DEFAULT_LEARNER,
         "--output-dir", folder],
        cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return folder


def make_recordings(folder, minutes):
    """`minutes` one-minute WAVs: the fixture minutes in turn, copied under distinct names."""
    os.makedirs(folder, exist_ok=True)
    for index in range(minutes):
        source = MINUTE_RECORDINGS[index % len(MINUTE_RECORDINGS)]
        shutil.copyfile(os.path.join(LEGACY_AUDIO, source), os.path.join(folder, f"minute{index:03d}_{source}"))
    return minutes * WINDOWS_PER_MINUTE


def timed_run(command):
    """Run `command` to completion; its wall time and the load average around it."""
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    if completed.returncode != 0:
        raise SystemExit(f"{command} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return {"wall_s": round(wall, 2), "load_average_before": round(load_before, 2),
            "load_average_after": round(os.getloadavg()[0], 2)}  # fmt: skip


def summarize(runs_by_minutes):
    """The marginal rate between the smallest and the largest workload, and the start-up it implies."""
    small, large = min(runs_by_minutes), max(runs_by_minutes)
    extra_windows = (large - small) * WINDOWS_PER_MINUTE
    extra_seconds = runs_by_minutes[large]["wall_s"] - runs_by_minutes[small]["wall_s"]
    rate = extra_windows / extra_seconds if extra_seconds > 0 else None
    startup = runs_by_minutes[small]["wall_s"] - small * WINDOWS_PER_MINUTE / rate if rate else None
    return {
        "marginal_windows_per_s": round(rate, 2) if rate else None,
        "startup_s": round(startup, 1) if startup is not None else None,
        "runs": {str(minutes): run for minutes, run in sorted(runs_by_minutes.items())},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, nargs=2, default=[8, 24], metavar=("SMALL", "LARGE"),
                        help="the two workloads, in one-minute recordings (default 8 24)")  # fmt: skip
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="batch model actors to try")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of batch's local Ray instance")
    parser.add_argument("--model", default=None, help="model folder (default: the ResNet50 fixture, converted)")
    parser.add_argument("--skip-detect", action="store_true")
    parser.add_argument("--output", default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    if args.minutes[0] >= args.minutes[1]:
        parser.error("--minutes SMALL LARGE: SMALL must be below LARGE")

    work = tempfile.mkdtemp(prefix="orcahello-batch-bench-")
    cli = [sys.executable, "-m", "orcahello.cli"]
    commands = [] if args.skip_detect else [("detect", None)]
    commands += [("batch", workers) for workers in args.workers]
    results = []
    try:
        model = args.model or convert_fixture_learner(os.path.join(work, "resnet50"))
        for minutes in args.minutes:
            make_recordings(os.path.join(work, f"recordings_{minutes}"), minutes)
        for name, workers in commands:
            runs = {}
            for minutes in args.minutes:
                recordings = os.path.join(work, f"recordings_{minutes}")
                output_dir = os.path.join(work, f"{name}_{workers}_{minutes}")
                command = [*cli, name, recordings, "--model", model, "--output-dir", output_dir]
                if name == "detect":
                    command += ["--format", "json"]
                else:
                    command += ["--num-workers", str(workers)]
                    command += ["--num-cpus", str(args.num_cpus)] if args.num_cpus else []
                runs[minutes] = timed_run(command)
                if name == "batch":
                    with open(os.path.join(output_dir, "orcahello_batch_run.json")) as handle:
                        run = json.load(handle)
                    runs[minutes]["cluster_cpus"] = run["cluster"]["cpus"]
                    runs[minutes]["job_timing"] = run["timing"]
                progress = {"command": name, "workers": workers, "minutes": minutes, **runs[minutes]}
                print(json.dumps(progress), flush=True)
            summary = {"command": name, "workers": workers, **summarize(runs)}
            if workers and summary["marginal_windows_per_s"]:
                summary["marginal_windows_per_s_per_worker"] = round(summary["marginal_windows_per_s"] / workers, 2)
            results.append(summary)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    document = {
        "workloads_minutes": args.minutes,
        "windows_per_minute": WINDOWS_PER_MINUTE,
        "model": "ResNet50 fixture learner" if not args.model else args.model,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "results": results,
    }
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
