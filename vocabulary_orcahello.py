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
from typing import Any

HUB_MODEL_ID = "orcasound/orcahello-srkw-detector-v1"
WEIGHTS_FILE = "model.safetensors"
# The config key set on a model folder whose weights are the synthetic stand-in (`scripts/fetch_model.py` offline).
SYNTHETIC_WEIGHTS_KEY = "synthetic_weights"
# What every result and output made with such weights says (the pipeline's results, every file the commands write).
SYNTHETIC_WEIGHTS_WARNING = (
    "the model's weights are the SYNTHETIC stand-in (trained on synthetic audio, for testing): these scores mean "
    "nothing on real recordings"
)

# How per-window probabilities become a file's decision: production's (`"orcahello"`) or the upstream port's.
AGGREGATION_STRATEGIES = ("orcahello", "mean_thresholded", "mean_top_k")
# What runs the model: `"auto"` is the fastest faithful engine installed (OpenVINO, ONNX Runtime, then PyTorch).
ENGINES = ("auto", "openvino", "onnxruntime", "torch")
PRECISIONS = ("float32", "bfloat16", "float16", "int8")
# The layers whose output can be had as a window's embedding (`engines_orcahello.layer_outputs`): the body's
# concat-pooled features, or what the head's last linear layer classifies.
EMBEDDING_LAYERS = ("pooled", "head")

# The two inference behaviours of the same weights, as named sets of the inference fields. This is the one place
# that defines them: the config, the pipeline, the command line, the handler and the converter all read it.
#
# "fastai": production OrcaHello 2020-2026 (fastai v1 + fastai_audio), reproduced to the fixtures' numbers.
# "v1": upstream's pure-PyTorch port as its live system runs it since 2026-03: the windows of the `config.yaml` it
#   ships on the Hub and the file-level rule of `InferenceSystem/model/config.yaml` (orcasound/orcahello at
#   423ff5b3): `global_prediction` with `mean_top_k` 2, a window positive above 0.5, the file at a mean of 0.6.
#   The port's earlier count rule (3 positive windows) stays selectable by its fields (aggregation "orcahello",
#   smoothing off).
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
        "aggregation": "mean_top_k",
        "local_threshold": 0.5,
        "global_count_threshold": 3,
        "global_threshold": 0.6,
        "top_k_windows": 2,
    },
}
DEFAULT_PRESET = "fastai"
# The fields a preset sets, in the order they are documented and recorded.
INFERENCE_FIELDS = tuple(INFERENCE_PRESETS[DEFAULT_PRESET])
# The fields that turn window probabilities into decisions (the rest say how the windows are cut and featurized),
# plus the floor on a positive file's confidence and the positive seconds a file needs, which no preset sets (0:
# off), and the type of each. This is their
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
    "min_positive_seconds": int,
}
DECISION_FIELDS = tuple(DECISION_FIELD_TYPES)
DEFAULT_MIN_GLOBAL_CONFIDENCE = 0.0
# 0: the file needs no positive seconds of its own; the count rule counts rows (`global_count_threshold`).
DEFAULT_MIN_POSITIVE_SECONDS = 0

# Every score and confidence OrcaHello writes is on a 0-1 scale, `global_confidence` included. Production reported
# its global confidence on a 0-100 scale (`FastAIModel.predict`'s `global_confidence`, its portal's
# `whaleFoundConfidence`): results that reproduce production's result document also carry that value under this
# name, said to be production's legacy scale. Results saved by earlier versions lack it, and their
# `global_confidence` is 0-100 under the count rule (`orcahello.saved_results` reads them).
GLOBAL_CONFIDENCE_PERCENT = "global_confidence_percent"

# The names every output gives the same things: detect's JSON (its `windows` and `detections`) and summary.csv,
# batch's Parquet tables, embed's Parquet tables and live's minute files (docs/outputs.md lists them). Production's
# own formats keep production's names where they are reproduced: the scoring CSV (`wav_filename`, `start_time_s`,
# `duration_s`, `confidence`) and the result's `submission` rows, and Raven's and Audacity's tables.
OUTPUT_VOCABULARY = {
    "file": "the recording as it was given: a path or a URL",
    "window_index": "a window's position in its recording, from 0",
    "start": "where a window or detection starts, in seconds from the recording's start",
    "end": "where a window or detection ends, in seconds from the recording's start",
    "start_utc": "when a window or detection starts, in UTC (empty when the input does not say)",
    "end_utc": "when a window or detection ends, in UTC (empty when the input does not say)",
    "start_time_utc": "when the recording starts, in UTC (empty when the input does not say)",
    "duration_s": "the recording's length in seconds",
    "score": "a window's P(call), 0-1",
    "global_prediction": "the recording's decision: 1 positive, 0 negative",
    "global_confidence": "the recording's confidence, 0-1 under every rule",
    "positive_seconds": "seconds covered by the recording's positive rows, merged",
    "site": "the hydrophone site a site table or a folder name gives the recording",
    "model": "the model's identity: name or path, revision, weights' hash, synthetic stand-in",
}
FILE_COLUMN, START_COLUMN, END_COLUMN, SCORE_COLUMN = "file", "start", "end", "score"
START_UTC_COLUMN, RECORDING_START_UTC_COLUMN = "start_utc", "start_time_utc"

# What a setting may hold beyond its type, for every source of settings alike (the command line, a model folder's
# config, upstream's Hub layout, a site table, a hydrophone config): `check_setting` is the one check. Every
# decision number with a fraction is a threshold on a 0-1 confidence; a count is at least its minimum; the window
# and hop are bounded so that a typo (a hop of 1e-6 s: a million windows a second) is refused rather than run.
SETTING_CHOICES = {"aggregation": AGGREGATION_STRATEGIES}
COUNT_MINIMUMS = {"top_k_windows": 1}
# The most windows a count can usefully name: a day of 1-s hops. Larger is a typo, not a rule.
MAX_COUNT = 86400
# 0.1 s is ten times production's windows per second; a window longer than a minute is nothing a 2-s-trained model
# scores.
SECONDS_RANGES = {"window_seconds": (0.5, 60.0), "hop_seconds": (0.1, 60.0)}


def unit_scale_error(name: str, value: Any) -> str:
    """
    The one line refusing `value` for `name`, a threshold on a 0-1 confidence: one that reads as production's 0-100
    scale (from 2 to 100: 1.5 is more likely a slip than 1.5 %) is told its 0-1 form, e.g. "--min-global-confidence must be a number from 0 to 1, got 60
    (every confidence is 0-1: production's 60 on its 0-100 scale is 0.6)".
    """
    message = f"{name} must be a number from 0 to 1, got {value!r}"
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if number and 2.0 <= value <= 100.0:
        message += f" (every confidence is 0-1: production's {value:g} on its 0-100 scale is {value / 100:g})"
    return message


def check_setting(field: str, value: Any, name: str | None = None) -> bool | str | int | float:
    """
    `value` for the inference or decision field `field` (`INFERENCE_FIELDS`, `DECISION_FIELDS`) in the field's
    type, when it is one the model and the decision can use; else a one-line `ValueError` calling it `name`
    (default: the field), e.g. "config.yaml: global_prediction.pred_global_threshold must be a number from 0 to 1,
    got 1.5". NaN, infinities, negative and out-of-range values are refused.
    """
    name = name or field
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if field in HERTZ_RANGES:
        lowest_hz, highest_hz = HERTZ_RANGES[field]
        if not number or not float(value).is_integer() or not lowest_hz <= value <= highest_hz:  # refuses nan, inf
            raise ValueError(f"{name} must be a whole number of Hz from {lowest_hz} to {highest_hz}, got {value!r}")
        return int(value)
    if field in WHOLE_NUMBER_RANGES:
        lowest, highest = WHOLE_NUMBER_RANGES[field]
        if not number or not float(value).is_integer() or not lowest <= value <= highest:  # refuses nan, inf
            raise ValueError(f"{name} must be a whole number from {lowest} to {highest}, got {value!r}")
        return int(value)
    if field in NUMBER_RANGES:
        low, high = NUMBER_RANGES[field]
        if not number or not low <= value <= high:  # also refuses nan
            raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
        return float(value)
    if field in SECONDS_RANGES:
        low, high = SECONDS_RANGES[field]
        if not number or not low <= value <= high:  # also refuses nan
            raise ValueError(f"{name} must be a number of seconds from {low:g} to {high:g}, got {value!r}")
        return float(value)
    kind = DECISION_FIELD_TYPES.get(field, bool)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if kind is str:
        if value not in SETTING_CHOICES[field]:
            raise ValueError(f"{name} must be one of {', '.join(SETTING_CHOICES[field])}, got {value!r}")
        return value
    if kind is float:
        if not number or not 0.0 <= value <= 1.0:  # also refuses nan
            raise ValueError(unit_scale_error(name, value))
        return float(value)
    minimum = COUNT_MINIMUMS.get(field, 0)
    if not number or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}, got {value!r}")
    if value > MAX_COUNT:
        raise ValueError(f"{name} must be a whole number of at most {MAX_COUNT}, got {value!r}")
    return value


# Windows per forward pass when the caller gives none. On CPU small batches are as fast per window as large ones
# (OpenVINO, ResNet50: 24-25 ms a window at 2 threads from 4 to 32) and hold less memory (about 35 MB a window of
# activations); GPUs need larger batches to be kept busy.
DEFAULT_BATCH_SIZE = {"cpu": 8, "other": 32}
# The most windows per forward pass a command line may ask for: 256 windows hold about 9 GB of ResNet50 activations
# on CPU, 8x a GPU's default; `--batch-size 100000` took 7 GB before failing.
MAX_BATCH_SIZE = 256

# The sample rate that carries the whole band the model sees. The model sees 0-10 kHz: production resamples every
# window to 20 kHz and its mel filterbank, built for 16 kHz, spreads its filters over the whole 0-10 kHz of that audio
# (SPEC.md section 1, step 6). A recording below 20 kHz carries nothing above its Nyquist frequency (R / 2), so the
# top filters see only resampling's zeros (of the 238 filters that are not empty by design, 19 lie wholly above
# 8 kHz, 76 above 4 kHz): such a recording is scored (production upsampled and scored 8- and 16-kHz audio, as
# BirdNET-Analyzer and OpenSoundscape do) with a warning naming the band the model cannot hear. The endpoint handler
# refuses it (its stricter limit).
FULL_BAND_SAMPLING_RATE = 20000
# The lowest sample rate scored at all: it bounds the work per byte of input (a WAV whose header says 1 Hz made 2,000
# samples into 1,999 windows), and below 8 kHz a recording carries less than the lowest 4 kHz of the model's band.
MIN_SAMPLING_RATE = 8000
# Float samples are full scale at +-1. Decoded MP3/AAC and mixed float audio overshoot it by a few dB (intersample
# peaks), which production's int16 conversion clips harmlessly; a float sample beyond +-2 (6 dB over full scale) is
# no audio scaled to [-1, 1] (integer PCM stored as floats, a broken writer), and such a recording is scored with a
# warning (`results_orcahello.float_scale_warning`): production's frontend clips it to a full-scale square wave,
# which the model takes for a call, and the v1 preset's peak normalisation scales the rest of the recording by it.
FLOAT_SAMPLE_WARNING_PEAK = 2.0
# The rate a model folder's feature extractor resamples every window to (`sampling_rate` in its
# preprocessor_config.json; production's is 20 kHz): from the lowest rate scored to the highest a recorder writes,
# so that a typo (1e9 Hz: a window of 2e9 samples) is refused by `check_setting` rather than run.
HERTZ_RANGES = {"sampling_rate": (MIN_SAMPLING_RATE, 192000), "filterbank_sampling_rate": (MIN_SAMPLING_RATE, 192000)}
# The rest of a feature extractor's settings (production's: 256 mel filters, n_fft 2560, hop 256, 312 frames, 0-10 kHz,
# top_db 100, padding 0 dB), bounded so that a folder's typo cannot cost unbounded work or memory: `hop_length: 1`
# made 40,000 STFT frames of a 2-s window, `n_fft: 1e9` a filterbank of 5e8 bins per filter.
WHOLE_NUMBER_RANGES = {
    "feature_size": (1, 1024),
    "n_fft": (16, 65536),
    "hop_length": (16, 65536),
    "num_frames": (1, 4096),
}
NUMBER_RANGES = {
    "f_min": (0.0, 96000.0),
    "f_max": (1.0, 96000.0),
    "top_db": (1.0, 200.0),
    "padding_value": (-200.0, 200.0),
}

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
