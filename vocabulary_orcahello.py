# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The names and defaults every part of OrcaHello shares, in one torch-free place.

The Hub's custom code (configuration, feature extractor, pipeline, HLS), the `orcahello` package (command line,
batch, live, writers) and the endpoint handler all read these: a name written here is written nowhere else. The
module imports nothing, so the command line can parse its options and validate its inputs before it loads torch,
and it does nothing when it is imported: names and values only. (Writing files atomically is
`orcahello.atomic_files`'s job; the process's memory settings are `process_memory_orcahello`'s.)
"""

from collections.abc import Iterable

HUB_MODEL_ID = "orcasound/orcahello-srkw-detector-v1"
WEIGHTS_FILE = "model.safetensors"
# The config key set on a model folder whose weights are the synthetic stand-in (`scripts/fetch_model.py` offline).
SYNTHETIC_WEIGHTS_KEY = "synthetic_weights"

# How per-window probabilities become a file's decision: production's (`"orcahello"`) or the upstream port's.
AGGREGATION_STRATEGIES = ("orcahello", "mean_thresholded", "mean_top_k")
# What runs the model: `"auto"` is the fastest faithful engine installed (OpenVINO, ONNX Runtime, then PyTorch).
ENGINES = ("auto", "openvino", "onnxruntime", "torch")
PRECISIONS = ("float32", "bfloat16", "float16")
# The layers whose output can be had as a window's embedding (`engines_orcahello.layer_outputs`): the body's
# concat-pooled features, or what the head's last linear layer classifies.
EMBEDDING_LAYERS = ("pooled", "head")

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


def is_url(source: object) -> bool:
    """Whether `source` names an HTTP(S) resource (the only URLs OrcaHello fetches)."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def is_audio_file_name(name: str, suffixes: Iterable[str] = AUDIO_SUFFIXES) -> bool:
    """
    Whether a file called `name` is audio OrcaHello reads: one of `suffixes` (any case), and not a hidden file
    ("._clip.wav" AppleDouble files, which macOS leaves on SD cards, are not audio).
    """
    return name.lower().endswith(tuple(suffixes)) and not name.startswith(".")
