"""
Production's side of `production_side_by_side.py`: run by production's OWN interpreter (the fastai v1 environment
built from ../shared/legacy_src/README.md), never imported by this project. It loads OrcaHello's 2020-2026
inference class `FastAIModel` exactly as production constructed it (threshold 0.5, 3 positive seconds), warms it
up on a short WAV, then times `FastAIModel.predict` on each recording and prints one JSON object on stdout.

    <production python> benchmarks/production_driver.py --legacy-src DIR --model-dir DIR --threads N \
        --warmup WAV --recordings WAV [WAV ...] [--adapted-head HEAD.json]

With `--adapted-head`, the learner's classification head is replaced, after loading and before anything is predicted,
by the linear head of a folder made by `orcahello adapt` (`production_side_by_side.py` writes it as JSON: its
`layer`, `weight` and `bias`), so that production's own `predict` runs the same weights as our adapted folder:
`"pooled"` reads the concat-pooled features (the head keeps fastai's pooling and flattening, then the adapted
linear layer), `"head"` the fastai head's last hidden layer (the head's last linear layer takes the adapted weights).
Nothing else of production changes.

Standard library and production's own packages only: this file must run under numpy<2 / fastai 1.0.61.
`predict` prints to stdout, so everything production prints goes to stderr and stdout carries the JSON alone.
"""

import argparse
import contextlib
import json
import os
import resource
import sys
import time


def peak_rss_mb():
    """This process's peak resident memory (VmHWM: per process image, not carried across exec like ru_maxrss)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ForwardClock:
    """Seconds spent inside the network's forward (forward pre-hook to forward hook), summed over calls."""

    def __init__(self, module):
        self.seconds = 0.0
        self.calls = 0
        self._started = None
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _start(self, module, inputs):
        self._started = time.perf_counter()

    def _stop(self, module, inputs, output):
        self.seconds += time.perf_counter() - self._started
        self.calls += 1

    def reset(self):
        self.seconds, self.calls = 0.0, 0


def plain(value):
    """A JSON-able copy of production's numpy/pandas scalars."""
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def install_adapted_head(learner_model, path):
    """Give fastai's `Sequential(body, head)` the adapted linear head of the JSON file at `path` (see the docstring)."""
    import torch
    from torch import nn

    with open(path) as handle:
        adapted = json.load(handle)
    weight = torch.tensor(adapted["weight"], dtype=torch.float32)
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(torch.tensor(adapted["bias"], dtype=torch.float32))
    head = learner_model[1]
    if (
        adapted["layer"] == "pooled"
    ):  # fastai's head: concat pool, flatten, BN, dropout, linear, ReLU, BN, dropout, linear
        learner_model[1] = nn.Sequential(head[0], head[1], linear)
    elif adapted["layer"] == "head":
        head[-1] = linear
    else:
        raise SystemExit(f"--adapted-head: layer must be pooled or head, got {adapted['layer']!r}")
    learner_model.eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legacy-src", required=True, help="folder holding orcahello_inference/fastai_inference.py")
    parser.add_argument("--model-dir", required=True, help="folder holding the learner export model.pkl")
    parser.add_argument("--model-name", default="model.pkl")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--warmup", required=True, help="a short WAV predicted once before the clock starts")
    parser.add_argument("--recordings", nargs="+", required=True)
    parser.add_argument("--adapted-head", default=None, help="JSON of an adapted head (layer, weight, bias)")
    args = parser.parse_args()

    json_out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        started = time.perf_counter()
        import torch

        torch.set_num_threads(args.threads)
        sys.path.insert(0, os.path.join(args.legacy_src, "orcahello_inference"))
        import fastai
        from fastai_inference import FastAIModel  # monkey-patches torchaudio and torch.load, as production did

        model = FastAIModel(args.model_dir, args.model_name, threshold=0.5, min_num_positive_calls_threshold=3)
        if args.adapted_head:
            install_adapted_head(model.model.model, args.adapted_head)
        clock = ForwardClock(model.model.model)
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        model.predict(args.warmup)
        warmup_seconds = time.perf_counter() - started

        recordings = []
        for path in args.recordings:
            clock.reset()
            started = time.perf_counter()
            result = model.predict(path)
            seconds = time.perf_counter() - started
            recordings.append(
                {
                    "recording": os.path.basename(path),
                    "seconds": seconds,
                    "model_seconds": clock.seconds,
                    "windows": clock.calls,
                    "local_predictions": plain(list(result["local_predictions"])),
                    "local_confidences": plain(list(result["local_confidences"])),
                    "global_prediction": plain(result["global_prediction"]),
                    "global_confidence": plain(result["global_confidence"]),
                }
            )
    json.dump(
        {
            "contender": "production",
            "threads": args.threads,
            "torch_threads": torch.get_num_threads(),
            "cores": len(os.sched_getaffinity(0)),
            "load_seconds": load_seconds,
            "warmup_seconds": warmup_seconds,
            "recordings": recordings,
            "adapted_head": bool(args.adapted_head),
            "peak_rss_mb": peak_rss_mb(),
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "fastai": fastai.__version__},
        },
        json_out,
    )
    json_out.write("\n")


if __name__ == "__main__":
    main()
