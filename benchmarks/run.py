"""
Speed of the OrcaHello pipeline on 60-second hydrophone minutes, on the machine it runs on, next to the bare model
on the same windows, with the accuracy cost of the opt-in fast mode on production's fixtures.

    python benchmarks/run.py --threads 2 1 --engines --fast-mode --scaling-minutes 1 10 60 --output results.json

Every measurement runs in a fresh process restricted to as many CPU cores as it has threads (`--no-pin` to let it
use them all), so "1 thread" is what a 1-CPU pod gets, featurization included, and peak memory belongs to that
measurement alone. Per thread count it reports seconds per 60-s minute end to end (path in, result out), windows
per second, real-time factor, peak resident memory, the model-only time for the same windows (batched forward
with the pipeline's engine, padding skipped, inference mode) and the ratio end-to-end / model-only.
`--engines` adds the model-only time of every engine with and without padding skipping (what was explored);
`--fast-mode` the bfloat16 mode's speed and its accuracy on all 11 fixture recordings against float32 (max |delta
p| per window, one-second decisions and file decisions that agree); `--scaling-minutes` recordings of those lengths
read from a path (time should grow linearly, memory stay flat). With a CUDA GPU, the same on the GPU.
`--presets fastai v1` times the end-to-end minute with each inference preset (v1: 29 windows of 3 s every 2 s,
whole-recording frontend, against fastai's 59 windows of 2 s).
Production (fastai, one window at a time) takes about 7 s per minute on a 2-core machine (LEGACY_NOTES.md, 6).
"""

import argparse
import glob
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
SHARED = os.path.join(os.path.dirname(REPO_ROOT), "shared")
FIXTURE_AUDIO = os.path.join(SHARED, "fixtures", "legacy", "audio")
DEFAULT_WAV = os.path.join(FIXTURE_AUDIO, "rec01_calls_quiet_bg.wav")
DEFAULT_LEARNER = os.path.join(SHARED, "fixtures", "legacy", "model_resnet50_legacy_format", "model.pkl")
ENGINE_VARIANTS = [(engine, skip) for engine in ("openvino", "onnxruntime", "torch") for skip in (True, False)]


def model_folder(path):
    """The model to time; by default the ResNet50 fixture learner, converted in a child process."""
    if path:
        return path
    folder = os.path.join(tempfile.mkdtemp(prefix="orcahello-bench-"), "resnet50")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "orcahello.conversion.convert_fastai",
            "--input",
            DEFAULT_LEARNER,
            "--output-dir",
            folder,
        ],
        cwd=REPO_ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return folder


def write_long_recording(path, minutes, source_wav):
    """A `minutes`-long recording made by repeating a real 60-s fixture minute, written block by block."""
    import soundfile

    samples, rate = soundfile.read(source_wav, dtype="int16")
    with soundfile.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as handle:
        for _ in range(minutes):
            handle.write(samples[: 60 * rate])


def peak_rss_mb():
    """This process's peak resident memory. Read from /proc where possible: Linux carries ru_maxrss across exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_seconds(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_child(task, args, folder, threads, **extra):
    """Run one measurement in a fresh process (pinned to `threads` cores unless --no-pin); its JSON result."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        task,
        "--model",
        folder,
        "--threads",
        str(threads),
        "--batch-size",
        str(args.batch_size),
        "--repeats",
        str(args.repeats),
        "--wav",
        args.wav,
        "--device",
        extra.pop("device", "cpu"),
    ]
    if args.no_pin:
        command.append("--no-pin")
    for name, value in extra.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------------------
# Measurements, each in its own process
# ----------------------------------------------------------------------------------------------------------------


def child_setup(args):
    import torch
    from transformers.utils import logging

    logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    threads = args.threads[0]
    if not args.no_pin and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= threads:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    torch.set_num_threads(threads)


def load_detector(args):
    from transformers import pipeline

    return pipeline("audio-classification", model=args.model, trust_remote_code=True, device=args.device)


def window_features(detector, wav, preset="fastai"):
    import torch

    frontend = detector.resolve_parameters(preset=preset).preprocess  # the preset's windowing and frontend
    return torch.cat([chunk["input_features"] for chunk in detector.preprocess(wav, **frontend)])


def model_only_seconds(detector, features, batch_size, repeats, engine="auto", precision="float32", skip=True):
    """A bare batched forward over `features` with the pipeline's scorer (built before the clock starts)."""
    import torch

    from engines_orcahello import build_scorer, resolve_engine

    device = detector.device
    features = features.to(device)
    if skip:
        scorer = detector.scorer(features[:batch_size], engine=engine, precision=precision)
    else:
        resolved = resolve_engine(engine, device, detector.model.dtype, precision)
        scorer = build_scorer(
            detector.model,
            resolved,
            tuple(features[:batch_size].shape),
            torch.get_num_threads(),
            precision=precision,
            channels_last=device.type == "cuda",  # as the pipeline runs PyTorch
        )

    def forward():
        with torch.inference_mode():
            for start in range(0, features.shape[0], batch_size):
                scorer(features[start : start + batch_size])
        if device.type == "cuda":
            torch.cuda.synchronize()

    forward()  # warm-up: first-call allocations, kernel selection
    return median_seconds(forward, repeats), scorer


def child_minute(args):
    """End to end and model-only on one minute, in the same process: their ratio is from one run."""
    import soundfile

    detector = load_detector(args)
    duration = soundfile.info(args.wav).duration
    precision = args.precision

    def end_to_end():
        return detector(
            args.wav, batch_size=args.batch_size, precision=precision, return_timestamps=True, preset=args.preset
        )

    start = time.perf_counter()
    windows = len(end_to_end()["windows"])  # builds the scorer (the ONNX export) once
    setup_seconds = time.perf_counter() - start
    end_to_end_seconds = median_seconds(end_to_end, args.repeats)
    features = window_features(detector, args.wav, args.preset)
    model_seconds, scorer = model_only_seconds(detector, features, args.batch_size, args.repeats, precision=precision)
    print(
        json.dumps(
            {
                "preset": args.preset,
                "engine": scorer.name,
                "precision": precision,
                "windows": windows,
                "duration_s": duration,
                "first_call_s": setup_seconds,
                "end_to_end_s": end_to_end_seconds,
                "model_only_s": model_seconds,
                "peak_rss_mb": peak_rss_mb(),
                "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            }
        )
    )


def child_engines(args):
    """Model-only time of every engine, with and without padding skipping, on the same windows."""
    from padding_skipping_orcahello import PaddingSkippingClassifier, padded_frames

    detector = load_detector(args)
    features = window_features(detector, args.wav)
    rows = []
    for engine, skip in ENGINE_VARIANTS:
        try:
            seconds, _ = model_only_seconds(detector, features, args.batch_size, args.repeats, engine=engine, skip=skip)
        except ValueError as error:  # an engine this machine cannot run
            rows.append({"engine": engine, "skip_padding": skip, "error": str(error)})
            continue
        rows.append({"engine": engine, "skip_padding": skip, "model_only_s": seconds, "windows": features.shape[0]})
    skipping = PaddingSkippingClassifier(
        detector.model.eval(), features.shape[-2], features.shape[-1], padded_frames(features, 0.0)
    )
    print(json.dumps({"rows": rows, "multiply_adds_fraction": skipping.multiply_adds_fraction()}))


def child_fast_mode(args):
    """The opt-in fast mode against float32 on every fixture recording: speed and what it changes."""
    import numpy as np

    from results_orcahello import aggregate_windows

    detector = load_detector(args)
    wavs = sorted(glob.glob(os.path.join(FIXTURE_AUDIO, "*.wav")))
    reference = detector(wavs, batch_size=args.batch_size, return_timestamps=True)
    try:
        fast = detector(wavs, batch_size=args.batch_size, return_timestamps=True, precision=args.precision)
    except ValueError as error:
        print(json.dumps({"precision": args.precision, "error": str(error)}))
        return
    deltas, rows_agree, rows, files_agree = [], 0, 0, 0
    for exact, approximate in zip(reference, fast):
        exact_scores = np.array([window["score"] for window in exact["windows"]])
        fast_scores = np.array([window["score"] for window in approximate["windows"]])
        deltas.append(np.abs(exact_scores - fast_scores).max())
        exact_rows = aggregate_windows(exact_scores)["local_predictions"]
        fast_rows = aggregate_windows(fast_scores)["local_predictions"]
        rows_agree += sum(a == b for a, b in zip(exact_rows, fast_rows))
        rows += len(exact_rows)
        files_agree += int(exact["global_prediction"] == approximate["global_prediction"])
    features = window_features(detector, args.wav)
    float32_seconds, _ = model_only_seconds(detector, features, args.batch_size, args.repeats)
    fast_seconds, scorer = model_only_seconds(
        detector, features, args.batch_size, args.repeats, precision=args.precision
    )
    print(
        json.dumps(
            {
                "precision": args.precision,
                "engine": scorer.name,
                "model_only_float32_s": float32_seconds,
                "model_only_fast_s": fast_seconds,
                "speedup": float32_seconds / fast_seconds,
                "windows": features.shape[0],
                "fixture_files": len(wavs),
                "max_abs_delta_p": float(max(deltas)),
                "local_decisions_agreeing": rows_agree,
                "local_decisions": rows,
                "file_decisions_agreeing": files_agree,
            }
        )
    )


def child_long(args):
    """One long recording from a path, streamed: wall time and peak memory of this process alone."""
    import numpy as np

    detector = load_detector(args)
    start = time.perf_counter()
    detector(np.zeros(3 * 48000, np.int16), sampling_rate=48000)  # one-time set-up: the ONNX export
    setup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = detector(args.wav, batch_size=args.batch_size, return_timestamps=True)
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - start,
                "setup_seconds": setup_seconds,
                "windows": len(result["windows"]),
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


CHILD_TASKS = {"minute": child_minute, "engines": child_engines, "fast": child_fast_mode, "long": child_long}


# ----------------------------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------------------------


def per_minute(seconds, duration):
    return round(seconds * 60.0 / duration, 3)


def minute_row(figures, threads, device):
    duration = figures["duration_s"]
    return {
        "device": device,
        "threads": threads,
        "cores": figures["cores"],
        "preset": figures.get("preset", "fastai"),
        "engine": figures["engine"],
        "precision": figures["precision"],
        "end_to_end_s_per_minute": per_minute(figures["end_to_end_s"], duration),
        "model_only_s_per_minute": per_minute(figures["model_only_s"], duration),
        "end_to_end_over_model_only": round(figures["end_to_end_s"] / figures["model_only_s"], 3),
        "windows_per_s": round(figures["windows"] / figures["end_to_end_s"], 2),
        "real_time_factor": round(figures["end_to_end_s"] / duration, 4),
        "first_call_s": round(figures["first_call_s"], 2),
        "peak_rss_mb": round(figures["peak_rss_mb"], 1),
    }


def print_minutes(rows):
    print(
        f"\n{'device':>6} {'threads':>7} {'cores':>5} {'preset':>6} {'engine':>11} {'precision':>9} "
        f"{'e2e s/min':>9} {'model s/min':>11} {'e2e/model':>9} {'win/s':>6} {'RTF':>6} {'RSS MB':>7}"
    )
    for row in rows:
        print(
            f"{row['device']:>6} {row['threads']:>7} {row['cores']:>5} {row['preset']:>6} {row['engine']:>11} "
            f"{row['precision']:>9} {row['end_to_end_s_per_minute']:>9.2f} {row['model_only_s_per_minute']:>11.2f} "
            f"{row['end_to_end_over_model_only']:>9.2f} {row['windows_per_s']:>6.1f} {row['real_time_factor']:>6.3f} "
            f"{row['peak_rss_mb']:>7.0f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: convert the ResNet50 fixture learner)")
    parser.add_argument("--wav", default=DEFAULT_WAV, help="a 60-s recording")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pin", action="store_true", help="do not restrict each measurement to `threads` cores")
    parser.add_argument("--engines", action="store_true", help="also time every engine, with and without skipping")
    parser.add_argument("--fast-mode", action="store_true", help="also measure the bfloat16 mode against float32")
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--presets", nargs="+", default=["fastai"], help="inference presets to time (fastai, v1)")
    parser.add_argument("--preset", default="fastai", help=argparse.SUPPRESS)
    parser.add_argument(
        "--scaling-minutes",
        type=int,
        nargs="*",
        default=[],
        help="also score recordings this many minutes long, from a path, each in a fresh process",
    )
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, choices=sorted(CHILD_TASKS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_setup(args)
        CHILD_TASKS[args.child](args)
        return

    import soundfile
    import torch

    folder = model_folder(args.model)
    duration = soundfile.info(args.wav).duration
    report = {
        "wav": os.path.basename(args.wav),
        "duration_s": duration,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "pinned": not args.no_pin,
        "production_fastai_s_per_minute": 6.98,  # LEGACY_NOTES.md section 6, 2 threads
    }
    rows = [
        minute_row(run_child("minute", args, folder, threads, preset=preset), threads, "cpu")
        for preset in args.presets
        for threads in args.threads
    ]
    gpu = torch.cuda.is_available()
    if gpu:
        report["gpu"] = torch.cuda.get_device_name(0)
        for precision in ("float32", "float16", "bfloat16"):
            figures = run_child("minute", args, folder, max(args.threads), device="cuda", precision=precision)
            rows.append(minute_row(figures, max(args.threads), "cuda"))
    report["results"] = rows
    print("production (fastai, one window at a time) takes about 7 s per 60-s minute on a 2-core machine")
    print_minutes(rows)

    if args.engines:
        report["engines"] = []
        print(f"\nmodel only, s per 60-s minute ({os.path.basename(args.wav)}):")
        for threads in args.threads:
            figures = run_child("engines", args, folder, threads)
            report["multiply_adds_fraction_with_skipping"] = round(figures["multiply_adds_fraction"], 4)
            for row in figures["rows"]:
                row["threads"] = threads
                if "model_only_s" in row:
                    row["model_only_s_per_minute"] = per_minute(row.pop("model_only_s"), duration)
                report["engines"].append(row)
                shown = f"{row['model_only_s_per_minute']:.2f}" if "model_only_s_per_minute" in row else row["error"]
                print(
                    f"  threads={threads} {row['engine']:>11} {'skipping padding' if row['skip_padding'] else 'full':>16}"
                    f"  {shown}"
                )
        print(
            f"  padding skipping computes {report['multiply_adds_fraction_with_skipping']:.1%} of the model's "
            f"convolution multiply-adds"
        )

    if args.fast_mode:
        report["fast_mode"] = []
        for threads in args.threads:
            figures = run_child("fast", args, folder, threads, precision="bfloat16")
            figures["threads"] = threads
            report["fast_mode"].append(figures)
            if "error" in figures:
                print(f"\nfast mode (bfloat16), threads={threads}: {figures['error']}")
                continue
            print(
                f"\nfast mode (bfloat16, {figures['engine']}), threads={threads}: model only "
                f"{per_minute(figures['model_only_fast_s'], duration):.2f} s/min against "
                f"{per_minute(figures['model_only_float32_s'], duration):.2f} in float32 "
                f"({figures['speedup']:.2f}x); on the {figures['fixture_files']} fixture recordings: max |delta p| "
                f"{figures['max_abs_delta_p']:.4f}, one-second decisions agreeing "
                f"{figures['local_decisions_agreeing']}/{figures['local_decisions']}, file decisions agreeing "
                f"{figures['file_decisions_agreeing']}/{figures['fixture_files']}"
            )

    if args.scaling_minutes:
        scaling = []
        workdir = tempfile.mkdtemp(prefix="orcahello-scaling-")
        threads = args.threads[0]
        for minutes in args.scaling_minutes:
            wav = os.path.join(workdir, f"{minutes}min.wav")
            write_long_recording(wav, minutes, args.wav)
            long_args = argparse.Namespace(**{**vars(args), "wav": wav})
            figures = run_child("long", long_args, folder, threads)
            os.remove(wav)
            scaling.append(
                {
                    "minutes": minutes,
                    "threads": threads,
                    "seconds": round(figures["seconds"], 2),
                    "setup_seconds": round(figures["setup_seconds"], 2),
                    "s_per_minute": round(figures["seconds"] / minutes, 3),
                    "windows": figures["windows"],
                    "peak_rss_mb": round(figures["peak_rss_mb"], 1),
                }
            )
        report["scaling"] = scaling
        print(
            f"\n{'minutes':>7} {'seconds':>8} {'s/min':>7} {'windows':>8} {'RSS MB':>8} {'set-up s':>9}"
            f"   (threads={threads}, from a path, fresh process each)"
        )
        for row in scaling:
            print(
                f"{row['minutes']:>7} {row['seconds']:>8.1f} {row['s_per_minute']:>7.2f} {row['windows']:>8} "
                f"{row['peak_rss_mb']:>8.0f} {row['setup_seconds']:>9.1f}"
            )
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")


if __name__ == "__main__":
    main()
