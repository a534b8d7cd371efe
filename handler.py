# coding=utf-8
# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Custom handler for Hugging Face Inference Endpoints: serves the OrcaHello detector's whole-recording pipeline.

Inference Endpoints import `EndpointHandler` from `handler.py` at the root of the model repository, construct it
once with the repository's local folder, and call it with every request's deserialized body. This file imports only
the standard library, numpy, torch and transformers: the model's own code (feature extractor, pipeline) comes from
the model folder through `trust_remote_code=True`, so the handler works wherever it sits next to a model folder.

Requests (JSON, or an audio body: the endpoint turns `Content-Type: audio/*` bodies into `{"inputs": <bytes>}`):

```json
{"inputs": "<base64 of a WAV/FLAC/OGG/MP3 file>", "parameters": {"return_timestamps": true, "local_threshold": 0.7}}
{"inputs": [0.0, 0.01, ...], "parameters": {"sampling_rate": 48000}}
{"inputs": {"array": [0.0, 0.01, ...], "sampling_rate": 48000}}
{"inputs": ["<base64 file 1>", "<base64 file 2>"]}
{"inputs": "<base64 file>", "parameters": {"preset": "v1", "return_timestamps": true}}
```

`parameters` are the pipeline's call parameters (see `PARAMETER_TYPES`); values may be strings, as query-string
parameters arrive (`"0.7"`, `"true"`). The response is the pipeline's output, JSON-serializable: the
`[{"label", "score"}, ...]` list (decision first), or with `return_timestamps` the full result (production's
`global_prediction`, `global_confidence`, `local_predictions`, `local_confidences`, `submission`, plus `windows`,
`detections`, `warnings`, `parameters`); a list of those for a batch. A bad request raises `ValueError` with a
one-line message saying what is wrong.
"""

import base64
import binascii
import math
import re

import numpy as np
import torch
from transformers import pipeline


# The pipeline's call parameters and their types. Everything else is refused, so that a typo ("treshold") is an
# error instead of a silently ignored setting.
PARAMETER_TYPES = {
    "return_timestamps": bool,
    "local_threshold": float,
    "global_count_threshold": int,
    "aggregation": str,
    "global_threshold": float,
    "top_k_windows": int,
    "top_k": int,
    "function_to_apply": str,
    "window_seconds": float,
    "hop_seconds": float,
    # The inference preset ("fastai" or "v1") and its other fields (configuration_orcahello.INFERENCE_PRESETS).
    "preset": str,
    "whole_recording_frontend": bool,
    "peak_normalize": bool,
    "strict_segments": bool,
    "smoothing": bool,
    "sampling_rate": int,
    "batch_size": int,
    "engine": str,
    "precision": str,
}
TRUE_STRINGS = ("true", "1", "yes", "on")
FALSE_STRINGS = ("false", "0", "no", "off")
# "data:audio/wav;base64," in front of the base64 text, as browsers' FileReader.readAsDataURL writes it.
DATA_URL_PREFIX = re.compile(r"^data:[^,]*;base64,", re.IGNORECASE)


def coerce_parameter(name, value):
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


def decode_base64_audio(text):
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


def samples_from_json(samples, what="'inputs'"):
    """A JSON list of float samples (`[...]`, or `[[...], [...]]` per channel) as a float32 array."""
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


def is_sample_list(value):
    """A list of numbers, or of lists of numbers (channels): audio samples rather than a batch of files."""
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and (
            isinstance(value[0], (int, float)) and not isinstance(value[0], bool) or isinstance(value[0], (list, tuple))
        )
    )


def audio_input(item, sampling_rate):
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


def to_json_compatible(value):
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


class EndpointHandler:
    """
    The Inference Endpoints entry point. `path` is the model repository's local folder; the pipeline (and the
    model's custom code) is loaded from it once, on the GPU when there is one.
    """

    def __init__(self, path=""):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.pipeline = pipeline("audio-classification", model=path or ".", trust_remote_code=True, device=device)

    def __call__(self, data):
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
        parameters = data.get("parameters") or {}
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

        inputs = data["inputs"]
        if isinstance(inputs, (list, tuple)) and not is_sample_list(inputs):
            if not inputs:
                raise ValueError("'inputs' is an empty list: no audio")
            batch = [audio_input(item, sampling_rate) for item in inputs]
            return to_json_compatible(self.pipeline(batch, **parameters))
        return to_json_compatible(self.pipeline(audio_input(inputs, sampling_rate), **parameters))
