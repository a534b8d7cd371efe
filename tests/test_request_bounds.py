"""
The work one request can cause is bounded (issue 19): the handler refuses, before decoding anything, payloads,
durations, sample rates and batch sizes above its limits, windowing that multiplies the work, and samples that are
not numbers; the pipeline refuses sample rates below what carries the model's 0-10 kHz band (files and arrays).
"""

import base64
import io

import numpy as np
import pytest
import soundfile
from conftest import LEGACY

from handler import EndpointHandler

WAV_6S = LEGACY / "audio" / "edge_44k1_6s.wav"  # 6 s at 44.1 kHz, 16-bit mono: 529 KB
WAV_20K = LEGACY / "audio" / "edge_20k_6s.wav"  # the lowest rate a fixture has: must stay accepted
WAV_10S = LEGACY / "audio" / "edge_10s_48k.wav"


def wav_bytes(samples, rate, subtype="PCM_16", format="WAV"):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype=subtype, format=format)
    return buffer.getvalue()


def with_header_rate(wav, rate):
    """The WAV's bytes with its fmt chunk's sample rate (and byte rate) rewritten: the 4-KB, 1-Hz attack file."""
    data = bytearray(wav)
    assert data[12:16] == b"fmt "
    channels, bits = int.from_bytes(data[22:24], "little"), int.from_bytes(data[34:36], "little")
    data[24:28] = rate.to_bytes(4, "little")
    data[28:32] = (rate * channels * bits // 8).to_bytes(4, "little")
    return bytes(data)


@pytest.fixture(scope="module")
def strict_handler(tiny_model_folder):
    """Limits small enough that the 6-s fixtures pass and the 10-s one does not."""
    return EndpointHandler(
        str(tiny_model_folder), max_audio_seconds=7, max_payload_bytes=600_000, max_batch_size=16,
        max_sampling_rate=96000,
    )  # fmt: skip


def refusal(handler, body):
    with pytest.raises(ValueError) as raised:
        handler(body)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_a_header_saying_1_hz_is_refused_before_decoding(strict_handler, tiny_pipeline, tmp_path):
    # 2,000 samples that a 1-Hz header turns into 2,000 seconds (1,999 windows): refused from the header.
    attack = with_header_rate(wav_bytes(np.zeros(2000, np.int16), 48000), 1)
    assert len(attack) < 4100 and soundfile.info(io.BytesIO(attack)).samplerate == 1
    assert "sampled at 1 Hz, below the 20000 Hz" in refusal(strict_handler, {"inputs": attack})
    # The pipeline itself refuses it too, as a path and as bytes, and 16 kHz and 8 kHz arrays.
    path = tmp_path / "one_hz.wav"
    path.write_bytes(attack)
    for source in (str(path), attack):
        with pytest.raises(ValueError, match="sampled at 1 Hz, below the 20000 Hz the model's 0-10 kHz band needs"):
            tiny_pipeline(source)
    for rate in (8000, 16000, 19999):
        with pytest.raises(ValueError, match=f"sampled at {rate} Hz, below the 20000 Hz"):
            tiny_pipeline(np.zeros(rate * 4, np.float32), sampling_rate=rate)
        assert f"sampled at {rate} Hz" in refusal(
            strict_handler, {"inputs": [0.0] * (rate * 4), "parameters": {"sampling_rate": rate}}
        )


@pytest.mark.needs_test_data
def test_every_fixture_rate_stays_accepted(strict_handler, tiny_pipeline):
    assert soundfile.info(str(WAV_20K)).samplerate == 20000
    assert tiny_pipeline(str(WAV_20K), return_timestamps=True)["sampling_rate"] == 20000
    assert strict_handler({"inputs": WAV_20K.read_bytes(), "parameters": {"return_timestamps": True}})["windows"]
    for wav in sorted((LEGACY / "audio").glob("*.wav")):
        assert soundfile.info(str(wav)).samplerate >= 20000, wav.name


def test_rates_above_the_endpoint_limit_are_refused(strict_handler):
    samples = [0.0] * 96000  # half a second
    message = refusal(strict_handler, {"inputs": {"array": samples, "sampling_rate": 192000}})
    assert "sampled at 192000 Hz, above this endpoint's 96000 Hz" in message


@pytest.mark.needs_test_data
def test_batch_size_is_capped(strict_handler):
    audio = WAV_6S.read_bytes()
    for batch_size in (10**9, 17, 0):
        message = refusal(strict_handler, {"inputs": audio, "parameters": {"batch_size": batch_size}})
        assert "'batch_size' must be from 1 to 16 on this endpoint" in message
    with_cap = strict_handler({"inputs": audio, "parameters": {"batch_size": 16}})
    assert with_cap == strict_handler({"inputs": audio})  # absent: the pipeline's default (8 on CPU)
    assert strict_handler.pipeline.batch_size == 8


@pytest.mark.needs_test_data
def test_windowing_that_multiplies_the_work_is_refused_unless_the_deployment_allows_it(
    strict_handler, tiny_model_folder
):
    audio = WAV_6S.read_bytes()
    message = refusal(strict_handler, {"inputs": audio, "parameters": {"hop_seconds": 0.5}})
    assert "hop_seconds 0.5 is refused on this endpoint: it must be at least the model's 1" in message
    assert "ORCAHELLO_ALLOW_CUSTOM_WINDOWING" in message
    for window in (3.0, 1.0):
        message = refusal(strict_handler, {"inputs": audio, "parameters": {"window_seconds": window}})
        assert f"window_seconds {window!r} is refused on this endpoint: it must be the model's 2.0" in message
    # A longer hop scores fewer windows: accepted. The model's own values, stated: accepted.
    longer = strict_handler({"inputs": audio, "parameters": {"hop_seconds": 2, "return_timestamps": True}})
    assert [window["start"] for window in longer["windows"]] == [0.0, 2.0, 4.0]
    assert strict_handler({"inputs": audio, "parameters": {"hop_seconds": "1.0", "window_seconds": 2}})

    permissive = EndpointHandler(str(tiny_model_folder), allow_custom_windowing=True)
    dense = permissive({"inputs": audio, "parameters": {"hop_seconds": 0.5, "return_timestamps": True}})
    assert len(dense["windows"]) == 9


@pytest.mark.needs_test_data
def test_duration_limit_is_read_from_the_header(strict_handler, tiny_model_folder, monkeypatch):
    ten_seconds = wav_bytes(np.zeros(10 * 20000, np.int16), 20000)  # 400 KB: under the payload limit
    message = refusal(strict_handler, {"inputs": ten_seconds})
    assert "the request holds 10.0 s of audio, more than this endpoint's 7 s" in message
    # Twenty minutes of silence in FLAC: a few KB that would decode to 230 MB of audio. Refused from its header.
    silence = wav_bytes(np.zeros(20 * 60 * 48000, np.int16), 48000, format="FLAC")
    assert len(silence) < 600_000
    message = refusal(strict_handler, {"inputs": silence})
    assert "the request holds 1200.0 s of audio, more than this endpoint's 7 s" in message
    # A batch is bounded as a whole: two 6-s files make 12 s.
    files = [WAV_6S.read_bytes()[:300_000], WAV_20K.read_bytes()]
    message = refusal(strict_handler, {"inputs": [base64.b64encode(files[1]).decode(), files[1]]})
    assert "the request holds 12.0 s of audio, more than this endpoint's 7 s" in message
    # The limits come from the environment when the constructor gives none.
    monkeypatch.setenv("ORCAHELLO_MAX_AUDIO_SECONDS", "5")
    monkeypatch.setenv("ORCAHELLO_MAX_BATCH_SIZE", "4")
    from_environment = EndpointHandler(str(tiny_model_folder))
    assert (from_environment.max_audio_seconds, from_environment.max_batch_size) == (5.0, 4)
    assert "more than this endpoint's 5 s" in refusal(from_environment, {"inputs": WAV_20K.read_bytes()})
    monkeypatch.setenv("ORCAHELLO_MAX_AUDIO_SECONDS", "lots")
    with pytest.raises(ValueError, match="ORCAHELLO_MAX_AUDIO_SECONDS.*must be a number"):
        EndpointHandler(str(tiny_model_folder))


@pytest.mark.needs_test_data
def test_payload_limit_counts_bytes_base64_and_samples_before_decoding(strict_handler):
    audio = WAV_10S.read_bytes()  # 960 KB
    assert "more than this endpoint's 600000" in refusal(strict_handler, {"inputs": audio})
    encoded = base64.b64encode(audio).decode("ascii")
    assert "carries 960" in refusal(strict_handler, {"inputs": encoded})
    samples = [0.0] * 160_000  # 640 KB as float32
    message = refusal(strict_handler, {"inputs": samples, "parameters": {"sampling_rate": 48000}})
    assert "the request carries 640000 bytes of audio, more than this endpoint's 600000" in message


@pytest.mark.parametrize(
    "samples, found",
    [
        ([True, False] * 48000, "boolean"),
        ([0.1, "0.2"] * 48000, "str"),
        ([0.1] * 95999 + [True], "boolean"),
        ([[0.1] * 48000, [0.2] * 47999 + ["0.3"]], "str"),
        ([0.1, None] * 48000, "NoneType"),
    ],
)
def test_samples_must_be_numbers(strict_handler, samples, found):
    for body in (
        {"inputs": samples, "parameters": {"sampling_rate": 48000}},
        {"inputs": {"array": samples, "sampling_rate": 48000}},
    ):
        message = refusal(strict_handler, body)
        assert f"must hold numbers only, found {found}" in message
