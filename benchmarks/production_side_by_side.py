"""
OrcaHello's detector side by side with PRODUCTION's own code (the fastai v1 `FastAIModel.predict` that ran from 2020
to 2026), on the same recordings, on whatever CPU this machine has.

    .venv/bin/python benchmarks/production_side_by_side.py                # the full run, ~12 min (see below)
    .venv/bin/python benchmarks/production_side_by_side.py --quick        # 1 recording, 1 repeat: a smoke test

Production runs in its own interpreter, never in this process: its environment is built once from the recipe in
../shared/legacy_src/README.md (Python 3.11 venv, torch 2.9.1, fastai 1.0.61, fastai_audio 0.1; PyPI only, about
10 minutes and 7.7 GB) under `${XDG_CACHE_HOME:-~/.cache}/orcahello-production-env`, with uv when
`~/.cache/orcahello-venvs/.uv-tool/bin/uv` exists, else pip; a `.complete` file marks it finished.
`benchmarks/production_driver.py` is what that interpreter runs (it prints JSON).

Contenders: `production` (FastAIModel with the stand-in ResNet50 learner of ../shared/fixtures/legacy, production's
thresholds), `ours-auto` (this project's pipeline, `engine="auto"`, preset `fastai`) and `ours-torch`
(`engine="torch"`), and, on CPUs with native bfloat16, `ours-fast` (`precision="bfloat16"`: the exact fast mode,
with the fraction of windows it scored again in float32), and on CPUs with int8 dot products `ours-int8`
(`precision="int8"`: OpenVINO's int8 model of `orcahello quantize`, calibrated on the real recordings, under the
same exact rule), on the same learner converted with
orcahello.conversion.convert_fastai (or `--model`). `--model` may be a folder made by `orcahello adapt` from the
converted stand-in: production then runs the same adapted head, installed in its learner by its driver after loading
(`production_driver.py --adapted-head`; production's `predict` itself unchanged), so the decisions must still be
equal. For each
repeat and each thread count N (1 and 2) they run in turn, production, then ours, each in a fresh
process pinned with taskset to N cores, with N threads (torch.set_num_threads, OMP/MKL/OpenBLAS_NUM_THREADS). A
process loads its model, predicts a 10-s warm-up clip (first-call costs: kernel selection, ONNX export), then times
every recording. Reported per contender and thread count (medians over repeats):

- seconds per 60-s minute: end-to-end time (path in, result out) scaled to production's 59 windows per minute;
- ratio: production's seconds / the contender's (> 1: faster than production);
- model-only seconds per minute: time inside the network (production: forward hooks on the fastai model; ours:
  the pipeline's `window_logits`), and the model's achieved GFLOP/s: 2 x multiply-adds per window x windows /
  model time, counting only what each side computes (ours skips the columns the spectrogram's constant padding
  determines, see padding_skipping_orcahello.py), against a float32 matrix-multiply peak (torch.mm) measured in the same
  run on the same pinned cores;
- peak resident memory of the process (VmHWM);
- per-second decision agreement with production: production's per-second `local_predictions` and its
  `global_prediction` against ours, run by run (must be 100%); also the largest confidence difference;
- capacity: live hydrophones one core keeps up with (each delivers a 60-s minute every 60 s) = 60 / seconds per
  minute at 1 thread.

Recordings: 48 kHz mono 16-bit WAVs as production received them (orca-hls-utils' ffmpeg conversion of the AAC
stream), made from the real recordings of ../shared/audio/real (resampled to 48 kHz and butted together: one of
killer-whale calls from five sources, one of ships, a boat, humpback song, dolphin whistles and wind; 83 s and more
each), then the legacy fixture minutes. Each is `--seconds`
long plus production's 512-sample surplus (its minutes are 2,880,512 samples).

Wall time of the full run (2 recordings x 30 s, 1 and 2 threads, 5 repeats, 3 contenders = 30 processes): at the
speeds measured on a quiet 2-core AVX2 machine (1 thread: production 19.8, ours-auto 10.9, ours-torch 24.8 s per
minute) about 90 s of scoring per repeat (55 s at 1 thread, ~35 s at 2) plus ~60 s of process start-up (imports,
model loading, our ONNX export, the warm-up clip), i.e. about 12 minutes, plus ~1 minute once (model conversion,
matrix-multiply peaks). Recordings are 30 s rather than production's 60 so that this fits: `--seconds 60` takes
about 20 minutes. Start-up is not in the figures, but it is slow on a busy machine (40-70 s a process with load
average 9 on 2 cores), and other work slows every figure: only ratios measured in one run mean anything.
The command exits with status 1, after writing the JSON, when any decision differs from production's.
"""

import argparse
import datetime
import fcntl
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO_ROOT), "shared")
LEGACY_SRC = os.path.join(SHARED, "legacy_src")
LEARNER_DIR = os.path.join(SHARED, "fixtures", "legacy", "model_resnet50_legacy_format")
REAL_AUDIO = os.path.join(SHARED, "audio", "real")
FIXTURE_AUDIO = os.path.join(SHARED, "fixtures", "legacy", "audio")
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "production_driver.py")
DEFAULT_OUTPUT = os.path.join(REPO_ROOT, "benchmarks", "results_side_by_side.json")

PRODUCTION_RATE = 48000
PRODUCTION_SURPLUS_SAMPLES = 512  # production's minutes are 2,880,512 samples (LEGACY_NOTES.md, 2)
WINDOWS_PER_MINUTE = 59  # production's windows in a 60.01-s minute: floor(duration) - 1
WARMUP_SECONDS = 10  # 9 windows: one full batch of 8 and a partial one
CONTENDERS = ("production", "ours-auto", "ours-torch", "ours-fast", "ours-int8")
# Our contenders: (engine, precision). "ours-fast" (the exact bfloat16 fast mode) runs only on CPUs with native
# bfloat16, "ours-int8" (OpenVINO's int8 model of `orcahello quantize` under the same exact rule) only on CPUs with
# int8 dot products (the pipeline refuses each elsewhere).
OUR_SETTINGS = {"ours-auto": ("auto", "float32"), "ours-torch": ("torch", "float32"), "ours-fast": ("auto", "bfloat16"),
                "ours-int8": ("openvino", "int8")}  # fmt: skip
# Recordings, in the order --recordings takes them: (file name, sources butted together) or a fixture minute.
RECORDING_SOURCES = (
    ("real_kw_calls.wav", ("pos_srkw_orcasound_210825-1925_L-highlight.wav",
                           "pos_kw_sanctsound_OC03_killerwhale_20191128T091339Z.wav",
                           "pos_kw_sanctsound_MB01_killerwhale_20200423T164427Z.wav",
                           "pos_kw_onc_folger_NRKW_Gclan_20120206T084546Z.wav",
                           "pos_kw_orcasound_someCalls_faint.wav")),
    ("real_noise.wav", ("neg_ship_sanctsound_CI05_largeship_20190925T135956Z.wav",
                        "neg_boat_sanctsound_HI01_smallboat_20191201T000002Z.wav",
                        "hardneg_humpback_song_sanctsound_HI01_20190216T045823Z.wav",
                        "neg_ship_sanctsound_OC01_ship_20191106T223751Z.wav",
                        "hardneg_dolphin_whistles_sanctsound_CI01_20190904T064203Z.wav",
                        "neg_ambient_sanctsound_CI02_wind_20191026T155434Z.wav")),
    ("fixture_rec01_calls_quiet_bg.wav", ("rec01_calls_quiet_bg.wav",)),
    ("fixture_rec02_calls_mixed_snr_bouts.wav", ("rec02_calls_mixed_snr_bouts.wav",)),
    ("fixture_rec03_boat_only.wav", ("rec03_boat_only.wav",)),
    ("fixture_rec06_faint_calls.wav", ("rec06_faint_calls.wav",)),
)  # fmt: skip
# /proc/cpuinfo flags worth recording: what the matrix kernels of each side can use.
VECTOR_EXTENSIONS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl",
                     "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Pure parts (tested without production's environment)
# ----------------------------------------------------------------------------------------------------------------


def cpu_description(cpuinfo_text):
    """The CPU's model name and which of `VECTOR_EXTENSIONS` its flags list, from /proc/cpuinfo's text."""
    model_name, flags = None, set()
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model_name is None:
            model_name = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return {"model_name": model_name, "vector_extensions": [name for name in VECTOR_EXTENSIONS if name in flags]}


def decision_agreement(production, ours):
    """
    How far our result agrees with production's on one recording: each of production's per-second
    `local_predictions` against ours at the same second (a second only one side has counts as disagreeing), the
    file's `global_prediction`, and the largest differences of the confidences (the global one on production's 0-100
    scale: production's `global_confidence` against 100 x ours, which is 0-1).
    """
    theirs, mine = list(production["local_predictions"]), list(ours["local_predictions"])
    seconds = max(len(theirs), len(mine))
    identical = sum(int(a) == int(b) for a, b in zip(theirs, mine))
    deltas = [abs(float(a) - float(b)) for a, b in zip(production["local_confidences"], ours["local_confidences"])]
    return {
        "seconds": seconds,
        "seconds_identical": identical,
        "global_identical": int(production["global_prediction"]) == int(ours["global_prediction"]),
        "max_abs_local_confidence_delta": max(deltas, default=0.0),
        "abs_global_confidence_delta": abs(
            float(production["global_confidence"]) - 100.0 * float(ours["global_confidence"])
        ),
    }


def combine_agreements(agreements):
    """Many recordings' `decision_agreement`s as one: the identical fraction of all seconds and of all files."""
    seconds = sum(item["seconds"] for item in agreements)
    identical = sum(item["seconds_identical"] for item in agreements)
    files = len(agreements)
    globals_identical = sum(item["global_identical"] for item in agreements)
    return {
        "seconds": seconds,
        "seconds_identical": identical,
        "local_fraction_identical": identical / seconds if seconds else None,
        "files": files,
        "global_fraction_identical": globals_identical / files if files else None,
        "max_abs_local_confidence_delta": max((item["max_abs_local_confidence_delta"] for item in agreements),
                                              default=0.0),
        "max_abs_global_confidence_delta": max((item["abs_global_confidence_delta"] for item in agreements),
                                               default=0.0),
    }  # fmt: skip


def seconds_per_minute(seconds, windows):
    """Seconds for production's 59-window minute, from `seconds` spent on `windows` windows."""
    return seconds * WINDOWS_PER_MINUTE / windows


def hydrophones_per_core(seconds_per_minute_one_thread):
    """Live hydrophones one core keeps up with: each delivers 60 s of audio every 60 s."""
    return 60.0 / seconds_per_minute_one_thread


def achieved_gflops(multiply_adds_per_window, windows, seconds):
    """GFLOP/s of a network that did `windows` windows of `multiply_adds_per_window` in `seconds` (2 FLOPs each)."""
    return 2.0 * multiply_adds_per_window * windows / seconds / 1e9


# ----------------------------------------------------------------------------------------------------------------
# Production's environment
# ----------------------------------------------------------------------------------------------------------------


def cache_home():
    return os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")


def default_production_env():
    return os.path.join(cache_home(), "orcahello-production-env")


def python_311():
    """A local Python 3.11 interpreter for production's venv (never downloaded)."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        raise SystemExit("building production's environment needs a Python 3.11 interpreter (python3.11 on PATH)")
    return found


def ensure_production_env(env_dir):
    """
    The python of production's environment at `env_dir`, built first if `.complete` is absent there, following
    ../shared/legacy_src/README.md. A folder without `.complete` is someone's build in progress (or a failed one):
    refused rather than overwritten. One addition to the recipe: `setuptools<81`, because fastai 1.0.61 imports
    `pkg_resources`, which setuptools 82 removed (a pip-made venv happens to carry an older one; a uv venv has none
    and the recipe's packages pull the newest).
    """
    python = os.path.join(env_dir, "bin", "python")
    marker = os.path.join(env_dir, ".complete")
    if os.path.exists(marker):
        return python
    os.makedirs(os.path.dirname(env_dir), exist_ok=True)
    log_path = env_dir + ".build.log"
    with open(env_dir + ".build-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run of this script building it: wait for it
        if os.path.exists(marker):
            return python
        if os.path.exists(env_dir):
            raise SystemExit(f"production's environment {env_dir} exists but has no .complete: a build is in "
                             f"progress or failed; wait for it, or remove the folder to rebuild")  # fmt: skip
        uv = os.path.join(cache_home(), "orcahello-venvs", ".uv-tool", "bin", "uv")
        base = python_311()
        if os.path.exists(uv):
            create = [uv, "venv", "-q", "--python", base, env_dir]
            install = [uv, "pip", "install", "--python", python]
        else:
            create = [base, "-m", "venv", env_dir]
            install = [python, "-m", "pip", "install"]
        with tempfile.TemporaryDirectory(prefix="orcahello-fastai-audio-") as scratch:
            # A copy: pip and uv may write build files into the source tree, and ../shared is read-only.
            fastai_audio = shutil.copytree(os.path.join(LEGACY_SRC, "fastai_audio-0.1"),
                                           os.path.join(scratch, "fastai_audio-0.1"))  # fmt: skip
            steps = [
                ("create the venv", create),
                ("install torch", [*install, "torch==2.9.1", "torchaudio==2.9.1", "torchvision==0.24.1"]),
                ("install fastai", [*install, "fastai==1.0.61", "numpy<2", "pandas<2", "librosa>=0.10",
                                    "pydub==0.24.1", "soundfile", "scipy", "ipython", "matplotlib", "spacy>=3.5.4",
                                    "pyyaml", "setuptools<81"]),
                ("install fastai_audio", [*install, fastai_audio]),
                ("import it", [python, "-c", "import fastai, audio, torch, pydub, librosa"]),
            ]  # fmt: skip
            print(f"building production's environment in {env_dir} (about 10 minutes; log: {log_path})")
            with open(log_path, "w") as log:
                for name, command in steps:
                    log.write(f"$ {' '.join(command)}\n")
                    log.flush()
                    completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
                    if completed.returncode != 0:
                        raise SystemExit(f"building production's environment failed at '{name}' "
                                         f"(exit {completed.returncode}); see {log_path}")  # fmt: skip
        with open(marker, "w") as handle:
            handle.write(datetime.datetime.now(datetime.timezone.utc).isoformat() + "\n")
    return python


# ----------------------------------------------------------------------------------------------------------------
# Recordings and the model
# ----------------------------------------------------------------------------------------------------------------


def production_format(samples, rate):
    """int16 samples at `rate` as production's 48 kHz 16-bit WAVs hold them (polyphase resampling, rounded)."""
    import math

    import numpy as np
    from scipy.signal import resample_poly

    if rate == PRODUCTION_RATE:
        return samples
    divisor = math.gcd(rate, PRODUCTION_RATE)
    resampled = resample_poly(samples.astype(np.float64), PRODUCTION_RATE // divisor, rate // divisor)
    return np.clip(np.round(resampled), -32768, 32767).astype(np.int16)


def make_recordings(folder, count, seconds):
    """The first `count` recordings of `RECORDING_SOURCES`, each `seconds` long plus 512 samples; their paths."""
    import numpy as np
    import soundfile

    if not 1 <= count <= len(RECORDING_SOURCES):
        raise SystemExit(f"--recordings must be between 1 and {len(RECORDING_SOURCES)}, got {count}")
    length = int(seconds * PRODUCTION_RATE) + PRODUCTION_SURPLUS_SAMPLES
    paths = []
    for name, sources in RECORDING_SOURCES[:count]:
        parts = []
        for source in sources:
            folder_of_source = REAL_AUDIO if os.path.exists(os.path.join(REAL_AUDIO, source)) else FIXTURE_AUDIO
            samples, rate = soundfile.read(os.path.join(folder_of_source, source), dtype="int16", always_2d=True)
            parts.append(production_format(samples.mean(axis=1).astype(np.int16), rate))
        samples = np.concatenate(parts)
        while samples.shape[0] < length:  # a fixture minute is 60.0 s: repeat its start for any surplus
            samples = np.concatenate([samples, samples])
        path = os.path.join(folder, name)
        soundfile.write(path, samples[:length], PRODUCTION_RATE, subtype="PCM_16")
        paths.append(path)
    warmup = os.path.join(folder, "warmup.wav")
    soundfile.write(warmup, soundfile.read(paths[0], dtype="int16")[0][: WARMUP_SECONDS * PRODUCTION_RATE],
                    PRODUCTION_RATE, subtype="PCM_16")  # fmt: skip
    return paths, warmup


def convert_learner(folder):
    """The stand-in learner converted to this project's model folder, with this checkout's code."""
    completed = subprocess.run(
        [sys.executable, "-m", "orcahello.conversion.convert_fastai", "--input",
         os.path.join(LEARNER_DIR, "model.pkl"), "--output-dir", folder],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    if completed.returncode != 0:
        raise SystemExit(
            f"converting the stand-in learner failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    return folder


def write_adapted_head(folder, path):
    """
    When the model folder `folder` was made by `orcahello adapt`, write its linear head as JSON (`layer`, `weight`,
    `bias`: float32 values, which JSON's doubles hold exactly) to `path` for production's driver to install in the
    learner, and return `path`; None for a folder without one. Its backbone must be the stand-in learner's (adapt
    from the converted stand-in) for production to run the same weights: the decision check says when it is not.
    """
    with open(os.path.join(folder, "config.json")) as handle:
        adapted = json.load(handle).get("adapted_head")
    if not adapted:
        return None
    from safetensors.numpy import load_file

    tensors = load_file(os.path.join(folder, "model.safetensors"))
    head = {
        "layer": adapted["layer"],
        "weight": tensors["adapted_head.weight"].astype("float64").tolist(),
        "bias": tensors["adapted_head.bias"].astype("float64").tolist(),
    }
    with open(path, "w") as handle:
        json.dump(head, handle)
    return path


def adapted_head_summary(folder):
    """What the report says of an adapted folder's head: its layer, its labels' files and its held-out figures."""
    with open(os.path.join(folder, "config.json")) as handle:
        adapted = json.load(handle)["adapted_head"]
    summary = {key: adapted.get(key) for key in ("layer", "method", "base_model", "windows", "held_out")}
    if isinstance(summary["base_model"], dict) and summary["base_model"].get("name_or_path"):  # no machine's path
        summary["base_model"]["name_or_path"] = os.path.basename(
            os.path.normpath(summary["base_model"]["name_or_path"])
        )
    return summary


def quantize_model(folder):
    """The int8 model of the fastai preset's windows written into `folder`, calibrated on the real recordings."""
    calibration = sorted(os.path.join(REAL_AUDIO, name) for name in os.listdir(REAL_AUDIO) if name.endswith(".wav"))
    completed = subprocess.run(
        [sys.executable, "-m", "orcahello.cli", "quantize", folder, "--presets", "fastai", "--calibration", *calibration],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    if completed.returncode != 0:
        raise SystemExit(f"quantizing the model failed ({completed.returncode}):\n{completed.stderr[-3000:]}")


# ----------------------------------------------------------------------------------------------------------------
# Our side and the machine, each in a fresh pinned process (this script with --child)
# ----------------------------------------------------------------------------------------------------------------


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


def load_detector(model, threads):
    """Our pipeline as `orcahello detect` builds it (this package's classes, the folder's weights and settings)."""
    import torch
    from transformers.utils import logging

    from orcahello import models
    from process_memory_orcahello import return_large_buffers_to_the_system

    logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    return_large_buffers_to_the_system()  # as the command line's entry point does
    torch.set_num_threads(threads)
    return models.load_pipeline(model, "cpu")


def child_ours(args):
    """Our pipeline with one engine: load, warm up, then every recording timed; JSON on stdout."""
    started = time.perf_counter()
    detector = load_detector(args.model, args.threads)
    load_seconds = time.perf_counter() - started
    import torch
    import transformers

    clock = {"seconds": 0.0}
    window_logits = detector.window_logits

    def timed_window_logits(*call_args, **call_kwargs):  # the network alone: what production's hooks time
        start = time.perf_counter()
        try:
            return window_logits(*call_args, **call_kwargs)
        finally:
            clock["seconds"] += time.perf_counter() - start

    detector.window_logits = timed_window_logits

    def predict(path):
        return detector(path, return_timestamps=True, engine=args.engine, precision=args.precision, preset="fastai")

    started = time.perf_counter()
    predict(args.warmup)
    warmup_seconds = time.perf_counter() - started
    recordings = []
    for path in args.paths:
        clock["seconds"] = 0.0
        started = time.perf_counter()
        result = predict(path)
        seconds = time.perf_counter() - started
        recordings.append(
            {
                "recording": os.path.basename(path),
                "seconds": seconds,
                "model_seconds": clock["seconds"],
                "windows": len(result["windows"]),
                "rescored_fraction": detector.last_rescored_fraction,  # the fast mode's windows scored again
                "local_predictions": [int(value) for value in result["local_predictions"]],
                "local_confidences": [float(value) for value in result["local_confidences"]],
                "global_prediction": int(result["global_prediction"]),
                "global_confidence": float(result["global_confidence"]),
            }
        )
    scorer_names = sorted({scorer.name for scorer in detector.scorers})
    print(json.dumps({
        "contender": args.contender,
        "engine": scorer_names[0] if len(scorer_names) == 1 else scorer_names,
        "threads": args.threads,
        "torch_threads": torch.get_num_threads(),
        "cores": len(os.sched_getaffinity(0)),
        "load_seconds": load_seconds,
        "warmup_seconds": warmup_seconds,
        "recordings": recordings,
        "peak_rss_mb": peak_rss_mb(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
    }))  # fmt: skip


def count_multiply_adds(model, input_features):
    """Multiply-adds of one forward of `model` on `input_features`: every Conv2d and Linear, by forward hooks."""
    import torch
    from torch import nn

    counts = {"convolution": 0, "linear": 0}

    def count(layer, inputs, output):
        if isinstance(layer, nn.Conv2d):
            kernel = layer.kernel_size[0] * layer.kernel_size[1]
            counts["convolution"] += output.numel() * (layer.in_channels // layer.groups) * kernel
        else:
            counts["linear"] += output.numel() * layer.in_features

    hooks = [
        layer.register_forward_hook(count) for layer in model.modules() if isinstance(layer, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model(input_features)
    finally:
        for hook in hooks:
            hook.remove()
    return counts


def child_machine(args):
    """The float32 matrix-multiply peak on these cores, and the model's multiply-adds per window, full and ours."""
    import torch

    from engines_orcahello import LogitsOnly
    from padding_skipping_orcahello import PaddingSkippingClassifier, padded_frames

    torch.set_num_threads(args.threads)
    size = 2048
    left, right = torch.randn(size, size), torch.randn(size, size)
    torch.mm(left, right)  # warm-up
    best, deadline = float("inf"), time.perf_counter() + 2.0
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(left, right)
        best = min(best, time.perf_counter() - start)
    figures = {
        "threads": args.threads,
        "cores": len(os.sched_getaffinity(0)),
        "matmul_size": size,
        "matmul_peak_gflops": 2.0 * size**3 / best / 1e9,
        "torch": torch.__version__,
        "torch_config_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if args.matmul_only:
        print(json.dumps(figures))
        return
    detector = load_detector(args.model, args.threads)
    frontend = detector.resolve_parameters(preset="fastai").preprocess  # the preset's windowing and frontend
    features = torch.cat([chunk["input_features"] for chunk in detector.preprocess(args.warmup, **frontend)])[:1]
    model = detector.model.eval()
    full = count_multiply_adds(LogitsOnly(model), features)
    content = padded_frames(features, float(detector.feature_extractor.padding_value))
    skipping = PaddingSkippingClassifier(model, features.shape[-2], features.shape[-1], content)
    ours = count_multiply_adds(skipping, features)
    print(
        json.dumps(
            {
                **figures,
                "input_shape": list(features.shape),
                "content_frames": content,
                "multiply_adds_per_window_full": full["convolution"] + full["linear"],
                "multiply_adds_per_window_ours": ours["convolution"] + ours["linear"],
            }
        )
    )


CHILD_TASKS = {"ours": child_ours, "machine": child_machine}


# ----------------------------------------------------------------------------------------------------------------
# The run: alternating pinned processes, then the report
# ----------------------------------------------------------------------------------------------------------------


def pinned(command, threads, home=None):
    """Run `command` pinned to the first `threads` cores with `threads` threads; its JSON line, or a clear exit."""
    cores = sorted(os.sched_getaffinity(0))[:threads]
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                       OPENBLAS_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")  # fmt: skip
    if home:
        environment["HOME"] = home  # fastai_audio writes its unbounded spectrogram cache under ~/.fastai
    full = ["taskset", "-c", ",".join(map(str, cores)), *command]
    load_average = os.getloadavg()[0]
    completed = subprocess.run(full, capture_output=True, text=True, env=environment, cwd=REPO_ROOT)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(full)} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    # Other work on the machine slows every figure: the load around each run says how quiet it was.
    result["load_average_before_after"] = [round(load_average, 2), round(os.getloadavg()[0], 2)]
    return result


def contender_command(contender, threads, args, production_python, model, recordings, warmup, adapted_head=None):
    if contender == "production":
        head = ["--adapted-head", adapted_head] if adapted_head else []  # production runs the folder's head too
        return [production_python, DRIVER, "--legacy-src", LEGACY_SRC, "--model-dir", LEARNER_DIR, "--threads",
                str(threads), "--warmup", warmup, *head, "--recordings", *recordings]  # fmt: skip
    return [sys.executable, os.path.abspath(__file__), "--child", "ours", "--contender", contender, "--engine",
            OUR_SETTINGS[contender][0], "--precision", OUR_SETTINGS[contender][1], "--threads", str(threads), "--model", model, "--warmup", warmup,
            "--paths", *recordings]  # fmt: skip


def run_figures(run):
    """One process's totals: seconds per minute end to end and model only, windows."""
    windows = sum(item["windows"] for item in run["recordings"])
    return {
        "s_per_minute": seconds_per_minute(sum(item["seconds"] for item in run["recordings"]), windows),
        "model_s_per_minute": seconds_per_minute(sum(item["model_seconds"] for item in run["recordings"]), windows),
        "windows": windows,
    }


def summarize(runs, machine, threads_list, contenders=CONTENDERS):
    """Medians per contender and thread count, ratios to production, GFLOP/s, agreement, capacity."""
    rows = []
    for threads in threads_list:
        production_runs = [run for run in runs if run["contender"] == "production" and run["threads"] == threads]
        production_median = None
        for contender in contenders:
            mine = [run for run in runs if run["contender"] == contender and run["threads"] == threads]
            if not mine:
                continue
            figures = [run_figures(run) for run in mine]
            median = statistics.median(item["s_per_minute"] for item in figures)
            model_median = statistics.median(item["model_s_per_minute"] for item in figures)
            if contender == "production":
                production_median = median
                per_window = machine["multiply_adds_per_window_full"]
            else:
                per_window = machine["multiply_adds_per_window_ours"]
            row = {
                "contender": contender,
                "engine": mine[0].get("engine", "fastai v1 (torch)"),
                "threads": threads,
                "runs": len(mine),
                "s_per_minute": median,
                "s_per_minute_runs": [item["s_per_minute"] for item in figures],
                "ratio_production_over_this": production_median / median if production_median else None,
                "model_s_per_minute": model_median,
                "model_gflops": achieved_gflops(per_window, WINDOWS_PER_MINUTE, model_median),
                "matmul_peak_gflops": machine["peaks"][str(threads)],
                "peak_rss_mb": max(run["peak_rss_mb"] for run in mine),
                "load_s": statistics.median(run["load_seconds"] for run in mine),
                "warmup_s": statistics.median(run["warmup_seconds"] for run in mine),
            }
            row["model_fraction_of_matmul_peak"] = row["model_gflops"] / row["matmul_peak_gflops"]
            if threads == 1:
                row["hydrophones_per_core"] = hydrophones_per_core(median)
            rescored = [item["rescored_fraction"] for run in mine for item in run["recordings"]
                        if item.get("rescored_fraction") is not None]  # fmt: skip
            if rescored:
                row["rescored_fraction"] = statistics.mean(rescored)
            if contender != "production":
                pairs = []
                for run in mine:
                    reference = next(item for item in production_runs if item["repeat"] == run["repeat"])
                    pairs += [decision_agreement(theirs, ours)
                              for theirs, ours in zip(reference["recordings"], run["recordings"])]  # fmt: skip
                row["agreement_with_production"] = combine_agreements(pairs)
            rows.append(row)
    return rows


def print_table(rows, report):
    print(f"\n{report['cpu']['model_name']} ({', '.join(report['cpu']['vector_extensions'])})")
    print(
        f"{len(report['recordings'])} recordings of {report['seconds_per_recording']:.2f} s, "
        f"{report['repeats']} repeats; seconds per 60-s minute (59 windows), medians"
    )
    print(
        f"{'contender':>11} {'engine':>9} {'thr':>3} {'s/min':>7} {'ratio':>6} {'model s':>7} {'GFLOP/s':>7} "
        f"{'mm peak':>7} {'RSS MB':>6} {'agree s':>8} {'agree f':>7} {'hyd/core':>8} {'rescored':>8}"
    )
    for row in rows:
        agreement = row.get("agreement_with_production")
        seconds = f"{agreement['local_fraction_identical']:.1%}" if agreement else "-"
        files = f"{agreement['global_fraction_identical']:.0%}" if agreement else "-"
        capacity = f"{row['hydrophones_per_core']:.1f}" if "hydrophones_per_core" in row else ""
        rescored = f"{row['rescored_fraction']:.0%}" if "rescored_fraction" in row else ""
        print(
            f"{row['contender']:>11} {str(row['engine'])[:9]:>9} {row['threads']:>3} {row['s_per_minute']:>7.2f} "
            f"{row['ratio_production_over_this']:>6.2f} {row['model_s_per_minute']:>7.2f} {row['model_gflops']:>7.1f} "
            f"{row['matmul_peak_gflops']:>7.1f} {row['peak_rss_mb']:>6.0f} {seconds:>8} {files:>7} {capacity:>8} {rescored:>8}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="processes per contender and thread count (median)")
    parser.add_argument("--recordings", type=int, default=2, help=f"how many recordings (1-{len(RECORDING_SOURCES)})")
    parser.add_argument(
        "--seconds",
        type=float,
        default=30.0,
        help="length of each recording, before production's 512-sample surplus (default 30)",
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--quick", action="store_true", help="1 recording, 1 repeat: a smoke test")
    parser.add_argument("--model", default=None, help="our model folder (default: the stand-in learner, converted)")
    parser.add_argument(
        "--production-env",
        default=default_production_env(),
        help="production's venv (built here if it has no .complete)",
    )
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="results JSON")
    parser.add_argument("--child", default=None, choices=sorted(CHILD_TASKS), help=argparse.SUPPRESS)
    parser.add_argument("--contender", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--paths", nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--matmul-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.threads = args.threads[0]
        sys.path.insert(0, REPO_ROOT)
        CHILD_TASKS[args.child](args)
        return
    if args.quick:
        args.repeats, args.recordings = 1, 1
    if args.repeats < 1 or args.seconds < 3:
        parser.error("--repeats must be at least 1 and --seconds at least 3")
    available = len(os.sched_getaffinity(0))
    threads_list = [threads for threads in args.threads if 1 <= threads <= available]
    if not threads_list:
        parser.error(f"--threads: this process may use {available} cores")
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin each measurement to its cores")

    command_line = " ".join([os.path.relpath(sys.executable, REPO_ROOT), *sys.argv])
    production_python = ensure_production_env(args.production_env)
    sys.path.insert(0, REPO_ROOT)
    from engines_orcahello import cpu_has_int8_instructions, cpu_has_native_bfloat16

    runs_here = {"ours-fast": cpu_has_native_bfloat16(), "ours-int8": cpu_has_int8_instructions()}
    contenders = [contender for contender in CONTENDERS if runs_here.get(contender, True)]
    work = tempfile.mkdtemp(prefix="orcahello-side-by-side-")
    try:
        recordings, warmup = make_recordings(work, args.recordings, args.seconds)
        model = args.model or convert_learner(os.path.join(work, "model"))
        adapted_head = write_adapted_head(model, os.path.join(work, "adapted_head.json"))
        if "ours-int8" in contenders:
            quantize_model(model)
        machine = {"peaks": {}}
        for index, threads in enumerate(threads_list):  # the model's multiply-adds once, the peak per thread count
            figures = pinned([sys.executable, os.path.abspath(__file__), "--child", "machine", "--threads",
                              str(threads), "--model", model, "--warmup", warmup]
                             + (["--matmul-only"] if index else []), threads)  # fmt: skip
            machine["peaks"][str(threads)] = figures.pop("matmul_peak_gflops")
            machine.update(figures)
        runs = []
        for repeat in range(args.repeats):
            for threads in threads_list:
                for contender in contenders:  # alternating: production, ours, production, ours...
                    home = tempfile.mkdtemp(prefix="home-", dir=work)
                    command = contender_command(contender, threads, args, production_python, model, recordings,
                                                warmup, adapted_head)  # fmt: skip
                    run = pinned(command, threads, home=home if contender == "production" else None)
                    shutil.rmtree(home, ignore_errors=True)
                    run["repeat"] = repeat
                    runs.append(run)
                    print(
                        f"repeat {repeat + 1}/{args.repeats} threads {threads} {contender:>10}: "
                        f"{run_figures(run)['s_per_minute']:.2f} s per minute",
                        flush=True,
                    )
        rows = summarize(runs, machine, threads_list, contenders)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    with open("/proc/cpuinfo") as cpuinfo:
        cpu = cpu_description(cpuinfo.read())
    production_versions = next(run["versions"] for run in runs if run["contender"] == "production")
    our_versions = next(run["versions"] for run in runs if run["contender"] != "production")
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line,
        "cpu": {
            **cpu,
            "cores_available": available,
            "machine": platform.machine(),
            "torch_cpu_capability": machine["torch_config_cpu_capability"],
        },
        "versions": {"production": production_versions, "ours": our_versions},
        "recordings": [os.path.basename(path) for path in recordings],
        "seconds_per_recording": args.seconds + PRODUCTION_SURPLUS_SAMPLES / PRODUCTION_RATE,
        "repeats": args.repeats,
        "threads": threads_list,
        "pinned_with": "taskset, first N cores of this process's affinity",
        "model": {
            "learner": os.path.relpath(os.path.join(LEARNER_DIR, "model.pkl"), REPO_ROOT),
            "ours": os.path.basename(os.path.normpath(args.model)) if args.model else "the learner, converted",
            "adapted_head": adapted_head and adapted_head_summary(model),
            "multiply_adds_per_window_production": machine["multiply_adds_per_window_full"],
            "multiply_adds_per_window_ours": machine["multiply_adds_per_window_ours"],
            "input_shape": machine["input_shape"],
            "content_frames": machine["content_frames"],
        },
        "matmul_peak_gflops": {"size": machine["matmul_size"], "by_threads": machine["peaks"]},
        "load_average_after": os.getloadavg(),
        "results": rows,
        "runs": runs,
    }
    with open(args.output, "w") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    print_table(rows, report)
    print(f"\nwritten to {args.output}")
    disagreeing = [row for row in rows if "agreement_with_production" in row and (
        row["agreement_with_production"]["local_fraction_identical"] != 1.0
        or row["agreement_with_production"]["global_fraction_identical"] != 1.0)]  # fmt: skip
    if disagreeing:
        raise SystemExit(
            "decisions differ from production's for: "
            + ", ".join(f"{row['contender']} ({row['threads']} threads)" for row in disagreeing)
        )


if __name__ == "__main__":
    main()
