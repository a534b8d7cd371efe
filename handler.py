# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Custom handler for Hugging Face Inference Endpoints: serves the OrcaHello detector's whole-recording pipeline.

Inference Endpoints import `EndpointHandler` from `handler.py` at the root of the model repository, construct it
once with the repository's local folder, and call it with every request's deserialized body. This file imports only
the standard library, numpy, torch, transformers (and soundfile, which the pipeline needs too, to read headers), the
shared names of `vocabulary_orcahello` and the process's memory setting (`process_memory_orcahello`), both beside it
in the model folder. The model's own code (feature extractor, pipeline) is this package's when
the `orcahello` package is installed (as the `orcahello` commands load it), else the model folder's, through
`trust_remote_code=True`: so the handler works wherever it sits next to a model folder (see `load_detector`).

Requests (JSON, or an audio body: the endpoint turns `Content-Type: audio/*` bodies into `{"inputs": <bytes>}`):

```json
{"inputs": "<base64 of a WAV/FLAC/OGG/MP3 file>", "parameters": {"return_timestamps": true, "local_threshold": 0.7}}
{"inputs": [0.0, 0.01, ...], "parameters": {"sampling_rate": 48000}}
{"inputs": {"array": [0.0, 0.01, ...], "sampling_rate": 48000}}
{"inputs": ["<base64 file 1>", "<base64 file 2>"]}
{"inputs": "<base64 file>", "parameters": {"preset": "v1", "return_timestamps": true}}
```

`parameters` are the pipeline's call parameters (see `PARAMETER_TYPES`); values may be strings, as query-string
parameters arrive (`"0.7"`, `"true"`).

**Bounded work.** A public endpoint's caller must not choose its cost. Before anything is decoded, every request is
checked against limits the deployment sets (constructor arguments, else environment variables, else the defaults
below): its decoded samples (`max_decoded_samples`: channels x rate x seconds from each header, all inputs together;
`max_whole_recording_samples` when its settings read each recording whole, as the v1 preset does), its payload (`max_payload_bytes`: file bytes, base64 text, or samples counted as float32), its total
audio duration (`max_audio_seconds`, read from each file's header with `soundfile.info`, or samples / rate), each
input's sample rate (at least `FULL_BAND_SAMPLING_RATE`, 20 kHz, stricter than the pipeline's 8-kHz floor: an
endpoint answers for full-band audio only; at most `max_sampling_rate`) and
`batch_size` (at most `max_batch_size`; the pipeline's default, 8 on CPU and 32 on GPUs, when absent); every other
parameter is checked as the pipeline resolves it, by the rules every source of settings goes through. Parameters
that multiply the work per second of audio beyond the model's own windowing (a hop shorter than the model's, any
other window length: any `*_seconds` windowing parameter that differs from what the model folder's config gives) are
refused unless the deployment sets `allow_custom_windowing`. JSON samples must be numbers (booleans and numeric
strings are refused). The response is the pipeline's output, JSON-serializable: the
`[{"label", "score"}, ...]` list (decision first), or with `return_timestamps` the full result (production's
`global_prediction`, `global_confidence` (0-1; production's 0-100 value as `global_confidence_percent`), `local_predictions`, `local_confidences`, `submission`, plus `windows`,
`detections`, `warnings`, `parameters`); a list of those for a batch. A bad request raises `ValueError` with a
one-line message saying what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import io
import math
import os
import re
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from transformers import pipeline

from process_memory_orcahello import return_large_buffers_to_the_system
from vocabulary_orcahello import DECISION_FIELD_TYPES, FULL_BAND_SAMPLING_RATE

if TYPE_CHECKING:
    from pipeline_orcahello import OrcaHelloAudioClassificationPipeline

# The pipeline's call parameters and their types. Everything else is refused, so that a typo ("treshold") is an
# error instead of a silently ignored setting.
PARAMETER_TYPES = {
    "return_timestamps": bool,
    # Every decision field (thresholds, aggregation, smoothing, the confidence floor), as the vocabulary types it.
    **DECISION_FIELD_TYPES,
    "top_k": int,
    "function_to_apply": str,
    "window_seconds": float,
    "hop_seconds": float,
    # The inference preset ("fastai" or "v1") and its other fields (configuration_orcahello.INFERENCE_PRESETS).
    "preset": str,
    "whole_recording_frontend": bool,
    "peak_normalize": bool,
    "strict_segments": bool,
    "sampling_rate": int,
    "batch_size": int,
    "engine": str,
    "precision": str,
}
TRUE_STRINGS = ("true", "1", "yes", "on")
FALSE_STRINGS = ("false", "0", "no", "off")
# "data:audio/wav;base64," in front of the base64 text, as browsers' FileReader.readAsDataURL writes it.
DATA_URL_PREFIX = re.compile(r"^data:[^,]*;base64,", re.IGNORECASE)

# The limits of one request: `EndpointHandler`'s argument, else this environment variable, else the default.
# Ten minutes of audio is ten times a production clip; 128 MiB holds ten minutes of 48 kHz stereo 16-bit WAV; 192 kHz
# covers the hydrophones' usual rates (Orcasound: 48 kHz); 64 windows a forward pass is 2x a GPU's default batch.
LIMIT_DEFAULTS = {
    "max_audio_seconds": ("ORCAHELLO_MAX_AUDIO_SECONDS", 600.0),
    "max_payload_bytes": ("ORCAHELLO_MAX_PAYLOAD_BYTES", 128 * 1024 * 1024),
    "max_sampling_rate": ("ORCAHELLO_MAX_SAMPLING_RATE", 192000),
    "max_batch_size": ("ORCAHELLO_MAX_BATCH_SIZE", 64),
    "allow_custom_windowing": ("ORCAHELLO_ALLOW_CUSTOM_WINDOWING", False),
    # Decoded samples (channels x rate x seconds, all inputs together): what reading, downmixing and resampling cost.
    # Seconds and rate alone let 8 channels at 192 kHz through (a 954-KB FLAC decoding to 3.7 GB of float32). The
    # default is 600 s of stereo at 192 kHz, the largest request the other limits meant to allow.
    "max_decoded_samples": ("ORCAHELLO_MAX_DECODED_SAMPLES", 2 * 192000 * 600),
    # The whole-recording frontend (the v1 preset's, or `whole_recording_frontend: true`) holds the whole decoded
    # recording and its resampled copies at once, about 11 bytes a decoded sample (10 GB for that FLAC): it gets a
    # tighter bound, 600 s of stereo at 48 kHz (Orcasound's rate), about 0.6 GB.
    "max_whole_recording_samples": ("ORCAHELLO_MAX_WHOLE_RECORDING_SAMPLES", 2 * 48000 * 600),
}
# Python's reprs of objects ("<_io.BytesIO object at 0x7f...>") in a library's message: a caller learns nothing from
# them but the server's heap layout.
HEAP_ADDRESS = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def coerce_parameter(name: str, value: object) -> bool | str | int | float:
    """`value` as the type the pipeline expects for `name`; strings are parsed (query-string parameters)."""
    if name not in PARAMETER_TYPES:
        raise ValueError(f"unknown parameter {name!r}; accepted parameters: {', '.join(sorted(PARAMETER_TYPES))}")
    expected = PARAMETER_TYPES[name]
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in TRUE_STRINGS + FALSE_STRINGS:
            return value.strip().lower() in TRUE_STRINGS
        raise ValueError(f"parameter {name!r} must be true or false, got {value!r}")
    if expected is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"parameter {name!r} must be a string, got {value!r}")
    # Numbers: booleans are refused (JSON true is not a threshold), strings are parsed.
    if isinstance(value, bool):
        raise ValueError(f"parameter {name!r} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"parameter {name!r} must be a number, got {value!r}") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"parameter {name!r} must be a finite number, got {value!r}")
    if expected is int:
        if float(value) != int(value):
            raise ValueError(f"parameter {name!r} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def decode_base64_audio(text: str) -> bytes:
    """The bytes of an audio file sent as base64 text (optionally a `data:...;base64,` URL)."""
    payload = DATA_URL_PREFIX.sub("", text.strip(), count=1)
    try:
        # validate=True: stray characters are an error rather than silently dropped (which would corrupt the file).
        audio_bytes = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "'inputs' is a string but not base64: send the audio file's bytes base64-encoded, or post the file "
            "itself with Content-Type: audio/wav (file paths and URLs are not read)"
        ) from None
    if not audio_bytes:
        raise ValueError("'inputs' is an empty string: no audio")
    return audio_bytes


def check_numbers(samples: list | tuple, what: str) -> None:
    """
    Refuse anything in a JSON sample list but numbers: numpy would quietly read `true` as 1.0 and `"0.5"` as 0.5.
    `set(map(type, ...))` runs at C speed, so checking a long list costs little next to parsing its JSON.
    """
    rows = samples if samples and isinstance(samples[0], (list, tuple)) else [samples]
    found: set[type] = set()
    for row in rows:
        if not isinstance(row, (list, tuple)):
            raise ValueError(f"{what} mixes numbers and lists: send [...] or [[...], ...] per channel")
        found.update(map(type, row))
    wrong = found - {int, float}
    if wrong:
        names = ", ".join(sorted("boolean" if kind is bool else kind.__name__ for kind in wrong))
        raise ValueError(f'{what} must hold numbers only, found {names} (send 0.5, not "0.5" or true)')


def samples_from_json(samples: object, what: str = "'inputs'") -> np.ndarray:
    """A JSON list of float samples (`[...]`, or `[[...], [...]]` per channel) as a float32 array."""
    if isinstance(samples, (list, tuple)):
        check_numbers(samples, what)
    try:
        array = np.asarray(samples, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(
            f"{what} must be a list of numbers (one channel) or a list of equal-length lists (one per channel)"
        ) from None
    if array.ndim not in (1, 2) or array.size == 0:
        raise ValueError(f"{what} must hold samples as [...] or [[...], ...] per channel, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or infinite samples")
    peak = float(np.abs(array).max())
    if peak > 1.0:
        # Integer PCM sent as JSON numbers would be clipped to full scale by the float -> PCM conversion.
        raise ValueError(
            f"{what} holds samples up to {peak:g}: JSON samples are read as floats in [-1, 1]; send integer PCM "
            f"as a WAV or FLAC file instead"
        )
    return array


def is_sample_list(value: object) -> bool:
    """A list of numbers, or of lists of numbers (channels): audio samples rather than a batch of files."""
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and (
            # A boolean first is refused as a sample (`check_numbers`), not taken for a batch of files.
            isinstance(value[0], (int, float)) or isinstance(value[0], (list, tuple))
        )
    )


def audio_input(item: object, sampling_rate: int | None) -> bytes | dict[str, Any]:
    """One request input as something the pipeline accepts: file bytes, or `{"array", "sampling_rate"}`."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        if len(item) == 0:
            raise ValueError("'inputs' is empty: no audio bytes")
        return bytes(item)
    if isinstance(item, str):
        return decode_base64_audio(item)
    if isinstance(item, (np.ndarray, torch.Tensor)) or is_sample_list(item):
        if sampling_rate is None:
            raise ValueError(
                'audio samples need their rate: add "parameters": {"sampling_rate": 48000}, or send '
                '{"array": [...], "sampling_rate": 48000}'
            )
        array = item if isinstance(item, (np.ndarray, torch.Tensor)) else samples_from_json(item)
        return {"array": array, "sampling_rate": sampling_rate}
    if isinstance(item, dict):
        samples = item.get("array", item.get("raw"))
        if samples is None:
            raise ValueError(f"an 'inputs' object needs 'array' and 'sampling_rate', got keys {sorted(item)}")
        rate = item.get("sampling_rate", sampling_rate)
        if rate is None:
            raise ValueError("an 'inputs' object with 'array' needs 'sampling_rate'")
        rate = coerce_parameter("sampling_rate", rate)
        if not isinstance(samples, (np.ndarray, torch.Tensor)):
            samples = samples_from_json(samples, what="'inputs.array'")
        return {"array": samples, "sampling_rate": rate}
    raise ValueError(
        f"unsupported 'inputs' of type {type(item).__name__}: send audio bytes, base64 text, a list of float "
        f"samples with parameters.sampling_rate, or {{'array': [...], 'sampling_rate': N}}"
    )


def to_json_compatible(value: Any) -> Any:
    """numpy/torch scalars and arrays in `value` as plain Python numbers and lists (JSON-serializable)."""
    if isinstance(value, dict):
        return {key: to_json_compatible(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_compatible(item) for item in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value


def limit_setting(name: str, value: float | str | None) -> int | float | bool:
    """A request limit: `value` when given, else its environment variable, else its default (`LIMIT_DEFAULTS`)."""
    variable, default = LIMIT_DEFAULTS[name]
    if value is None:
        value = os.environ.get(variable, default)
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.strip().lower() not in TRUE_STRINGS + FALSE_STRINGS:
                raise ValueError(f"{variable} must be true or false, got {value!r}")
            return value.strip().lower() in TRUE_STRINGS
        return bool(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} ({variable}) must be a number, got {value!r}") from None
    if not number > 0 or not math.isfinite(number):
        raise ValueError(f"{name} ({variable}) must be a positive number, got {value!r}")
    return type(default)(number)


def audio_header(audio_bytes: bytes) -> tuple[int, int, int]:
    """`(sampling_rate, frames, channels)` of a sound file's bytes, from its header alone (nothing is decoded)."""
    import soundfile

    try:
        info = soundfile.info(io.BytesIO(audio_bytes))
    except Exception as error:  # libsndfile reports every format problem as a RuntimeError/LibsndfileError
        reason = HEAP_ADDRESS.sub("the audio", " ".join(str(error).split()))
        raise ValueError(f"'inputs': cannot decode audio ({reason})") from None
    return info.samplerate, info.frames, info.channels


def load_detector(path: str, device: str | torch.device) -> OrcaHelloAudioClassificationPipeline:
    """
    The OrcaHello pipeline of the model folder `path` on `device`. Where the `orcahello` package is installed (or
    this checkout is on the path), its own classes build it, exactly as the `orcahello` commands do: one copy of the
    code runs, and the folder gives only weights and settings. Copied alone next to a model folder, as on an
    Inference Endpoint, nothing of the package is there: the folder's own code, which is what that endpoint serves,
    is loaded as Hub remote code.
    """
    if importlib.util.find_spec("orcahello") is not None:
        from orcahello.models import load_pipeline

        return load_pipeline(path, device)
    # The model folder's own copy of the pipeline class (its remote code): the same pipeline.
    detector = pipeline("audio-classification", model=path, trust_remote_code=True, device=device)
    return cast("OrcaHelloAudioClassificationPipeline", detector)


class EndpointHandler:
    """
    The Inference Endpoints entry point. `path` is the model repository's local folder; the pipeline is loaded from
    it once (`load_detector`), on the GPU when there is one.

    The limits of one request (see the module's docstring); each defaults to its environment variable, else to the
    value in `LIMIT_DEFAULTS`:

    Args:
        max_audio_seconds (`float`, `ORCAHELLO_MAX_AUDIO_SECONDS`, 600): audio per request, all inputs together.
        max_payload_bytes (`int`, `ORCAHELLO_MAX_PAYLOAD_BYTES`, 128 MiB): file bytes (base64 text counted as the
            bytes it decodes to) or samples x 4 per request.
        max_sampling_rate (`int`, `ORCAHELLO_MAX_SAMPLING_RATE`, 192000): the work per second of audio grows with the
            rate (reading, resampling), so the rate is bounded as the duration is.
        max_batch_size (`int`, `ORCAHELLO_MAX_BATCH_SIZE`, 64): windows per forward pass a request may ask for.
        allow_custom_windowing (`bool`, `ORCAHELLO_ALLOW_CUSTOM_WINDOWING`, false): accept window and hop lengths
            other than the model's (a shorter hop multiplies the windows scored per second of audio).
        max_decoded_samples (`int`, `ORCAHELLO_MAX_DECODED_SAMPLES`, 230,400,000): channels x rate x seconds per
            request, from the headers: what decoding and resampling cost, whatever the file's compression.
        max_whole_recording_samples (`int`, `ORCAHELLO_MAX_WHOLE_RECORDING_SAMPLES`, 57,600,000): the same, when the
            request's settings (its preset, or `whole_recording_frontend`) read each recording whole.
    """

    def __init__(
        self,
        path: str = "",
        max_audio_seconds: float | None = None,
        max_payload_bytes: int | None = None,
        max_sampling_rate: int | None = None,
        max_batch_size: int | None = None,
        allow_custom_windowing: bool | None = None,
        max_decoded_samples: int | None = None,
        max_whole_recording_samples: int | None = None,
    ) -> None:
        self.max_audio_seconds = limit_setting("max_audio_seconds", max_audio_seconds)
        self.max_payload_bytes = limit_setting("max_payload_bytes", max_payload_bytes)
        self.max_sampling_rate = limit_setting("max_sampling_rate", max_sampling_rate)
        self.max_batch_size = limit_setting("max_batch_size", max_batch_size)
        self.allow_custom_windowing = limit_setting("allow_custom_windowing", allow_custom_windowing)
        self.max_decoded_samples = limit_setting("max_decoded_samples", max_decoded_samples)
        self.max_whole_recording_samples = limit_setting("max_whole_recording_samples", max_whole_recording_samples)
        return_large_buffers_to_the_system()  # process-wide (mallopt): the endpoint process's to make
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.pipeline = load_detector(path or ".", device)
        # Stricter than the pipeline's floor (it scores 8-20 kHz with a warning): an endpoint's callers get answers
        # for the model's whole 0-10 kHz band or a refusal; checked here before decoding.
        self.min_sampling_rate = FULL_BAND_SAMPLING_RATE

    def check_parameters(self, parameters: dict[str, Any]) -> bool:
        """
        Refuse a `batch_size` above the cap, and windowing that multiplies the work, unless the deployment allows.
        Every other value is checked as the pipeline resolves it, by the rules the command line's go through (a
        negative threshold, `top_k: 0`, a NaN hop: a one-line `ValueError` here, before anything is decoded).
        Returns whether the resolved settings read each recording whole (the whole-recording frontend), which the
        tighter `max_whole_recording_samples` bounds.
        """
        batch_size = parameters.get("batch_size")
        if batch_size is not None and not 1 <= batch_size <= self.max_batch_size:
            raise ValueError(
                f"parameter 'batch_size' must be from 1 to {self.max_batch_size} on this endpoint, got {batch_size}"
            )
        pipeline_parameters = {name: value for name, value in parameters.items() if name != "batch_size"}
        resolved = self.pipeline.resolve_parameters(**pipeline_parameters)
        whole_recording = resolved.preprocess.get("whole_recording_frontend", False)
        if self.allow_custom_windowing:
            return whole_recording
        # Compared as the pipeline resolves them (the model folder's config gives the defaults), so that any way of
        # setting a window or hop (a parameter, a preset) is covered: a hop at least the model's means no more
        # windows per second of audio; any other `*_seconds` windowing setting must be the model's own.
        # A named preset is one of the model's own behaviours: its windowing is the reference then (v1's 3-s windows
        # every 2 s cost less per second of audio than fastai's 2-s windows every second).
        preset = {"preset": parameters["preset"]} if parameters.get("preset") is not None else {}
        defaults = self.pipeline.resolve_parameters(**preset).preprocess
        requested = resolved.preprocess
        for name in sorted(set(defaults) | set(requested)):
            if not name.endswith("_seconds"):
                continue
            value, default = requested.get(name), defaults.get(name)
            if value == default or ("hop" in name and None not in (value, default) and value >= default):
                continue
            rule = f"at least the model's {default:g}" if "hop" in name else f"the model's {default!r}"
            raise ValueError(
                f"{name} {value!r} is refused on this endpoint: it must be {rule} (a deployment allows other "
                f"windowing with ORCAHELLO_ALLOW_CUSTOM_WINDOWING=true)"
            )
        return whole_recording

    def check_audio(self, item: bytes | dict[str, Any]) -> tuple[int, float, int]:
        """
        `(payload bytes, seconds, decoded samples)` of one input, from its header or its shape; refuses rates out of
        range.
        """
        if isinstance(item, bytes):
            if len(item) > self.max_payload_bytes:  # before libsndfile reads anything
                raise ValueError(f"the audio is {len(item)} bytes, more than this endpoint's {self.max_payload_bytes}")
            rate, frames, channels = audio_header(item)
            payload = len(item)
        else:
            rate, array = item["sampling_rate"], item["array"]
            shape = tuple(array.shape)
            frames = max(shape) if shape else 0  # (samples,), or channels x samples either way round
            payload = int(np.prod(shape)) * 4
            channels = payload // 4 // frames if frames else 0
        if rate < self.min_sampling_rate:
            raise ValueError(
                f"the audio is sampled at {rate} Hz, below the {self.min_sampling_rate} Hz the model's 0-10 kHz band "
                f"needs"
            )
        if rate > self.max_sampling_rate:
            raise ValueError(
                f"the audio is sampled at {rate} Hz, above this endpoint's {self.max_sampling_rate} Hz: resample it"
            )
        return payload, frames / rate, frames * channels

    def __call__(self, data: dict[str, Any]) -> Any:
        """
        Args:
            data (`dict`):
                `{"inputs": <audio>, "parameters": {...}}`. `inputs`: the bytes of an audio file, their base64 text,
                a list of float samples (with `parameters.sampling_rate`), `{"array", "sampling_rate"}`, or a list
                of files (bytes or base64 text) or objects scored as a batch.

        Returns:
            The pipeline's output for the input (a list of outputs for a batch), JSON-serializable.
        """
        if not isinstance(data, dict):
            raise ValueError(f"the request must be a JSON object with 'inputs', got {type(data).__name__}")
        if "inputs" not in data:
            raise ValueError(f"the request has no 'inputs' (keys: {sorted(data)}); send {{\"inputs\": <audio>}}")
        # Only null or a missing key means no parameters: `[]` or `""` is a mistake to report, not an empty object.
        parameters = data.get("parameters")
        parameters = {} if parameters is None else parameters
        if not isinstance(parameters, dict):
            raise ValueError(f"'parameters' must be an object, got {type(parameters).__name__}")
        unknown = sorted(name for name in parameters if name not in PARAMETER_TYPES)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(map(repr, unknown))}; accepted parameters: "
                f"{', '.join(sorted(PARAMETER_TYPES))}"
            )
        # A null value means the default, as leaving the parameter out does.
        parameters = {name: coerce_parameter(name, value) for name, value in parameters.items() if value is not None}
        sampling_rate = parameters.pop("sampling_rate", None)
        whole_recording = self.check_parameters(parameters)

        inputs = data["inputs"]
        is_batch = isinstance(inputs, (list, tuple)) and not is_sample_list(inputs)
        if is_batch and not inputs:
            raise ValueError("'inputs' is an empty list: no audio")
        items = list(inputs) if is_batch else [inputs]
        # Sizes first, from what arrived, before base64 is decoded or JSON samples are copied into arrays.
        received = sum(self.received_bytes(item) for item in items)
        if received > self.max_payload_bytes:
            raise ValueError(f"the request carries {received} bytes of audio, more than this endpoint's "
                             f"{self.max_payload_bytes}")  # fmt: skip
        audio = [audio_input(item, sampling_rate) for item in items]
        payload, seconds, samples = 0, 0.0, 0
        for item in audio:
            item_payload, item_seconds, item_samples = self.check_audio(item)
            payload, seconds, samples = payload + item_payload, seconds + item_seconds, samples + item_samples
        if payload > self.max_payload_bytes:
            raise ValueError(f"the request carries {payload} bytes of audio, more than this endpoint's "
                             f"{self.max_payload_bytes}")  # fmt: skip
        if seconds > self.max_audio_seconds:
            raise ValueError(
                f"the request holds {seconds:.1f} s of audio, more than this endpoint's {self.max_audio_seconds:g} s"
            )
        samples_bound = self.max_whole_recording_samples if whole_recording else self.max_decoded_samples
        if samples > samples_bound:
            frontend = " with the whole-recording frontend" if whole_recording else ""
            raise ValueError(
                f"the request decodes to {samples} samples (channels x rate x seconds), more than this endpoint's "
                f"{samples_bound}{frontend}: send fewer channels, a lower rate or less audio"
            )
        if is_batch:
            return to_json_compatible(self.pipeline(audio, **parameters))
        return to_json_compatible(self.pipeline(audio[0], **parameters))

    @staticmethod
    def received_bytes(item: object) -> int:
        """What an input weighs as it arrived: file bytes, base64 text as the bytes it decodes to, samples x 4."""
        if isinstance(item, (bytes, bytearray, memoryview)):
            return len(item)
        if isinstance(item, str):
            return len(item) * 3 // 4
        if isinstance(item, dict):
            item = item.get("array", item.get("raw"))
        if isinstance(item, (np.ndarray, torch.Tensor)):
            return int(np.prod(item.shape)) * 4
        if isinstance(item, (list, tuple)):
            return sum(len(row) if isinstance(row, (list, tuple)) else 1 for row in item) * 4
        return 0
