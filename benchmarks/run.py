"""
End-to-end speed of the OrcaHello pipeline on 60-second hydrophone minutes, next to the bare model on the same
windows, on the machine it runs on.

    python benchmarks/run.py --threads 2 1 --scaling-minutes 1 10 60 --output benchmarks/results.json

Reports per thread count: seconds per 60-s minute end to end (path in, result out), windows per second, real-time
factor, peak resident memory, the model-only time for the same 59 windows (batched forward, channels-last,
inference mode, with the pipeline's default engine: ONNX Runtime on CPU), and the ratio end-to-end / model-only.
With --scaling-minutes, recordings of those lengths are scored from a path, each in a fresh process, to show that
time grows linearly and peak memory stays flat (streaming). Production (fastai, one window
at a time) takes about 7 s per minute on a 2-core machine; see ../shared/reference/LEGACY_NOTES.md section 6.
"""

import argparse
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
DEFAULT_WAV = os.path.join(SHARED, "fixtures", "legacy", "audio", "rec01_calls_quiet_bg.wav")
DEFAULT_LEARNER = os.path.join(SHARED, "fixtures", "legacy", "model_resnet50_legacy_format", "model.pkl")


def model_folder(path):
    """The model to time; by default the ResNet50 fixture learner, converted in a child process so that the
    conversion's memory does not count in this process's peak RSS."""
    if path:
        return path
    folder = os.path.join(tempfile.mkdtemp(prefix="orcahello-bench-"), "resnet50")
    subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "conversion", "convert_fastai.py"), "--input", DEFAULT_LEARNER,
         "--output-dir", folder],
        check=True, stdout=subprocess.DEVNULL,
    )
    return folder


def write_long_recording(path, minutes, source_wav):
    """A `minutes`-long recording made by repeating a real 60-s fixture minute, written block by block."""
    import soundfile

    samples, rate = soundfile.read(source_wav, dtype="int16")
    with soundfile.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as handle:
        for _ in range(minutes):
            handle.write(samples[: 60 * rate])


def score_in_child(folder, wav, threads, batch_size):
    """Score `wav` in a fresh process: its wall time and peak RSS belong to that recording alone."""
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", wav, "--model", folder, "--threads", str(threads),
         "--batch-size", str(batch_size)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def peak_rss_mb():
    """This process's peak resident memory. Read from /proc where possible: Linux carries ru_maxrss across exec,
    so a child started by a large parent would report the parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_main(args):
    import numpy as np
    import torch
    from transformers import pipeline
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.set_num_threads(args.threads[0])
    detector = pipeline("audio-classification", model=args.model, trust_remote_code=True)
    start = time.perf_counter()
    detector(np.zeros(3 * 48000, np.int16), sampling_rate=48000)  # one-time set-up: the ONNX export
    setup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = detector(args.child, batch_size=args.batch_size, return_timestamps=True)
    print(json.dumps({
        "seconds": time.perf_counter() - start,
        "setup_seconds": setup_seconds,
        "windows": len(result["windows"]),
        "peak_rss_mb": peak_rss_mb(),
    }))


def median_time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: convert the ResNet50 fixture learner)")
    parser.add_argument("--wav", default=DEFAULT_WAV, help="a 60-s recording")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    parser.add_argument("--scaling-minutes", type=int, nargs="*", default=[],
                        help="also score recordings this many minutes long, from a path, each in a fresh process")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.child:
        child_main(args)
        return

    import soundfile
    import torch
    from transformers import pipeline
    from transformers.utils import logging

    logging.set_verbosity_error()
    folder = model_folder(args.model)
    detector = pipeline("audio-classification", model=folder, trust_remote_code=True)
    duration = soundfile.info(args.wav).duration
    features = torch.cat(
        [chunk["input_features"] for chunk in detector.preprocess(args.wav, window_seconds=2.0, hop_seconds=1.0)]
    ).contiguous(memory_format=torch.channels_last)
    windows = features.shape[0]

    def bare_model():
        # The same engine the pipeline uses (ONNX Runtime on CPU when installed), on the same windows.
        scorer = detector._onnxruntime_scorer("auto", features.shape[1:])
        with torch.inference_mode():
            for start in range(0, windows, args.batch_size):
                batch = features[start : start + args.batch_size]
                if scorer is not None:
                    scorer(batch)
                else:
                    detector.model(input_features=batch)

    def eager_pytorch():
        with torch.inference_mode():
            for start in range(0, windows, args.batch_size):
                detector.model(input_features=features[start : start + args.batch_size])

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        detector(args.wav, batch_size=args.batch_size)  # warm-up
        end_to_end = median_time(lambda: detector(args.wav, batch_size=args.batch_size), args.repeats)
        model_only = median_time(bare_model, args.repeats)
        eager = median_time(eager_pytorch, args.repeats)
        rows.append(
            {
                "threads": threads,
                "end_to_end_s_per_minute": round(end_to_end * 60.0 / duration, 3),
                "model_only_s_per_minute": round(model_only * 60.0 / duration, 3),
                "eager_pytorch_model_s_per_minute": round(eager * 60.0 / duration, 3),
                "end_to_end_over_model_only": round(end_to_end / model_only, 3),
                "windows_per_s": round(windows / end_to_end, 2),
                "real_time_factor": round(end_to_end / duration, 4),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        )
    report = {
        "wav": os.path.basename(args.wav),
        "duration_s": duration,
        "windows": windows,
        "batch_size": args.batch_size,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "results": rows,
    }
    engine = "onnxruntime" if detector._onnxruntime_scorer("auto", features.shape[1:]) is not None else "torch"
    report["engine"] = engine
    print(f"engine: {engine}; production (fastai) takes about 7 s per minute on a 2-core machine")
    header = (f"{'threads':>7} {'e2e s/min':>10} {'model s/min':>12} {'e2e/model':>10} {'eager torch s/min':>18} "
              f"{'win/s':>7} {'RTF':>7} {'RSS MB':>8}")
    print(header)
    for row in rows:
        print(
            f"{row['threads']:>7} {row['end_to_end_s_per_minute']:>10.2f} {row['model_only_s_per_minute']:>12.2f} "
            f"{row['end_to_end_over_model_only']:>10.2f} {row['eager_pytorch_model_s_per_minute']:>18.2f} "
            f"{row['windows_per_s']:>7.1f} {row['real_time_factor']:>7.3f} "
            f"{row['peak_rss_mb']:>8.0f}"
        )
    if args.scaling_minutes:
        scaling = []
        workdir = tempfile.mkdtemp(prefix="orcahello-scaling-")
        for minutes in args.scaling_minutes:
            wav = os.path.join(workdir, f"{minutes}min.wav")
            write_long_recording(wav, minutes, args.wav)
            figures = score_in_child(folder, wav, args.threads[0], args.batch_size)
            os.remove(wav)
            scaling.append({
                "minutes": minutes,
                "threads": args.threads[0],
                "seconds": round(figures["seconds"], 2),
                "setup_seconds": round(figures["setup_seconds"], 2),
                "s_per_minute": round(figures["seconds"] / minutes, 3),
                "windows": figures["windows"],
                "peak_rss_mb": round(figures["peak_rss_mb"], 1),
            })
        report["scaling"] = scaling
        print(f"\n{'minutes':>7} {'seconds':>8} {'s/min':>7} {'windows':>8} {'RSS MB':>8} {'set-up s':>9}"
              f"   (threads={args.threads[0]}, from a path, fresh process each)")
        for row in scaling:
            print(f"{row['minutes']:>7} {row['seconds']:>8.1f} {row['s_per_minute']:>7.2f} {row['windows']:>8} "
                  f"{row['peak_rss_mb']:>8.0f} {row['setup_seconds']:>9.1f}")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
