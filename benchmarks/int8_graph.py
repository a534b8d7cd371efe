"""
Which graph and which layers make the int8 model pay: OpenVINO's int8 model of the network, quantized by NNCF three
ways on the same windows, timed and compared with float32 on them.

    .venv/bin/python benchmarks/int8_graph.py --model models/standin-resnet50-synthetic-weights \
        [--model ADAPTED_FOLDER] --output benchmarks/results_int8_graph_xeon_amx.json

Windows: `--windows` spread evenly over the fastai preset's windows of every real recording and fixture recording
of the test data (`orcahello.quantize.calibration_windows`), which both calibrate and are measured (the pipeline's
own margin is measured apart, on every window, by `benchmarks/fast_mode_margin.py`). Variants:

- `padding-skipping graph`: what `orcahello quantize` made before: the graph float32 runs
  (`padding_skipping_orcahello`), every layer quantized;
- `whole network`: the network on the whole window, every layer quantized;
- `whole network, stem and head in float32` (what `orcahello quantize` makes now: `quantize_for_openvino`): the
  first convolution and the linear layers left in float32.

For each: milliseconds per window at one thread (batches of 8, the pipeline's CPU batch; median of `--repeats`),
the float32 padding-skipping graph (the default engine) timed the same way in the same run, and the int8 model's
deviation from float32 in the logit difference z = logit(call) - logit(no call) (the fast mode's margin is on z):
largest, 99th percentile, median, beside the spread of |z| itself.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from conftest import LEGACY, REAL_AUDIO  # noqa: E402
from live_soak import cpu_model  # noqa: E402

BATCH = 8


def compiled(core, network):
    """`network` compiled as the pipeline's OpenVINO engine compiles it, at one thread."""
    return core.compile_model(network, "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32",
                                               "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                                               "ENABLE_CPU_PINNING": False})  # fmt: skip


def milliseconds_per_window(model, windows, repeats):
    request = model.create_infer_request()
    batch = windows[:BATCH]
    request.infer({0: batch})  # first-call costs
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        request.infer({0: batch})
        times.append((time.perf_counter() - started) * 1000 / len(batch))
    return statistics.median(times)


def logit_differences(model, windows):
    import numpy as np

    request = model.create_infer_request()
    logits = np.concatenate(
        [request.infer({0: windows[i : i + BATCH]})[0].copy() for i in range(0, len(windows), BATCH)]
    )
    return logits[:, 1] - logits[:, 0]


def measure(folder, window_count, repeats):
    import nncf
    import numpy as np
    import openvino
    import torch

    from engines_orcahello import export_onnx, scoring_module
    from orcahello import models
    from orcahello.quantize import calibration_windows, quantize_for_openvino
    from padding_skipping_orcahello import padded_frames

    torch.set_num_threads(1)
    detector = models.load_pipeline(folder, "cpu")
    model = detector.model.eval()
    padding_value = float(detector.feature_extractor.padding_value)
    recordings = sorted(str(path) for path in [*REAL_AUDIO.glob("*.wav"), *(LEGACY / "audio").glob("*.wav")])
    windows = calibration_windows(detector, recordings, "fastai", window_count)
    content_frames = padded_frames(windows, padding_value)
    shape = tuple(windows[:1].shape)
    array = windows.numpy().astype(np.float32)
    core = openvino.Core()

    def network(module, name):
        path = os.path.join(work, f"{name}.onnx")
        export_onnx(module, shape, path)
        return core.read_model(path)

    with tempfile.TemporaryDirectory(prefix="orcahello-int8-graph-") as work:
        skipping = network(scoring_module(model, shape, content_frames, padding_value).eval(), "skipping")
        whole = network(scoring_module(model, shape).eval(), "whole")
        float32 = compiled(core, skipping)
        reference = logit_differences(float32, array)
        dataset = [window[None] for window in array]
        variants = {
            "padding-skipping graph": nncf.quantize(skipping, nncf.Dataset(dataset), subset_size=len(dataset),
                                                    preset=nncf.QuantizationPreset.PERFORMANCE),
            "whole network": nncf.quantize(whole, nncf.Dataset(dataset), subset_size=len(dataset),
                                           preset=nncf.QuantizationPreset.PERFORMANCE),
            "whole network, stem and head in float32": quantize_for_openvino(scoring_module(model, shape).eval(),
                                                                             shape, windows),
        }  # fmt: skip
        rows = [{"variant": "float32, padding-skipping graph (the default engine)",
                 "ms_per_window": milliseconds_per_window(float32, array, repeats)}]  # fmt: skip
        for name, quantized in variants.items():
            int8 = compiled(core, quantized)
            deviation = np.abs(logit_differences(int8, array) - reference)
            rows.append(
                {
                    "variant": name,
                    "ms_per_window": milliseconds_per_window(int8, array, repeats),
                    "deviation_max": float(deviation.max()),
                    "deviation_p99": float(np.percentile(deviation, 99)),
                    "deviation_median": float(np.median(deviation)),
                }
            )
        for row in rows:
            row["speed_over_float32"] = rows[0]["ms_per_window"] / row["ms_per_window"]
            print(f"  {row['variant']:>45}: {row['ms_per_window']:6.1f} ms/window ({row['speed_over_float32']:.2f}x)"
                  + (f", deviation max {row['deviation_max']:.2f} p99 {row['deviation_p99']:.2f} median "
                     f"{row['deviation_median']:.2f}" if "deviation_max" in row else ""), flush=True)  # fmt: skip
    magnitude = np.abs(reference)
    return {
        "model": Path(folder).name,
        "adapted_head": bool(getattr(model.config, "adapted_head", None)),
        "windows": len(array),
        "content_frames": content_frames,
        "abs_z": {"min": float(magnitude.min()), "median": float(np.median(magnitude)), "max": float(magnitude.max())},
        "rows": rows,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="a model folder (repeat for several)")
    parser.add_argument("--windows", type=int, default=400, help="windows that calibrate and are measured")
    parser.add_argument("--repeats", type=int, default=7, help="timed batches per variant (median)")
    parser.add_argument("--output", default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    from engines_orcahello import cpu_has_int8_instructions

    if not cpu_has_int8_instructions():
        raise SystemExit("this CPU has no int8 dot products (avx512_vnni, avx_vnni or amx_int8)")
    import nncf
    import openvino

    report = {
        "command": " ".join([os.path.relpath(sys.executable, REPO_ROOT), *sys.argv]),
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "threads": 1,
        "versions": {"openvino": openvino.get_version(), "nncf": nncf.__version__},
        "load_average_before": os.getloadavg(),
        "models": [],
    }
    for folder in args.model:
        print(folder, flush=True)
        report["models"].append(measure(folder, args.windows, args.repeats))
    report["load_average_after"] = os.getloadavg()
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
