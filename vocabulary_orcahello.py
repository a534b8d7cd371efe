# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The names and defaults every part of OrcaHello shares, in one torch-free place.

The Hub's custom code (configuration, feature extractor, pipeline, HLS), the `orcahello` package (command line,
batch, live, writers) and the endpoint handler all read these: a name written here is written nowhere else. The
module imports the standard library only, so the command line can parse its options and validate its inputs
before it loads torch. It also holds the one process-wide setting every entry point makes first
(`return_large_buffers_to_the_system`).
"""

import contextlib
import ctypes
import functools
import os
import sys
import tempfile

HUB_MODEL_ID = "orcasound/orcahello-srkw-detector-v1"
WEIGHTS_FILE = "model.safetensors"
# The config key set on a model folder whose weights are the synthetic stand-in (`scripts/fetch_model.py` offline).
SYNTHETIC_WEIGHTS_KEY = "synthetic_weights"

# How per-window probabilities become a file's decision: production's (`"orcahello"`) or the upstream port's.
AGGREGATION_STRATEGIES = ("orcahello", "mean_thresholded", "mean_top_k")
# What runs the model: `"auto"` is the fastest faithful engine installed (OpenVINO, ONNX Runtime, then PyTorch).
ENGINES = ("auto", "openvino", "onnxruntime", "torch")
PRECISIONS = ("float32", "bfloat16", "float16")

# The two inference behaviours of the same weights, as named sets of the inference fields. This is the one place
# that defines them: the config, the pipeline, the command line, the handler and the converter all read it.
#
# "fastai": production OrcaHello 2020-2026 (fastai v1 + fastai_audio), reproduced to the fixtures' numbers.
# "v1": upstream's pure-PyTorch port with the `config.yaml` it ships on the Hub (upstream's live system since 2026).
INFERENCE_PRESETS = {
    "fastai": {
        "window_seconds": 2.0,
        "hop_seconds": 1.0,
        "whole_recording_frontend": False,
        "peak_normalize": False,
        "strict_segments": True,
        "smoothing": True,
        "aggregation": "orcahello",
        "local_threshold": 0.5,
        "global_count_threshold": 3,
        "global_threshold": 0.6,
        "top_k_windows": 3,
    },
    "v1": {
        "window_seconds": 3.0,
        "hop_seconds": 2.0,
        "whole_recording_frontend": True,
        "peak_normalize": True,
        "strict_segments": True,
        "smoothing": False,
        "aggregation": "orcahello",
        "local_threshold": 0.5,
        "global_count_threshold": 3,
        "global_threshold": 0.6,
        "top_k_windows": 3,
    },
}
DEFAULT_PRESET = "fastai"
# The fields a preset sets, in the order they are documented and recorded.
INFERENCE_FIELDS = tuple(INFERENCE_PRESETS[DEFAULT_PRESET])
# The fields that turn window probabilities into decisions (the rest say how the windows are cut and featurized),
# plus the floor on a positive file's confidence, which no preset sets (0: off), and the type of each. This is their
# one definition: `results_orcahello.DecisionParameters`, the endpoint handler's parameters, the command line's
# options, the per-site tables and the run records all take the fields from here.
DECISION_FIELD_TYPES = {
    "smoothing": bool,
    "aggregation": str,
    "local_threshold": float,
    "global_count_threshold": int,
    "global_threshold": float,
    "top_k_windows": int,
    "min_global_confidence": float,
}
DECISION_FIELDS = tuple(DECISION_FIELD_TYPES)
DEFAULT_MIN_GLOBAL_CONFIDENCE = 0.0

# Windows per forward pass when the caller gives none. On CPU small batches are as fast per window as large ones
# (OpenVINO, ResNet50: 24-25 ms a window at 2 threads from 4 to 32) and hold less memory (about 35 MB a window of
# activations); GPUs need larger batches to be kept busy.
DEFAULT_BATCH_SIZE = {"cpu": 8, "other": 32}

# The lowest sample rate scored. The model sees 0-10 kHz: production resamples every window to 20 kHz and its mel
# filterbank, built for 16 kHz, spreads its filters over the whole 0-10 kHz of that audio (SPEC.md section 1, step
# 6). A recording below 20 kHz carries nothing above its Nyquist frequency, so the top filters see only resampling's
# zeros (of the 238 filters that are not empty by design, 19 lie wholly above 8 kHz, 76 above 4 kHz, and more are
# cut): spectrograms the model never saw, and scores that mean nothing. Refusing them also bounds the work per
# byte of input: a WAV whose header says 1 Hz made 2,000 samples into 1,999 windows.
MIN_SAMPLING_RATE = 20000

# Inputs: audio files soundfile reads, and Orcasound's HLS streams (an `.m3u8` playlist, or `.ts` segments).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
PLAYLIST_SUFFIX = ".m3u8"
SEGMENT_SUFFIX = ".ts"


def is_url(source):
    """Whether `source` names an HTTP(S) resource (the only URLs OrcaHello fetches)."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def is_audio_file_name(name, suffixes=AUDIO_SUFFIXES):
    """
    Whether a file called `name` is audio OrcaHello reads: one of `suffixes` (any case), and not a hidden file
    ("._clip.wav" AppleDouble files, which macOS leaves on SD cards, are not audio).
    """
    return name.lower().endswith(tuple(suffixes)) and not name.startswith(".")


# Atomic writes. What an output is called while it is being written (see `temporary_file_beside`).
PARTIAL_SUFFIX = ".orcahello-partial"
# The process's umask (read once, at import: setting it back is not thread-safe later).
PROCESS_UMASK = os.umask(0o022)
os.umask(PROCESS_UMASK)


@contextlib.contextmanager
def temporary_file_beside(path):
    """
    A new, uniquely named file beside `path` to write before renaming it to `path` (`tempfile.mkstemp`: never a name
    someone else's file has): `.<name>.<random>.orcahello-partial`, hidden. Removed when the block fails, so that
    an interrupted run never leaves a half-written output that looks finished.
    """
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary_path = tempfile.mkstemp(prefix=f".{name}.", suffix=PARTIAL_SUFFIX, dir=folder)
    os.close(handle)
    os.chmod(temporary_path, 0o666 & ~PROCESS_UMASK)  # mkstemp makes it private; outputs get the usual mode
    try:
        yield temporary_path
    finally:
        if os.path.exists(temporary_path):
            os.remove(temporary_path)


def write_atomically(path, data):
    """
    Write `data` (str as UTF-8, or bytes) to `path` through a temporary file beside it, fsync and a rename: readers
    see the old file or the new one, never half of one, even after a power loss.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with temporary_file_beside(path) as temporary_path:
        with open(temporary_path, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not reach the disk before the content
        os.replace(temporary_path, path)


def replace_atomically(temporary_path, path):
    """Move a finished temporary file (from `temporary_file_beside`) over `path`, its content flushed to disk first."""
    with open(temporary_path, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary_path, path)


# Process memory. Buffers of this size and more are handed straight back to the system when they are freed (see
# `return_large_buffers_to_the_system`).
MMAP_THRESHOLD_BYTES = 1 << 20
_fixed_mmap_threshold = None  # set by return_large_buffers_to_the_system


def return_large_buffers_to_the_system() -> None:
    """
    Make glibc hand buffers of `MMAP_THRESHOLD_BYTES` and more straight back to the system when they are freed.

    Scoring allocates and frees buffers of tens of MB for every block of windows. glibc's default raises its mmap
    threshold after each such free, so later buffers come from the heap and fragment it: a process scoring a
    60-minute file ended 330 MB above one scoring a 10-minute file, and a live process scoring one minute after
    another would keep growing. With the threshold fixed at 1 MB, peak memory is the same for 5 and 20 minutes of
    audio (at 4 or 16 MB it still grew, by 230 MB from 5 to 20 minutes: the per-window results kept until the end
    of a file sit between the freed buffers). The frontend keeps its per-window buffers under 1 MB, so that they are
    reused rather than mapped and page-faulted in again for every window. This is a process-wide setting
    (`mallopt`), so the processes' entry points make it (the command line, the endpoint handler, batch workers),
    never a library call; it is a no-op where glibc is not the C library.
    """
    global _fixed_mmap_threshold
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        _fixed_mmap_threshold = MMAP_THRESHOLD_BYTES


def fixed_mmap_threshold() -> int | None:
    """The mmap threshold `return_large_buffers_to_the_system` fixed in this process; None when it was not called."""
    return _fixed_mmap_threshold


# glibc's mallopt parameters (malloc.h) and the values glibc's own adaptive mode reaches after large frees.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_DEFAULT_TRIM_THRESHOLD_BYTES = 128 * 1024
_ADAPTIVE_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems
_ADAPTIVE_TRIM_THRESHOLD_BYTES = 2 * _ADAPTIVE_MMAP_THRESHOLD_BYTES


@functools.cache
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018  (musl and others: AttributeError)
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def heap_reused_for_activations(process_mmap_threshold):
    """
    Within the block, let PyTorch's CPU activation buffers (up to 32 MB) come from the heap and stay there when
    freed, as glibc's adaptive defaults do; afterwards, put back the fixed `process_mmap_threshold` that a process
    set to keep its memory flat (`return_large_buffers_to_the_system`), and glibc's default trim
    threshold that goes with it. Does nothing when `process_mmap_threshold` is None or glibc is not the C library.

    Under that fixed 1 MB threshold every activation of every batch is a fresh `mmap`, page-faulted in and unmapped
    again: the eager ResNet50 spent about 40% of its time on it (1.37 s against 0.86 s CPU time for 8 windows, 1
    thread). The heap kept between batches is the forward pass's own peak, which the process reaches anyway.
    """
    libc = _glibc() if process_mmap_threshold is not None else None
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _ADAPTIVE_MMAP_THRESHOLD_BYTES)
    libc.mallopt(_M_TRIM_THRESHOLD, _ADAPTIVE_TRIM_THRESHOLD_BYTES)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, int(process_mmap_threshold))
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD_BYTES)
