"""
What re-scoring an archive costs: audio hours per CPU hour of `orcahello batch`, and of `orcahello detect` with each
engine and precision, over hours of HLS made from the real recordings and served over HTTP as an Orcasound bucket.

    python benchmarks/archive_cost.py --streams 3 --stream-minutes 20 --rounds 2 \
        --output benchmarks/results_archive_cost.json

`--streams` playlists of `--stream-minutes` each, in the archive's layout (`<node>/hls/<unix time>/live.m3u8`,
10-second AAC segments in MPEG-TS, as a node encodes them: `tests/conftest.make_orcanode_hls`), grown from the real
recordings of the test data (`benchmarks/live_soak.long_recording`), are served by a local HTTP server process on
127.0.0.1 (its CPU is the bucket's, reported apart, not the job's). Each contender scores every playlist by URL, in a
fresh process into a fresh output folder:

- `batch`: `orcahello batch` (Ray Data on a local instance of this machine's cores; one model actor per core, the
  default OpenVINO engine in float32: batch has no engine or precision option, and the fast mode's float32
  decisions need a whole file, which batch's block-by-block actors never hold);
- `detect-openvino`, `detect-torch`: `orcahello detect --engine ...` in float32 (all cores);
- `detect-bfloat16`, `detect-int8`: `orcahello detect --precision ...`, the exact fast mode (OpenVINO; int8 with the
  model's int8 file made first by `orcahello quantize`, calibrated on the real recordings, not timed), on CPUs that
  have the instructions;
- `decode`: fetch and decode only (batch's own `open_source`, every sample read), for the stages' split.

The CPU of a contender is the user + system time of its whole process tree, Ray's services and workers included,
taken two ways, each of which can only miss some: `getrusage(RUSAGE_CHILDREN)` (this process is the tree's child
subreaper, Linux `PR_SET_CHILD_SUBREAPER`, so orphans are reaped here and counted; but Ray's raylet reaps its
workers without waiting for them, and their CPU never reaches a parent's count), and the tree sampled every quarter
second with psutil (each process's own CPU at its last sample: what it spent in its last quarter second is missed).
The larger is reported (for `detect`, one process, the two agree). The samples also put each process's CPU down to
what it was running, by its title (Ray names a worker by its task): for `batch`, the split between the featurizing
tasks (fetch, decode and featurize), the model actors (score), the driver, and Ray's services and workers' start-up.
Start-up (imports, the model, ONNX export, Ray) is in every figure, as a user pays it.

Rounds alternate the contenders' order; figures are medians over rounds, and each contender's ratio to the reference
(`batch`, the default) is taken within each round. The load average is recorded with each run. Every contender's
file decisions are checked against `detect-openvino`'s with the same weights (the fast modes' must be equal by
construction).
"""

import argparse
import ctypes
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
sys.path.insert(0, str(REPO_ROOT))

from conftest import REAL_AUDIO, make_orcanode_hls  # noqa: E402
from live_helpers import free_port  # noqa: E402
from live_soak import cpu_model, long_recording  # noqa: E402

DEFAULT_MODEL = REPO_ROOT / "models" / "standin-resnet50-synthetic-weights"
FIRST_EPOCH = 1600000000
PR_SET_CHILD_SUBREAPER = 36
SAMPLE_SECONDS = 0.25
CONTENDERS = {
    "batch": ["batch"],
    "detect-openvino": ["detect", "--engine", "openvino", "--format", "json"],
    "detect-torch": ["detect", "--engine", "torch", "--format", "json"],
    "detect-bfloat16": ["detect", "--engine", "openvino", "--precision", "bfloat16", "--format", "json"],
    "detect-int8": ["detect", "--engine", "openvino", "--precision", "int8", "--format", "json"],
}
# With `--adapted-model`, the same on a head adapted from labels (`orcahello adapt`): confident weights.
ADAPTED = "-adapted"
CONTENDERS.update({f"{name}{ADAPTED}": CONTENDERS[name] for name in ("detect-openvino", "detect-int8")})
REFERENCE = "batch"
# What each process of the tree was doing, by its title (Ray's workers are named after their task), first match.
STAGES = (
    ("score (model actors)", re.compile(r"WindowScorer")),
    ("fetch, decode, featurize (tasks)", re.compile(r"featurize_partitions")),
    ("probe", re.compile(r"probe_source")),
    ("fetch, decode (alone)", re.compile(r"open_source")),
    ("driver", re.compile(r"orcahello\.cli")),
    ("Ray idle workers", re.compile(r"ray::IDLE")),
    ("Ray services", re.compile(r"raylet|gcs_server|dashboard|Agent|log_monitor|monitor\.py|runtime_env|ray/_private")),
)
# Fetch and decode every sample as batch's featurizing tasks do; prints the CPU of that alone (the first playlist
# opened once before, untimed: the decoders' imports are start-up).
DECODE_SCRIPT = """
import json, sys, time
from orcahello.batch.sources import open_source
open_source(sys.argv[1]).close()
started = time.process_time()
for url in sys.argv[1:]:
    recording = open_source(url)
    step = recording.sampling_rate * 600
    for start in range(0, recording.num_samples, step):
        recording.read(start, min(start + step, recording.num_samples))
    recording.close()
print(json.dumps({"decode_cpu_s": time.process_time() - started}))
"""


def make_bucket(bucket, streams, stream_minutes, node_prefix="rpi_archive"):
    """`streams` Orcasound playlists of `stream_minutes` each under `bucket`; their paths relative to it."""
    names = sorted(path.name for path in REAL_AUDIO.glob("*.wav"))
    playlists = []
    for index in range(streams):
        folder = bucket / f"{node_prefix}_{index}" / "hls" / str(FIRST_EPOCH + index * 86400)
        if not (folder / "live.m3u8").exists():
            order = names[index:] + names[:index]  # each stream its own order of the recordings
            scratch = bucket.parent / f"{node_prefix}_{index}.wav"
            long_recording(order, stream_minutes, scratch)
            make_orcanode_hls(scratch, folder)
            for leftover in scratch.parent.glob(f"{node_prefix}_{index}*"):
                leftover.unlink()
        playlists.append((folder / "live.m3u8").relative_to(bucket).as_posix())
    return playlists


def playlist_seconds(bucket, playlists):
    """The audio in `playlists` (paths relative to `bucket`), from their segments' `#EXTINF` durations."""
    return sum(
        float(line.split(":", 1)[1].split(",", 1)[0])
        for playlist in playlists
        for line in (bucket / playlist).read_text().splitlines()
        if line.startswith("#EXTINF:")
    )


def int8_model_copy(model, copy):
    """`copy`: a copy of `model` with its int8 model for the default preset (`orcahello quantize`, calibrated on the
    real recordings), made unless there."""
    from orcahello.quantize import QuantizeOptions, quantize_model_folder

    if not copy.exists():
        staging = copy.with_name(copy.name + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(model, staging)
        calibration = tuple(str(path) for path in sorted(REAL_AUDIO.glob("*.wav")))
        quantize_model_folder(QuantizeOptions(model=str(staging), calibration=calibration, presets=("fastai",)))
        staging.rename(copy)
    return copy


def reap_orphans(keep, timeout=60.0):
    """Wait for every child of this process but `keep` (orphans of a finished tree re-parented here)."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        children = [child for child in psutil.Process().children() if child.pid not in keep]
        if not children:
            return 0
        for child in children:
            try:
                os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if time.monotonic() > deadline:
            return len(children)
        time.sleep(0.2)


def stage_of(title):
    for stage, pattern in STAGES:
        if pattern.search(title):
            return stage
    return "other"


def measured_run(command, keep, environment):
    """
    Run `command` to the end of its whole process tree: wall seconds, CPU seconds (RUSAGE_CHILDREN), the CPU put
    down to each stage (psutil samples), the load average around it.
    """
    import psutil

    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    last = {}  # pid -> (CPU seconds, stage) at its last sample
    by_stage = {}
    other_titles = set()  # what "other" was, to name it
    stop = threading.Event()

    def sample():
        while True:
            try:
                root = psutil.Process(process.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                tree = []
            tree += [child for child in psutil.Process().children(recursive=True) if child.pid not in keep]
            for member in {member.pid: member for member in tree}.values():
                try:
                    times = member.cpu_times()
                    title = " ".join(member.cmdline()) or member.name()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                cpu = times.user + times.system
                previous_cpu, previous_stage = last.get(member.pid, (0.0, None))
                # The interval's CPU goes to what the process was running at its start (a worker turns IDLE after).
                stage = previous_stage or stage_of(title)
                by_stage[stage] = by_stage.get(stage, 0.0) + cpu - previous_cpu
                last[member.pid] = (cpu, stage_of(title))
                if stage_of(title) == "other":
                    other_titles.add(title[:80])
            if stop.wait(SAMPLE_SECONDS):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    wall = time.monotonic() - started
    lingering = reap_orphans(keep)
    stop.set()
    sampler.join()
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed ({process.returncode}):\n{output[-3000:]}")
    rusage_cpu = (usage_after.ru_utime - usage_before.ru_utime) + (usage_after.ru_stime - usage_before.ru_stime)
    sampled_cpu = sum(value for value in by_stage.values())
    own = [json.loads(line) for line in output.splitlines() if line.startswith("{") and "decode_cpu_s" in line]
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(max(rusage_cpu, sampled_cpu), 1),
        "cpu_s_rusage": round(rusage_cpu, 1),
        "cpu_s_sampled": round(sampled_cpu, 1),
        **({"decode_cpu_s": round(own[0]["decode_cpu_s"], 1)} if own else {}),
        "cpu_s_by_stage_sampled": {stage: round(value, 1) for stage, value in sorted(by_stage.items())},
        "other_process_titles": sorted(other_titles),
        "processes_seen": len(last),
        "processes_left_unreaped": lingering,
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def file_decisions(output_dir):
    """Each recording's file decision (`global_prediction`) from the JSONs a detect or batch run wrote."""
    decisions = {}
    for path in sorted(Path(output_dir).rglob("*.json")):
        document = json.loads(path.read_text())
        if isinstance(document, dict) and "global_prediction" in document:
            key = "/".join(part for part in path.parts if part.isdigit() and len(part) == 10)
            decisions[key] = document["global_prediction"]
    return decisions


def median_of(runs, key):
    return statistics.median(run[key] for run in runs)


def summarize(runs, small_runs, decisions, audio_hours, small_minutes):
    """Per contender: medians over rounds, ratios to the reference within rounds, the steady rate, the stages."""
    results = {}
    for name, name_runs in runs.items():
        if not name_runs:
            continue
        summary = {
            "audio_hours_per_cpu_hour": round(median_of(name_runs, "audio_hours_per_cpu_hour"), 2),
            "cpu_s": median_of(name_runs, "cpu_s"),
            "wall_s": median_of(name_runs, "wall_s"),
            "cpu_s_per_audio_minute": round(median_of(name_runs, "cpu_s") / (audio_hours * 60), 3),
        }
        # Within each round, then the median: the reference ran beside it under the same load.
        reference_cpu = {run["round"]: run["cpu_s"] for run in runs.get(REFERENCE, [])}
        ratios = [reference_cpu[run["round"]] / run["cpu_s"] for run in name_runs if run["round"] in reference_cpu]
        if name != REFERENCE and ratios:
            summary[f"audio_per_cpu_vs_{REFERENCE}"] = round(statistics.median(ratios), 3)
        # Against float32's with the same weights (the OpenVINO engine's).
        same_weights = "detect-openvino" + (ADAPTED if name.endswith(ADAPTED) else "")
        if same_weights in decisions and name in decisions:
            equal = sum(decisions[name].get(key) == value for key, value in decisions[same_weights].items())
            summary[f"file_decisions_equal_to_{same_weights}"] = f"{equal}/{len(decisions[same_weights])}"
        stages = {stage for run in name_runs for stage in run["cpu_s_by_stage_sampled"]}
        if len(stages) > 1:  # batch's process tree
            summary["cpu_s_per_audio_minute_by_stage"] = {
                stage: round(
                    statistics.median(run["cpu_s_by_stage_sampled"].get(stage, 0.0) for run in name_runs)
                    / (audio_hours * 60),
                    3,
                )
                for stage in sorted(stages)
            }
        if name in small_runs:
            # The steady rate: the start-up, paid by both runs, cancels out of their difference.
            extra_cpu = summary["cpu_s"] - small_runs[name]["cpu_s"]
            extra_hours = audio_hours - small_minutes / 60
            summary["steady_audio_hours_per_cpu_hour"] = round(extra_hours * 3600 / extra_cpu, 2)
            summary["start_up_cpu_s"] = round(
                small_runs[name]["cpu_s"] - small_minutes * extra_cpu / (extra_hours * 60), 1
            )
            summary["small_run"] = small_runs[name]
        if name == "decode":
            summary["decode_cpu_s_per_audio_minute"] = round(
                median_of(name_runs, "decode_cpu_s") / (audio_hours * 60), 3
            )
        summary["runs"] = name_runs
        results[name] = summary
    steady_reference = results.get(REFERENCE, {}).get("steady_audio_hours_per_cpu_hour")
    for name, summary in results.items():
        if steady_reference and name != REFERENCE and "steady_audio_hours_per_cpu_hour" in summary:
            summary[f"steady_vs_{REFERENCE}"] = round(summary["steady_audio_hours_per_cpu_hour"] / steady_reference, 3)
    return results


def write_document(document, runs, small_runs, decisions, options):
    """The figures so far into `document` and, atomically, `--output`: a run cut short keeps what it measured."""
    document["results"] = summarize(
        runs, small_runs, decisions, document["audio_hours_per_run"], document["small_run_audio_minutes"]
    )
    if options.output:
        partial = Path(options.output).with_suffix(".partial")
        partial.write_text(json.dumps(document, indent=2) + "\n")
        os.replace(partial, options.output)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=3, help="playlists (default 3)")
    parser.add_argument("--stream-minutes", type=float, default=20.0, help="audio per playlist (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every contender, order alternating")
    parser.add_argument("--small-minutes", type=float, default=0.0,
                        help="also score one playlist this long once per contender, before the rounds: the start-up "
                        "cancels out of the difference, which gives the steady rate (default 0: not run)")  # fmt: skip
    parser.add_argument("--contenders", nargs="+", choices=[*CONTENDERS, "decode"], default=[*CONTENDERS, "decode"])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="model folder (default: the stand-in)")
    parser.add_argument("--adapted-model", help="a folder made by `orcahello adapt`: the *-adapted contenders")
    parser.add_argument("--small-contenders", nargs="+", default=["batch", "detect-openvino"],
                        help="the contenders --small-minutes runs (default: batch detect-openvino)")  # fmt: skip
    parser.add_argument("--work-dir", help="where the bucket and outputs go (default: a temporary folder, kept)")
    parser.add_argument("--output", default=None, help="write the figures here as JSON")
    parser.add_argument("--prepare-only", action="store_true", help="make the bucket and the int8 model, then stop")
    options = parser.parse_args()

    from engines_orcahello import cpu_has_int8_instructions, cpu_has_native_bfloat16

    work = Path(options.work_dir or tempfile.mkdtemp(prefix="orcahello-archive-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"working in {work}", flush=True)
    contenders = list(options.contenders)
    refused = {}
    if "detect-bfloat16" in contenders and not cpu_has_native_bfloat16():
        refused["detect-bfloat16"] = "no native bfloat16 on this CPU"
    for name in contenders:
        if "int8" in name and not cpu_has_int8_instructions():
            refused[name] = "no int8 dot products on this CPU"
    contenders = [name for name in contenders if name not in refused]
    bucket = work / "bucket"
    playlists = make_bucket(bucket, options.streams, options.stream_minutes)
    small_playlists = make_bucket(bucket, 1, options.small_minutes, "rpi_small") if options.small_minutes else []
    segment_bytes = sum(path.stat().st_size for path in bucket.glob("rpi_archive_*/**/*.ts"))
    audio_hours = playlist_seconds(bucket, playlists) / 3600  # what was encoded, a partial last segment included
    if not options.adapted_model:
        contenders = [name for name in contenders if not name.endswith(ADAPTED)]
    models = {name: options.adapted_model if name.endswith(ADAPTED) else options.model for name in contenders}
    quantize_s = {}
    for name in contenders:
        if "int8" in name:
            started = time.monotonic()
            models[name] = str(int8_model_copy(models[name], work / f"int8_{Path(models[name]).name}"))
            quantize_s[name] = round(time.monotonic() - started, 1)
    if options.prepare_only:
        return
    document = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "model": Path(options.model).name,
        "adapted_model": options.adapted_model and Path(options.adapted_model).name,
        "streams": options.streams,
        "stream_minutes": options.stream_minutes,
        "audio_hours_per_run": audio_hours,
        "small_run_audio_minutes": playlist_seconds(bucket, small_playlists) / 60,
        "segment_megabytes_per_audio_hour": round(segment_bytes / 1e6 / audio_hours, 1),
        "rounds": options.rounds,
        "reference": REFERENCE,
        "refused": refused,
        "int8_quantize_s": quantize_s,
    }

    import psutil

    server_port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(server_port), "--bind", "127.0.0.1", "--directory", str(bucket)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    urls = [f"http://127.0.0.1:{server_port}/{playlist}" for playlist in playlists]
    small_urls = [f"http://127.0.0.1:{server_port}/{playlist}" for playlist in small_playlists]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    runs = {name: [] for name in contenders}
    small_runs = {}
    decisions = {}

    def score(name, sources, tag):
        """One contender over `sources`: its measured run, and its file decisions (None for `decode`)."""
        if name == "decode":
            return measured_run([sys.executable, "-c", DECODE_SCRIPT, *sources], {server.pid}, environment), None
        output_dir = work / f"out_{name}_{tag}"
        shutil.rmtree(output_dir, ignore_errors=True)
        command = [sys.executable, "-m", "orcahello.cli", *CONTENDERS[name], *sources]
        run = measured_run(
            command + ["--model", models[name], "--output-dir", str(output_dir)], {server.pid}, environment
        )
        found = file_decisions(output_dir)
        shutil.rmtree(output_dir, ignore_errors=True)
        return run, found

    try:
        # First, so that a run cut short still has the start-up's cost.
        for name in [name for name in options.small_contenders if name in contenders] if small_urls else []:
            small_runs[name], _ = score(name, small_urls, "small")
            print(json.dumps({"contender": name, "small": True, **small_runs[name]}), flush=True)
        for round_number in range(options.rounds):
            order = contenders if round_number % 2 == 0 else contenders[::-1]
            for name in order:
                run, found = score(name, urls, round_number)
                run["round"] = round_number
                run["audio_hours_per_cpu_hour"] = round(audio_hours * 3600 / run["cpu_s"], 2)
                if found is not None:
                    decisions[name] = found
                runs[name].append(run)
                print(json.dumps({"contender": name, **run}), flush=True)
                write_document(document, runs, small_runs, decisions, options)
    finally:
        server_times = psutil.Process(server.pid).cpu_times()
        server.terminate()
        server.wait()
    document["http_server_cpu_s_all_runs"] = round(server_times.user + server_times.system, 1)
    write_document(document, runs, small_runs, decisions, options)
    print(json.dumps({key: value for key, value in document.items() if key != "results"}, indent=2))
    for name, summary in document["results"].items():
        print(json.dumps({"contender": name, **{key: value for key, value in summary.items() if key != "runs"}}))


if __name__ == "__main__":
    main()
