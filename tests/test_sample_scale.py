"""
Float samples far outside full scale (issue 30, F11): a recording whose float samples reach -1e30 was decided
positive with no warning (production's frontend clips them to a full-scale square wave; the v1 preset's peak
normalisation divides the rest of the recording by them). Such a recording is scored with a warning in every output
that carries warnings (the pipeline's result, detect's JSON, the endpoint's answer); samples that are infinite, or
that the frontend's float32 cannot hold, are a one-line error.
"""

import base64
import io
import json
import re

import numpy as np
import pytest
import soundfile
from conftest import run_orcahello_cli

from handler import EndpointHandler

RATE = 48000


def noise(seconds=6, spike=None):
    """Quiet float32 noise, with one sample set to `spike` when given."""
    samples = (np.random.default_rng(0).standard_normal(RATE * seconds) * 0.01).astype(np.float32)
    if spike is not None:
        samples[100_000] = spike
    return samples


def float_wav(samples, subtype="FLOAT"):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, RATE, subtype=subtype, format="WAV")
    return buffer.getvalue()


def scale_warnings(result):
    return [warning for warning in result["warnings"] if "far outside the [-1, 1] of full scale" in warning]


@pytest.mark.parametrize("preset", [None, "v1"])
@pytest.mark.parametrize("spike", [-1e30, 3e38, 2.5])
def test_far_out_of_range_float_samples_are_scored_with_a_warning(tiny_pipeline, preset, spike):
    parameters = {"preset": preset} if preset else {}
    result = tiny_pipeline({"array": noise(spike=spike), "sampling_rate": RATE}, return_timestamps=True, **parameters)
    (warning,) = scale_warnings(result)
    assert f"float samples reach {abs(spike):.3g}" in warning


@pytest.mark.parametrize("preset", [None, "v1"])
def test_integer_pcm_stored_as_floats_is_named(tiny_pipeline, preset, tmp_path):
    # The common way to get there: int16 values written to a float WAV unscaled.
    path = tmp_path / "unscaled.wav"
    path.write_bytes(float_wav(np.round(noise() * 32767)))
    parameters = {"preset": preset} if preset else {}
    (warning,) = scale_warnings(tiny_pipeline(str(path), return_timestamps=True, **parameters))
    assert "integer PCM stored as floats?" in warning


@pytest.mark.parametrize("peak", [1.0, 1.9])
def test_float_audio_within_a_few_db_of_full_scale_is_not_flagged(tiny_pipeline, tmp_path, peak):
    # Decoded MP3/AAC overshoot full scale by a few dB; production clips that harmlessly.
    path = tmp_path / "loud.wav"
    path.write_bytes(float_wav(noise(spike=peak)))
    assert scale_warnings(tiny_pipeline(str(path), return_timestamps=True)) == []


def test_integer_pcm_is_never_flagged(tiny_pipeline):
    samples = np.full(RATE * 6, -32768, np.int16)
    samples[::2] = 32767
    assert scale_warnings(tiny_pipeline({"array": samples, "sampling_rate": RATE}, return_timestamps=True)) == []


@pytest.mark.parametrize(
    "samples, message",
    [
        (noise().astype(np.float64) * 1e300, "beyond float32's range (the frontend reads float32)"),
        (np.where(np.arange(RATE * 6) == 5, np.inf, noise()), "NaN or infinite"),
        (np.where(np.arange(RATE * 6) == 5, np.nan, noise()), "NaN or infinite"),
    ],
)
def test_samples_the_frontend_cannot_hold_are_refused(tiny_pipeline, samples, message):
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        tiny_pipeline({"array": samples, "sampling_rate": RATE}, return_timestamps=True)
    assert "\n" not in str(raised.value)


def test_an_infinite_sample_in_a_float_file_is_refused(tiny_pipeline, tmp_path):
    path = tmp_path / "inf.wav"
    path.write_bytes(float_wav(noise(spike=np.inf)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        tiny_pipeline(str(path), return_timestamps=True)


def test_detect_writes_the_warning_in_its_json(tiny_model_folder, tmp_path):
    recordings = tmp_path / "in"
    recordings.mkdir()
    (recordings / "spike.wav").write_bytes(float_wav(noise(spike=-1e30)))
    output_dir = tmp_path / "out"
    completed = run_orcahello_cli(recordings / "spike.wav", "--model", tiny_model_folder, "--output-dir", output_dir)
    assert completed.returncode == 0, completed.stderr
    document = json.loads((output_dir / "spike.orcahello.json").read_text())
    (warning,) = scale_warnings(document)
    assert "float samples reach 1e+30" in warning
    assert "far outside the [-1, 1] of full scale" in completed.stderr


def test_the_endpoint_answers_with_the_warning(tiny_model_folder):
    handler = EndpointHandler(str(tiny_model_folder))
    body = base64.b64encode(float_wav(noise(spike=-1e30))).decode()
    answer = handler({"inputs": body, "parameters": {"return_timestamps": True}})
    (warning,) = scale_warnings(answer)
    assert "float samples reach 1e+30" in warning
