"""
The error bound of the bfloat16 fast mode: the largest |bfloat16 - float32| deviation of the logit difference
(logit of "call" minus logit of "no call", whose sigmoid is P(call)) over every window of every fixture recording
and every real recording in ../shared, with both inference presets' windows and every bfloat16 engine this machine
runs. `fast_mode_orcahello.BFLOAT16_LOGIT_MARGINS`, the margin per engine within which the fast mode re-scores a
window in float32, must be at least twice the largest deviation measured here with that engine.

`--precisions int8` (the `int8` extra: NNCF; a CPU with VNNI or AMX) measures OpenVINO's int8 models instead, as
the pipeline runs them: `orcahello quantize` writes them into a copy of the model folder, calibrated on windows of
these same recordings (each preset's, evenly spread). Also reported: the share of windows the fast mode's rule
re-scores in float32 with twice the measured deviation as the margin, and the model-only speed over float32.

    python benchmarks/fast_mode_margin.py --model models/standin-resnet50-synthetic-weights --output margin.json
"""

import argparse
import dataclasses
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


def quantized_copy(model_folder, presets):
    """A copy of `model_folder` with its int8 models, calibrated on every recording (`orcahello quantize`)."""
    import shutil
    import tempfile

    from orcahello.quantize import QuantizeOptions, quantize_model_folder

    copy = os.path.join(tempfile.mkdtemp(prefix="orcahello-int8-margin-"), "model")
    shutil.copytree(model_folder, copy)
    quantize_model_folder(QuantizeOptions(model=copy, calibration=tuple(RECORDINGS), presets=tuple(presets)))
    return copy


def rescored_share(reduced_logits, float32_logits, margin, detector):
    """Over every recording, the share of windows `rescore_until_exact` scores again in float32, with `margin`."""
    import torch

    from fast_mode_orcahello import rescore_until_exact
    from results_orcahello import DecisionParameters

    rescored = total = 0
    position = {preset: 0 for preset in float32_logits}
    for preset, reduced in reduced_logits:
        exact = float32_logits[preset][position[preset]]
        position[preset] += 1
        decision = detector.resolve_parameters(preset=preset).postprocess.get("decision") or DecisionParameters()
        parameters = dataclasses.asdict(decision)
        _, mask = rescore_until_exact(
            torch.sigmoid(reduced).numpy(),
            lambda indices, exact=exact: torch.sigmoid(exact[indices]).numpy(),
            margin=margin,
            **parameters,
        )
        rescored += int(mask.sum())
        total += mask.size
    return rescored / max(total, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.join(REPO_ROOT, "models", "standin-resnet50-synthetic-weights"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--presets", nargs="+", default=["fastai", "v1"])
    parser.add_argument("--precisions", nargs="+", choices=["bfloat16", "int8"], default=["bfloat16"])
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    import soundfile
    import torch
    from transformers.utils import logging

    from engines_orcahello import openvino_is_available
    from fast_mode_orcahello import LOGIT_MARGINS
    from orcahello import models

    logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    model_folder = args.model
    if "int8" in args.precisions:
        model_folder = quantized_copy(args.model, args.presets)
    detector = models.load_pipeline(model_folder, "cpu")  # this package's classes, as the command line
    engines = ["torch"] + (["openvino"] if openvino_is_available() else [])
    if "bfloat16" not in args.precisions:
        engines = [engine for engine in engines if engine == "openvino"]
    recordings = []
    for preset in args.presets:
        frontend = detector.resolve_parameters(preset=preset).preprocess
        for path in RECORDINGS:
            if soundfile.info(path).duration < frontend["window_seconds"]:
                continue  # shorter than one window of this preset: nothing to score
            features = torch.cat([chunk["input_features"] for chunk in detector.preprocess(path, **frontend)])
            recordings.append((preset, path, features))
    precisions = [(engine, "bfloat16") for engine in engines if "bfloat16" in args.precisions]
    precisions += [("openvino", "int8")] if "int8" in args.precisions else []
    largest = {f"{engine} {precision}": 0.0 for engine, precision in precisions}
    reference_engine = "openvino" if "openvino" in engines else "torch"
    rows, clock, float32_logits, reduced_logits = [], {}, {}, {key: [] for key in largest}
    for preset, path, features in recordings:
        reference = logit_differences(
            detector.scorer(features[: args.batch_size], engine=reference_engine),
            features,
            args.batch_size,
            clock,
            f"{reference_engine} float32",
        )
        float32_logits.setdefault(preset, []).append(reference)
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
        for engine, precision in precisions:
            key = f"{engine} {precision}"
            scorer = detector.scorer(features[: args.batch_size], engine=engine, precision=precision)
            reduced = logit_differences(scorer, features, args.batch_size, clock, key)
            reduced_logits[key].append((preset, reduced))
            deviation = float((reduced - reference).abs().max())
            row[f"max_abs_logit_deviation_{engine}_{precision}"] = deviation
            largest[key] = max(largest[key], deviation)
        rows.append(row)
        print(json.dumps(row), flush=True)
    overall = max(largest.values())
    result = {
        "cpu": cpu_name(),
        "model": os.path.basename(os.path.normpath(args.model)),
        "windows": sum(row["windows"] for row in rows),
        "max_abs_logit_deviation": largest,
        "max_abs_logit_deviation_overall": overall,
        "margin_in_use": {key: LOGIT_MARGINS[key.split()[1]][key.split()[0]] for key in largest},
        "margin_at_least_twice_the_deviation": all(
            LOGIT_MARGINS[key.split()[1]][key.split()[0]] >= 2 * largest[key] for key in largest
        ),
        # The share of windows the fast mode's rule re-scores with twice the measured deviation as the margin
        # (each recording a file; the default decision parameters of each preset).
        "rescored_share_at_twice_the_deviation": {
            key: rescored_share(reduced_logits[key], float32_logits, 2 * largest[key], detector) for key in largest
        },
        # ... and with the margin the pipeline uses (what a detect run with these weights re-scores).
        "rescored_share_at_the_margin_in_use": {
            key: rescored_share(
                reduced_logits[key], float32_logits, LOGIT_MARGINS[key.split()[1]][key.split()[0]], detector
            )
            for key in largest
        },
        # Every window scored once in each precision, in this process (scorer construction excluded): the speed
        # bfloat16 would give if nothing needed re-scoring.
        "threads": args.threads,
        "seconds": clock,
        "speedup_over_float32": {key: clock[f"{key.split()[0]} float32"] / clock[key] for key in largest},
        "recordings": rows,
    }
    print(json.dumps({key: value for key, value in result.items() if key != "recordings"}, indent=1))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
