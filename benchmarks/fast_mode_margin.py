"""
The error bound of the bfloat16 fast mode: the largest |bfloat16 - float32| deviation of the logit difference
(logit of "call" minus logit of "no call", whose sigmoid is P(call)) over every window of every fixture recording
and every real recording in ../shared, with both inference presets' windows and every bfloat16 engine this machine
runs. `fast_mode_orcahello.BFLOAT16_LOGIT_MARGINS`, the margin per engine within which the fast mode re-scores a
window in float32, must be at least twice the largest deviation measured here with that engine.

    python benchmarks/fast_mode_margin.py --model models/standin-resnet50-synthetic-weights --output margin.json
"""

import argparse
import glob
import json
import os
import platform
import sys
import warnings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
SHARED = os.path.join(os.path.dirname(REPO_ROOT), "shared")
RECORDINGS = sorted(glob.glob(os.path.join(SHARED, "fixtures", "legacy", "audio", "*.wav"))) + sorted(
    glob.glob(os.path.join(SHARED, "audio", "real", "*.wav"))
)


def cpu_name():
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def logit_differences(scorer, features, batch_size, clock=None, key=None):
    """The logit differences of every window; with `clock`, the seconds it took added to `clock[key]`."""
    import time

    import torch

    started = time.perf_counter()
    with torch.inference_mode():
        logits = torch.cat(
            [scorer(features[start : start + batch_size]) for start in range(0, len(features), batch_size)]
        )
    if clock is not None:
        clock[key] = clock.get(key, 0.0) + time.perf_counter() - started
    return (logits[:, 1] - logits[:, 0]).double()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.join(REPO_ROOT, "models", "standin-resnet50-synthetic-weights"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--presets", nargs="+", default=["fastai", "v1"])
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    import soundfile
    import torch
    from transformers.utils import logging

    from engines_orcahello import openvino_is_available
    from fast_mode_orcahello import BFLOAT16_LOGIT_MARGINS
    from orcahello import models

    logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    detector = models.load_pipeline(args.model, "cpu")  # this package's classes, as the command line
    engines = ["torch"] + (["openvino"] if openvino_is_available() else [])
    rows, largest, clock = [], {engine: 0.0 for engine in engines}, {}
    for preset in args.presets:
        frontend = detector.resolve_parameters(preset=preset).preprocess
        for path in RECORDINGS:
            if soundfile.info(path).duration < frontend["window_seconds"]:
                continue  # shorter than one window of this preset: nothing to score
            features = torch.cat([chunk["input_features"] for chunk in detector.preprocess(path, **frontend)])
            reference_engine = "openvino" if "openvino" in engines else "torch"
            reference = logit_differences(
                detector.scorer(features[: args.batch_size], engine=reference_engine),
                features,
                args.batch_size,
                clock,
                f"{reference_engine} float32",
            )
            for engine in engines:  # float32's time with the other engines too, for the speed-ups below
                if engine != reference_engine:
                    logit_differences(
                        detector.scorer(features[: args.batch_size], engine=engine),
                        features,
                        args.batch_size,
                        clock,
                        f"{engine} float32",
                    )
            row = {"recording": os.path.basename(path), "preset": preset, "windows": int(features.shape[0])}
            for engine in engines:
                scorer = detector.scorer(features[: args.batch_size], engine=engine, precision="bfloat16")
                deviation = float(
                    (logit_differences(scorer, features, args.batch_size, clock, f"{engine} bfloat16") - reference)
                    .abs()
                    .max()
                )
                row[f"max_abs_logit_deviation_{engine}"] = deviation
                largest[engine] = max(largest[engine], deviation)
            rows.append(row)
            print(json.dumps(row), flush=True)
    overall = max(largest.values())
    result = {
        "cpu": cpu_name(),
        "model": os.path.basename(os.path.normpath(args.model)),
        "windows": sum(row["windows"] for row in rows),
        "max_abs_logit_deviation": largest,
        "max_abs_logit_deviation_overall": overall,
        "margin_in_use": {engine: BFLOAT16_LOGIT_MARGINS[engine] for engine in engines},
        "margin_at_least_twice_the_deviation": all(
            BFLOAT16_LOGIT_MARGINS[engine] >= 2 * largest[engine] for engine in engines
        ),  # fmt: skip
        # Every window scored once in each precision, in this process (scorer construction excluded): the speed
        # bfloat16 would give if nothing needed re-scoring.
        "threads": args.threads,
        "seconds": clock,
        "bfloat16_speedup_over_float32": {
            engine: clock[f"{engine} float32"] / clock[f"{engine} bfloat16"] for engine in engines
        },
        "recordings": rows,
    }
    print(json.dumps({key: value for key, value in result.items() if key != "recordings"}, indent=1))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
