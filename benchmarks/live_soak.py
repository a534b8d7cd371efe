"""
A soak test of `orcahello live`: two streams for hours of audio, with faults, checked window by window.

    python benchmarks/live_soak.py --audio-minutes 120 --speedup 4 --output benchmarks/results_live_soak.json

Two Orcasound nodes, each a local bucket folder served by its own HTTP server process on 127.0.0.1, stream
`--audio-minutes` of audio each, grown from the real recordings of the test data (looped, encoded as a node does:
10-second AAC segments in MPEG-TS) one segment at a time, `--speedup` times faster than real time. One
`orcahello live` process (one torch thread) follows both, with every minute positive (`--threshold 0`), so that
every minute is a detection POSTed to a local webhook receiver. On the way:

- node A's server is stopped for 30 s and started again (twice: at 20% and at 70% of the stream);
- node B loses a segment (never uploaded, not in the playlist) at 35%;
- node B's server stalls (SIGSTOP: connections accepted, no answer) for 45 s, longer than a request's timeout, at 50%;
- the webhook receiver is down from 30% to 55%.

Then both playlists end, `live` is given time to finish and drain its spool, and is stopped with SIGTERM.
`orcahello detect` scores the two finished playlists. Reported:

- windows written against expected (detect's count), per stream: none lost, none twice, scores equal to detect's
  (largest absolute difference);
- detections and POSTs: each positive minute received exactly once;
- resident memory (VmRSS of the live process) sampled every 5 s, and its slope (least squares, MB per hour of wall
  time) over the second half of the run (after the start-up and the first minutes have warmed every cache);
- lag (from a segment being listed to its windows being written, as `live` logs it) percentiles per stream;
- CPU (user + system of the live process) per minute of audio per stream, start-up included and not;
- the machine: CPU model, cores, the load average before, during and after (other work slows every figure).
"""

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
sys.path.insert(0, REPO_ROOT)

from conftest import LEGACY, REAL_AUDIO, ffmpeg_cli, make_orcanode_hls  # noqa: E402
from live_helpers import GrowingNode, file_server, free_port, read_jsonl, webhook_receiver  # noqa: E402

EPOCHS = {"A": 1600000000, "B": 1600003600}
NODES = {"A": "rpi_soak_a", "B": "rpi_soak_b"}
RECORDINGS = {
    "A": ("pos_kw_onc_folger_NRKW_Gclan_20120206T084546Z.wav", "neg_ship_sanctsound_CI05_largeship_20190925T135956Z.wav",
          "pos_srkw_orcasound_210825-1925_L-highlight.wav", "hardneg_humpback_song_sanctsound_HI01_20190216T045823Z.wav"),
    "B": ("pos_kw_orcasound_someCalls_faint.wav", "neg_ambient_sanctsound_CI02_wind_20191026T155434Z.wav",
          "pos_srkw_catalog_S01_JL.wav", "neg_boat_sanctsound_HI01_smallboat_20191201T000002Z.wav"),
}  # fmt: skip
LAG = re.compile(r"INFO (\S+): \d+: windows \d+-\d+ written \(to [^)]*\), lag ([0-9.]+) s")


def cpu_model():
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def process_figures(pid):
    """`(resident MB, CPU s)` of a live process, from /proc."""
    with open(f"/proc/{pid}/status") as handle:
        rss_kb = next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / ticks


def long_recording(names, minutes, path):
    """The recordings `names` one after another, looped to `minutes` of audio, as one 48-kHz mono WAV."""
    listing = path.with_suffix(".txt")
    listing.write_text("".join(f"file '{REAL_AUDIO / name}'\n" for name in names))
    joined = path.with_name(path.stem + "_once.wav")
    ffmpeg_cli("-f", "concat", "-safe", "0", "-i", listing, "-ar", 48000, "-ac", 1, joined)
    ffmpeg_cli("-stream_loop", -1, "-i", joined, "-t", minutes * 60, "-c", "copy", path)
    return path


def slope_per_hour(samples):
    """Least-squares slope of `(seconds, value)` pairs, per hour."""
    times = [t for t, _ in samples]
    values = [v for _, v in samples]
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    return 3600 * sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread if spread else 0.0


def percentiles(values):
    if not values:
        return None
    ordered = sorted(values)

    def at(fraction):
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(ordered[-1], 2), "count": len(values)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio-minutes", type=float, default=120.0, help="audio per stream (default 120)")
    parser.add_argument("--speedup", type=float, default=4.0, help="segments published this many times real time")
    parser.add_argument("--model", help="a model folder (default: the stand-in ResNet50 learner, converted)")
    parser.add_argument("--work-dir", help="where streams and outputs go (default: a temporary folder, kept)")
    parser.add_argument("--output", default=os.path.join(REPO_ROOT, "benchmarks", "results_live_soak.json"))
    options = parser.parse_args()
    from pathlib import Path

    work = Path(options.work_dir or tempfile.mkdtemp(prefix="orcahello-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"working in {work}", flush=True)
    load_before = os.getloadavg()
    model = options.model
    if model is None:
        from orcahello.conversion.convert_fastai import convert

        model = str(work / "model")
        if not (work / "model" / "config.json").exists():
            convert(str(LEGACY / "model_resnet50_legacy_format" / "model.pkl"), model)
    nodes, servers, urls = {}, {}, []
    for key in ("A", "B"):
        encoded = work / f"encoded_{key}"
        if not (encoded / "live.m3u8").exists():
            wav = long_recording(RECORDINGS[key], options.audio_minutes, work / f"stream_{key}.wav")
            make_orcanode_hls(wav, encoded)
            wav.unlink()
        bucket = work / f"bucket_{key}"
        nodes[key] = GrowingNode(bucket, NODES[key], {EPOCHS[key]: encoded})
        port = free_port()
        servers[key] = file_server(bucket, port)
        urls.append(f"http://127.0.0.1:{port}/{NODES[key]}")
    segments = min(node.segment_count(EPOCHS[key]) for key, node in nodes.items())
    receiver_port, metrics_port = free_port(), free_port()
    received = work / "received"
    receiver = webhook_receiver(receiver_port, received).start()
    for key, node in nodes.items():
        node.publish(EPOCHS[key], 0)
        servers[key].start()
    output_dir, log_path = work / "live", work / "live.log"
    environment = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "orcahello.cli", "live", *urls, "--model", model, "--output-dir", output_dir,
               "--poll-seconds", "1", "--backlog-seconds", "1000000", "--threshold", "0", "--min-positive-seconds", "1",
               "--no-plot", "--post", f"http://127.0.0.1:{receiver_port}/detections",
               "--metrics-port", metrics_port]  # fmt: skip
    log = open(log_path, "w")
    live = subprocess.Popen(list(map(str, command)), cwd=REPO_ROOT, env=environment, stdout=log, stderr=log)
    started = time.monotonic()
    samples, loads = [], []
    first_window = {}  # the first sample after a window was written: the CPU until then is the start-up's
    sampling = threading.Event()

    def sample():
        while not sampling.wait(5.0):
            try:
                rss, cpu = process_figures(live.pid)
            except (OSError, StopIteration):
                return
            samples.append((time.monotonic() - started, rss, cpu))
            if not first_window and any((output_dir / node / "windows.jsonl").exists() for node in NODES.values()):
                first_window["cpu_s"] = cpu
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # The start-up's CPU: imports, the model, the first segment.
    time.sleep(1.0)
    interval = 10.0 / options.speedup
    events = {
        int(segments * 0.20): ["stop A"],
        int(segments * 0.20) + max(1, int(30 / interval)): ["start A"],
        int(segments * 0.70): ["stop A"],
        int(segments * 0.70) + max(1, int(30 / interval)): ["start A"],
        int(segments * 0.30): ["stop receiver"],
        int(segments * 0.55): ["start receiver"],
        int(segments * 0.50): ["stall B"],
    }
    lost = {"B": int(segments * 0.35)}
    faults = []
    for number in range(1, segments):
        if live.poll() is not None:  # a soak of a dead process measures nothing: stop with its last words
            raise SystemExit(f"live exited with {live.returncode}:\n" + log_path.read_text()[-2000:])
        for event in events.get(number, []):
            faults.append({"segment": number, "event": event, "wall_s": round(time.monotonic() - started, 1)})
            print(f"segment {number}/{segments}: {event}", flush=True)
            if event == "stop A":
                servers["A"].stop()
            elif event == "start A":
                servers["A"].start()
            elif event == "stop receiver":
                receiver.stop()
            elif event == "start receiver":
                receiver.start()
            elif event == "stall B":
                process = servers["B"].process
                process.send_signal(signal.SIGSTOP)
                threading.Timer(45.0, process.send_signal, args=(signal.SIGCONT,)).start()
        for key, node in nodes.items():
            if lost.get(key) == number:
                node.lose(EPOCHS[key], number)
            else:
                node.publish(EPOCHS[key], number)
        time.sleep(interval)
    # A short run ends before a fault's end: everything is up again for the end of the streams.
    for server in (servers["A"], receiver):
        if server.process is None:
            server.start()
    published_at = time.monotonic() - started
    for key, node in nodes.items():
        node.end(EPOCHS[key])

    def finished(key):
        path = output_dir / NODES[key] / "state.json"
        return path.exists() and json.loads(path.read_text()).get("finished")

    while not all(finished(key) for key in nodes) and live.poll() is None:
        time.sleep(2.0)
    scored_at = time.monotonic() - started
    spool = output_dir / "webhook_spool"
    deadline = time.monotonic() + 600
    while any(spool.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(2.0)
    sampling.set()
    sampler.join()
    # What /metrics says at the end, to hold against the files.
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as response:
        page = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.read().decode())
            for sample in family.samples
        }
    rss_end, cpu_end = process_figures(live.pid)
    stop_asked = time.monotonic()
    live.send_signal(signal.SIGTERM)
    live.wait(timeout=300)
    stopped_in = time.monotonic() - stop_asked
    log.close()
    receiver.stop()
    for server in servers.values():
        server.stop()
    load_during = statistics.fmean(loads) if loads else None

    # What detect gives for the finished playlists.
    detect_dir = work / "detect"
    detect_started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "orcahello.cli", "detect",
         *(str(nodes[key].playlist_path(EPOCHS[key])) for key in nodes),
         "--model", model, "--output-dir", str(detect_dir), "--format", "json"],
        cwd=REPO_ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True,
    )  # fmt: skip
    if completed.returncode != 0:
        raise SystemExit(f"detect failed: {completed.stderr[-2000:]}")
    detect_s = time.monotonic() - detect_started

    streams = {}
    log_text = log_path.read_text()
    lags = {}
    for name, lag in LAG.findall(log_text):
        lags.setdefault(name, []).append(float(lag))
    for key in nodes:
        windows = read_jsonl(output_dir / NODES[key] / "windows.jsonl")
        [json_path] = detect_dir.rglob(f"{EPOCHS[key]}/live.orcahello.json")
        expected = json.loads(json_path.read_text())["windows"]
        indices = [entry["index"] for entry in windows]
        by_index = {entry["index"]: entry for entry in windows}
        differences = [abs(by_index[i]["score"] - want["score"]) for i, want in enumerate(expected) if i in by_index]
        detections = read_jsonl(output_dir / NODES[key] / "detections.jsonl")
        streams[key] = {
            "node": NODES[key],
            "windows_expected": len(expected),
            "windows_written": len(windows),
            "windows_missing": len(set(range(len(expected))) - set(indices)),
            "windows_twice": len(indices) - len(set(indices)),
            "max_abs_score_difference_vs_detect": max(differences) if differences else None,
            "utc_mismatches_vs_detect": sum(
                (by_index[i]["start_utc"], by_index[i]["end_utc"]) != (want["start_utc"], want["end_utc"])
                for i, want in enumerate(expected)
                if i in by_index
            ),
            "detections": len(detections),
            "metrics_windows_scored": page.get(("orcahello_live_windows_scored_total", (("source", NODES[key]),))),
            "metrics_positive_minutes": page.get(("orcahello_live_positive_minutes_total", (("source", NODES[key]),))),
            "metrics_gaps": page.get(("orcahello_live_gaps_total", (("source", NODES[key]),))),
            "lag_s": percentiles(lags.get(NODES[key], [])),
        }
    posts = [json.loads(path.read_text()) for path in sorted(received.glob("*.json"))]
    posted = [(post["source"], post["recording"], post["minute"]) for post in posts]
    audio_minutes = {key: streams[key]["windows_expected"] / 60 for key in streams}
    startup_cpu = first_window.get("cpu_s", 0.0)
    half = [(t, rss) for t, rss, _ in samples if t >= samples[-1][0] / 2] if samples else []
    result = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "model": "the stand-in ResNet50 learner (fixtures/legacy), converted" if options.model is None else model,
        "audio_minutes_per_stream": options.audio_minutes,
        "speedup": options.speedup,
        "segments_per_stream": segments,
        "torch_threads": 1,
        "faults": faults,
        "lost_segment": {NODES[key]: number for key, number in lost.items()},
        "streams": streams,
        "webhook": {
            "detections": sum(stream["detections"] for stream in streams.values()),
            "posts_received": len(posted),
            "posted_twice": len(posted) - len(set(posted)),
            "spool_left": len(list(spool.glob("*.json"))),
            "metrics_posted": page.get(("orcahello_live_webhook_posted_total", ())),
            "metrics_post_failures": page.get(("orcahello_live_webhook_failures_total", ())),
        },
        "memory": {
            "rss_mb_start": round(samples[0][1], 1) if samples else None,
            "rss_mb_max": round(max(rss for _, rss, _ in samples), 1) if samples else None,
            "rss_mb_end": round(rss_end, 1),
            "rss_slope_mb_per_hour_second_half": round(slope_per_hour(half), 2) if len(half) > 2 else None,
            "samples": [[round(t), round(rss, 1)] for t, rss, _ in samples[::6]],
        },
        "cpu": {
            "live_cpu_s": round(cpu_end, 1),
            "startup_cpu_s_until_first_window": round(startup_cpu, 1),
            "cpu_s_per_audio_minute_per_stream": round(cpu_end / sum(audio_minutes.values()), 2),
            "cpu_s_per_audio_minute_per_stream_after_startup": round(
                (cpu_end - startup_cpu) / sum(audio_minutes.values()), 2
            ),
        },
        "wall_s": {
            "publishing": round(published_at, 1),
            "until_both_scored": round(scored_at, 1),
            "sigterm_to_exit": round(stopped_in, 1),
            "detect_on_finished_playlists": round(detect_s, 1),
        },
        "load_average_1min": {
            "before": round(load_before[0], 2),
            "during_mean": None if load_during is None else round(load_during, 2),
            "after": round(os.getloadavg()[0], 2),
        },
        "live_exit_status": live.returncode,
    }
    Path(options.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({key: value for key, value in result.items() if key != "memory"}, indent=2))


if __name__ == "__main__":
    main()
