"""
The endpoint's worst accepted request is bounded whatever its parameters (issue 30: N1, F4, F12/F14): decoded
samples (channels x rate x seconds) are bounded from the headers before anything is decoded, tighter when the
request's settings read each recording whole; float16 is refused on CPU for every engine; every parameter goes
through the range checks every other source of settings goes through; decode errors carry no heap addresses.
"""

import io

import numpy as np
import pytest
import soundfile
import torch

from engines_orcahello import resolve_engine
from handler import EndpointHandler


def audio_bytes(seconds, rate, channels, format="WAV"):
    """Quiet noise (silence would be flagged, not refused): `seconds` of `channels` at `rate` as a sound file."""
    samples = (np.random.default_rng(0).standard_normal((int(seconds * rate), channels)) * 30).astype(np.int16)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype="PCM_16", format=format)
    return buffer.getvalue()


def with_flac_total_samples(flac, total):
    """The FLAC's bytes with STREAMINFO's 36-bit sample count rewritten: the header of a far longer recording."""
    data = bytearray(flac)
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    packed = int.from_bytes(data[18:26], "big")  # 20 bits rate, 3 channels - 1, 5 bits - 1, 36 total samples
    packed = (packed >> 36 << 36) | total
    data[18:26] = packed.to_bytes(8, "big")
    return bytes(data)


def refusal(handler, body):
    with pytest.raises(ValueError) as raised:
        handler(body)
    message = str(raised.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def default_handler(tiny_model_folder):
    return EndpointHandler(str(tiny_model_folder))


@pytest.fixture(scope="module")
def small_handler(tiny_model_folder):
    """Decoded-samples bounds that 3 s of 44.1-kHz mono (132,300 samples) passes and its stereo copy does not."""
    return EndpointHandler(str(tiny_model_folder), max_decoded_samples=200_000, max_whole_recording_samples=100_000)


def test_eight_channels_at_192_khz_for_600_s_are_refused_from_the_header(default_handler):
    # N1: a small FLAC whose header announces 8 channels x 192 kHz x 600 s, inside every other default limit (600 s,
    # 128 MiB, 192 kHz), decoded to 3.7 GB of float32 (10 GB peak with the whole-recording frontend).
    attack = with_flac_total_samples(audio_bytes(0.1, 192000, 8, format="FLAC"), 600 * 192000)
    info = soundfile.info(io.BytesIO(attack))
    assert (info.channels, info.samplerate, info.frames) == (8, 192000, 600 * 192000) and len(attack) < 200_000
    message = refusal(default_handler, {"inputs": attack})
    assert "decodes to 921600000 samples (channels x rate x seconds), more than this endpoint's 230400000" in message
    # Stereo at 192 kHz for 600 s (what the other limits were sized for) is within the bound.
    stereo = with_flac_total_samples(audio_bytes(0.1, 192000, 2, format="FLAC"), 600 * 192000)
    assert default_handler.check_audio(stereo)[2] == 2 * 192000 * 600 <= default_handler.max_decoded_samples


def test_channels_count_in_the_decoded_samples(small_handler):
    mono, stereo = audio_bytes(3, 44100, 1), audio_bytes(3, 44100, 2)
    assert small_handler({"inputs": mono})[0]["label"]
    message = refusal(small_handler, {"inputs": stereo})
    assert "decodes to 264600 samples (channels x rate x seconds), more than this endpoint's 200000:" in message
    # Arrays count their channels too (channels x samples either way round), and a batch counts as a whole.
    samples = np.zeros((2, 3 * 44100), np.float32)
    assert "decodes to 264600 samples" in refusal(small_handler, {"inputs": {"array": samples, "sampling_rate": 44100}})
    assert "decodes to 264600 samples" in refusal(small_handler, {"inputs": [mono, mono]})


@pytest.mark.parametrize("parameters", [{"preset": "v1"}, {"whole_recording_frontend": True}])
def test_the_whole_recording_frontend_has_its_own_tighter_bound(small_handler, parameters):
    mono = audio_bytes(3, 44100, 1)
    message = refusal(small_handler, {"inputs": mono, "parameters": parameters})
    assert (
        "decodes to 132300 samples (channels x rate x seconds), more than this endpoint's 100000 with the " in message
    )
    assert "whole-recording frontend" in message


def test_float16_is_refused_on_cpu_for_every_engine(small_handler):
    # F4: the refusal lived in the OpenVINO scorer alone; PyTorch emulated float16 at ~3x float32's CPU time.
    for engine in ("auto", "torch", "openvino", "onnxruntime"):
        with pytest.raises(ValueError, match="precision='float16' is for GPUs"):
            resolve_engine(engine, torch.device("cpu"), torch.float32, "float16")
    message = refusal(small_handler, {"inputs": audio_bytes(3, 44100, 1), "parameters": {"engine": "torch",
                                                                                         "precision": "float16"}})  # fmt: skip
    assert "precision='float16' is for GPUs" in message


@pytest.mark.parametrize(
    "parameters, expected",
    [
        ({"local_threshold": -0.5}, "local_threshold must be a number from 0 to 1, got -0.5"),
        ({"global_threshold": 1.5}, "global_threshold must be a number from 0 to 1"),
        ({"global_count_threshold": -1}, "global_count_threshold must be a whole number of at least 0, got -1"),
        ({"aggregation": "mean_top_k", "top_k_windows": 0}, "top_k_windows must be a whole number of at least 1"),
        ({"top_k": 0}, "top_k must be a whole number of at least 1, got 0"),
        ({"top_k": -2}, "top_k must be a whole number of at least 1, got -2"),
        ({"min_global_confidence": 2}, "min_global_confidence must be a number from 0 to 1"),
        ({"hop_seconds": "nan"}, "must be a finite number"),
        ({"aggregation": "<script>"}, "aggregation must be one of"),
    ],
)
def test_every_parameter_is_range_checked_before_decoding(small_handler, parameters, expected):
    # F12/F14: these were accepted and gave a detector that says yes (or no) to everything, or an empty answer.
    # `b"RIFF"` is no audio: the refusal comes before anything is read.
    assert expected in refusal(small_handler, {"inputs": b"RIFF", "parameters": parameters})


@pytest.mark.parametrize("parameters", [[], "", 0, False])
def test_parameters_that_are_not_an_object_are_refused(small_handler, parameters):
    assert "'parameters' must be an object" in refusal(small_handler, {"inputs": b"RIFF", "parameters": parameters})


def test_decode_errors_show_no_heap_address(small_handler):
    message = refusal(small_handler, {"inputs": b"not audio at all"})
    assert "cannot decode audio" in message and "0x" not in message, message


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"hop_seconds": 1e-6}, "hop_seconds must be a number of seconds from 0.1 to 60, got 1e-06"),
        ({"window_seconds": float("inf")}, "window_seconds must be a number of seconds from 0.5 to 60, got inf"),
        ({"hop_seconds": float("nan")}, "hop_seconds must be a number of seconds from 0.1 to 60, got nan"),
        ({"local_threshold": float("nan")}, "local_threshold must be a number from 0 to 1, got nan"),
    ],
)
def test_the_pipeline_refuses_work_multiplying_or_constant_settings(tiny_pipeline, settings, expected):
    # The same rules for a call of the pipeline (the command line and a model's config resolve through them too).
    with pytest.raises(ValueError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        tiny_pipeline.resolve_parameters(**settings)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("hop_seconds", 1e-6, "hop_seconds must be a number of seconds from 0.1 to 60"),
        ("window_seconds", 1e9, "window_seconds must be a number of seconds from 0.5 to 60"),
        ("local_threshold", float("nan"), "local_threshold must be a number from 0 to 1, got nan"),
        ("global_threshold", -1.0, "global_threshold must be a number from 0 to 1, got -1.0"),
    ],
)
def test_a_hostile_model_config_is_refused_before_any_work(field, value, expected):
    # N10: a model folder's config with a microsecond hop took over 6 GB at detect; a NaN threshold made the detector
    # always or never positive, with no error. The config's values resolve through the same checks as a call's.
    from conftest import tiny_config

    from call_parameters_orcahello import resolve_call_parameters

    with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
        resolve_call_parameters(tiny_config(**{field: value}))
