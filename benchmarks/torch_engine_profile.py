"""
Model-only speed of the PyTorch engine on CPU against OpenVINO, and of the exact bfloat16 fast mode, on one 60-s
fixture minute (the windows of the fastai preset, as the pipeline makes them), at 1 thread, in one process with
the variants alternating round after round: on a machine shared with other work, the ratios of the same round are
what to read, not the absolute times. CPU time (process_time, which counts page faults and OpenVINO's own
threads) is reported beside wall time; it is far less sensitive to other processes.

Variants (batch 8 unless said; the pipeline's fixed 1 MB glibc mmap threshold is set first, as a pipeline sets it):
  openvino           the OpenVINO engine, float32, padding skipped
  torch_previous     eager PaddingSkippingClassifier, under the 1 MB mmap threshold (the torch engine before)
  torch_new          the pipeline's torch engine now (heap reused for activations during the forward pass)
  production_like    eager full-width ResNet50, one window at a time, with glibc's adaptive heap (what fastai ran)
  fast_mode          bfloat16 (OpenVINO) for every window, then float32 for those `windows_to_rescore` asks for

    python benchmarks/torch_engine_profile.py --rounds 3 --output benchmarks/results_torch_engine_<cpu>.json
"""

import argparse
import json
import os
import platform
import sys
import time
import warnings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
SHARED = os.path.join(os.path.dirname(REPO_ROOT), "shared")
DEFAULT_WAV = os.path.join(SHARED, "fixtures", "legacy", "audio", "rec01_calls_quiet_bg.wav")


def cpu_name():
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.join(REPO_ROOT, "models", "standin-resnet50-synthetic-weights"))
    parser.add_argument("--wav", default=DEFAULT_WAV)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    import soundfile
    import torch
    from transformers.utils import logging

    from engines_orcahello import LogitsOnly, build_scorer, cpu_has_native_bfloat16
    from fast_mode_orcahello import rescore_until_exact
    from orcahello import models
    from padding_skipping_orcahello import PaddingSkippingClassifier, padded_frames
    from process_memory_orcahello import (
        fixed_mmap_threshold,
        heap_reused_for_activations,
        return_large_buffers_to_the_system,
    )
    from vocabulary_orcahello import INFERENCE_PRESETS

    logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    return_large_buffers_to_the_system()  # the fixed 1 MB threshold, as the command line's entry point sets it
    detector = models.load_pipeline(args.model, "cpu")  # this package's classes, as the command line
    threshold = fixed_mmap_threshold()
    frontend = detector.resolve_parameters(preset="fastai").preprocess
    features = torch.cat([chunk["input_features"] for chunk in detector.preprocess(args.wav, **frontend)])
    minutes = soundfile.info(args.wav).duration / 60.0
    batch = args.batch_size
    batches = [features[start : start + batch] for start in range(0, len(features), batch)]
    model = detector.model.eval()

    # This repository's scoring code, not the model folder's copy that trust_remote_code imports.
    content_frames = padded_frames(features, float(detector.feature_extractor.padding_value))

    def scorer(engine, precision="float32"):
        return build_scorer(
            model,
            engine,
            tuple(batches[0].shape),
            1,
            precision=precision,
            content_frames=content_frames,
            process_mmap_threshold=threshold,
        )

    openvino = scorer("openvino")
    torch_new = scorer("torch")
    previous = PaddingSkippingClassifier(model, features.shape[-2], features.shape[-1], content_frames)
    full_width = LogitsOnly(model)
    fast = scorer("openvino", "bfloat16") if cpu_has_native_bfloat16() else None
    decisions = {
        name: INFERENCE_PRESETS["fastai"][name]
        for name in (
            "aggregation",
            "local_threshold",
            "global_count_threshold",
            "global_threshold",
            "top_k_windows",
            "smoothing",
        )
    }
    rescored_fraction = []

    def fast_mode():
        probabilities = torch.cat([torch.softmax(fast(part), -1)[:, 1] for part in batches]).double().numpy()

        def score_in_float32(indices):
            chosen = features[torch.as_tensor(indices)]
            return (
                torch.cat(
                    [
                        torch.softmax(openvino(chosen[start : start + batch]), -1)[:, 1]
                        for start in range(0, len(chosen), batch)
                    ]
                )
                .double()
                .numpy()
            )

        _, rescored = rescore_until_exact(probabilities, score_in_float32, **decisions)
        rescored_fraction.append(float(rescored.mean()))

    def production_like():
        with heap_reused_for_activations(threshold):
            for window in features:
                full_width(window[None])

    variants = {
        "openvino": lambda: [openvino(part) for part in batches],
        "torch_previous": lambda: [previous(part) for part in batches],
        "torch_new": lambda: [torch_new(part) for part in batches],
        "production_like": production_like,
    }
    if fast is not None:
        variants["fast_mode"] = fast_mode
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    with torch.inference_mode():
        for function in variants.values():
            function()  # warm-up
        for round_index in range(args.rounds):
            for name, function in variants.items():
                wall_start, cpu_start = time.perf_counter(), time.process_time()
                function()
                wall[name].append((time.perf_counter() - wall_start) / minutes)
                cpu[name].append((time.process_time() - cpu_start) / minutes)
            print(
                f"round {round_index + 1}: " + ", ".join(f"{name} {cpu[name][-1]:.2f}" for name in variants),
                "CPU s/min",
                flush=True,
            )

    def ratios(times):
        best = {name: min(values) for name, values in times.items()}
        per_round = {
            f"{name}_over_openvino": [round(value / base, 3) for value, base in zip(times[name], times["openvino"])]
            for name in times
            if name != "openvino"
        }
        per_round["torch_previous_over_torch_new"] = [
            round(a / b, 3) for a, b in zip(times["torch_previous"], times["torch_new"])
        ]
        per_round["production_like_over_torch_new"] = [
            round(a / b, 3) for a, b in zip(times["production_like"], times["torch_new"])
        ]
        if "fast_mode" in times:
            per_round["openvino_float32_over_fast_mode"] = [
                round(a / b, 3) for a, b in zip(times["openvino"], times["fast_mode"])
            ]
        return {
            "best_s_per_minute": {name: round(value, 3) for name, value in best.items()},
            "ratios_per_round": per_round,
        }

    result = {
        "cpu": cpu_name(),
        "threads": 1,
        "model": os.path.basename(os.path.normpath(args.model)),
        "recording": os.path.basename(args.wav),
        "windows": int(features.shape[0]),
        "batch_size": batch,
        "rounds": args.rounds,
        "cpu_time": ratios(cpu),
        "wall_time": ratios(wall),
        "fast_mode_rescored_fraction": rescored_fraction[-1] if rescored_fraction else None,
    }
    print(json.dumps(result, indent=1))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
