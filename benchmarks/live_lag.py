"""
Lag and CPU per hydrophone for `orcahello live`: how many nodes one CPU core keeps up with.

    python benchmarks/live_lag.py --model models/standin-resnet50-synthetic-weights --nodes 1 4 \
        --output benchmarks/results_live_1core.json

Each node is a local bucket folder served by its own HTTP server process on 127.0.0.1, streaming a real recording
from ../shared/audio/real (encoded as an Orcasound node does: 10-second AAC segments in MPEG-TS) segment by segment,
`--speedup` times faster than real time. One `orcahello live` process follows all the nodes, pinned to one core
(`taskset`, one torch thread), until every node's recording is scored. Reported per node count:

- `cpu_s_per_audio_minute`: the live process's CPU time (user + system) per minute of audio per node, after the
  start-up (imports, model loading, ONNX export: measured in a run with nothing to score and subtracted);
- `nodes_per_core`: 60 / cpu_s_per_audio_minute, the real-time streams one core keeps up with;
- `lag_s` (median, max): from a segment being listed in its playlist to its windows being written, as the command
  logs it. A node keeps up while its lag stays bounded at a segment's worth of work.

The machine's load average is recorded with each run: other work on the machine slows every figure.
"""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
sys.path.insert(0, REPO_ROOT)

from conftest import REAL_AUDIO, ffmpeg_cli, make_orcanode_hls  # noqa: E402
from live_helpers import GrowingNode, concatenate_wavs, file_server, free_port, read_jsonl  # noqa: E402

EPOCH = 1600000000
RECORDINGS = ("pos_kw_onc_folger_NRKW_Gclan_20120206T084546Z.wav", "pos_kw_orcasound_someCalls_faint.wav",
              "hardneg_humpback_song_sanctsound_HI01_20190216T045823Z.wav")  # fmt: skip
LAG = re.compile(r"windows \d+-\d+ written \(to [^)]*\), lag ([0-9.]+) s")


def cpu_model():
    """The CPU's model name (Linux), else what `platform` says."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_live(model, node_urls, output_dir, log_path, core, until, timeout):
    """One `orcahello live` on one core until `until()`; returns (wall s, CPU s, log text)."""
    environment = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "orcahello.cli", "live", *node_urls, "--model", model, "--output-dir",
               output_dir, "--poll-seconds", "0.5", "--backlog-seconds", "100000", "--no-plot"]  # fmt: skip
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    cpu_before, started = children_cpu_seconds(), time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    return time.monotonic() - started, children_cpu_seconds() - cpu_before, open(log_path).read()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder (the production architecture: ResNet50)")
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--speedup", type=float, default=5.0, help="stream this many times faster than real time")
    parser.add_argument("--core", type=int, default=0, help="the CPU core the live process is pinned to")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="orcahello-live-bench-")
    try:
        wav = concatenate_wavs(
            [os.path.join(REAL_AUDIO, name) for name in RECORDINGS], os.path.join(work, "stream.wav"), ffmpeg_cli
        )
        encoded = {EPOCH: make_orcanode_hls(wav, os.path.join(work, "encoded"))}
        results = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                               "python": platform.python_version()},
                   "model": os.path.basename(os.path.normpath(args.model)), "speedup": args.speedup,
                   "runs": []}  # fmt: skip

        # Start-up alone: a node whose stream never starts (latest.txt names an empty folder).
        idle_root = os.path.join(work, "idle")
        os.makedirs(os.path.join(idle_root, "idle_node"))
        with open(os.path.join(idle_root, "idle_node", "latest.txt"), "w") as handle:
            handle.write(f"{EPOCH}\n")
        port = free_port()
        server = file_server(idle_root, port).start()
        status_path = os.path.join(work, "idle_out", "status.json")
        try:
            startup_wall, startup_cpu, _ = run_live(
                args.model,
                [f"http://127.0.0.1:{port}/idle_node"],
                os.path.join(work, "idle_out"),
                os.path.join(work, "idle.log"),
                args.core,
                lambda: os.path.exists(status_path),
                300,
            )
        finally:
            server.stop()
        results["startup_cpu_s"] = round(startup_cpu, 2)

        for node_count in args.nodes:
            root, output_dir = os.path.join(work, f"bucket{node_count}"), os.path.join(work, f"out{node_count}")
            names = [f"rpi_bench_{index}" for index in range(node_count)]
            nodes = [GrowingNode(root, name, encoded) for name in names]
            segments = nodes[0].segment_count(EPOCH)
            for node in nodes:
                node.publish(EPOCH, 0)
            port = free_port()
            server = file_server(root, port).start()
            published = {"count": 1, "next_at": time.monotonic()}
            interval = 10.0 / args.speedup

            def all_scored():
                # The stream grows while we wait: one segment per node every 10 s / speedup.
                if published["count"] < segments and time.monotonic() >= published["next_at"]:
                    for node in nodes:
                        node.publish(EPOCH, published["count"])
                    published["count"] += 1
                    published["next_at"] = time.monotonic() + interval
                    if published["count"] == segments:
                        for node in nodes:
                            node.end(EPOCH)
                states = [os.path.join(output_dir, name, "state.json") for name in names]
                return all(os.path.exists(path) and json.load(open(path)).get("finished") for path in states)

            load_before = os.getloadavg()[0]
            try:
                wall, cpu, log = run_live(args.model, [f"http://127.0.0.1:{port}/{name}" for name in names],
                                          output_dir, os.path.join(work, f"live{node_count}.log"), args.core,
                                          all_scored, 1800)  # fmt: skip
            finally:
                server.stop()
            windows = sum(len(read_jsonl(os.path.join(output_dir, name, "windows.jsonl"))) for name in names)
            audio_minutes = windows / 60.0  # one window per second of audio
            lags = [float(value) for value in LAG.findall(log)]
            steady = lags[node_count:] or lags  # the first segment of each node waits for the model's start-up
            per_minute = max(cpu - startup_cpu, 1e-9) / audio_minutes
            results["runs"].append({
                "nodes": node_count,
                "windows": windows,
                "audio_minutes": round(audio_minutes, 2),
                "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 2),
                "cpu_s_per_audio_minute": round(per_minute, 3),
                "nodes_per_core": round(60.0 / per_minute, 1),
                "lag_s_median": round(statistics.median(steady), 2) if steady else None,
                "lag_s_max": round(max(steady), 2) if steady else None,
                "load_average_1min_before": round(load_before, 2),
                "load_average_1min_after": round(os.getloadavg()[0], 2),
            })  # fmt: skip
            print(json.dumps(results["runs"][-1]), flush=True)
        if args.output:
            with open(args.output, "w") as handle:
                json.dump(results, handle, indent=2)
                handle.write("\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
