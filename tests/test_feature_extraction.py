"""The feature extractor against the spectrograms production OrcaHello fed its model (SPEC.md section 1)."""

import io

import numpy as np
import pytest
import soundfile
import torch
from conftest import LEGACY

from feature_extraction_orcahello import OrcaHelloFeatureExtractor, quantize_int16, window_bounds

NATIVE_DTYPE = {"PCM_16": "int16", "PCM_24": "int32", "PCM_32": "int32", "FLOAT": "float32"}


def read_native(path):
    info = soundfile.info(str(path))
    samples, rate = soundfile.read(str(path), dtype=NATIVE_DTYPE[info.subtype], always_2d=True)
    return samples.T, rate


def stored_windows():
    """(wav name, clip start s, production spectrogram) for every window production's spectrogram was saved for."""
    cases = []
    for npz_path in sorted((LEGACY / "outputs" / "fastai_r50_legacy").glob("*.fastai_clips.npz")):
        stored = np.load(npz_path)
        name = npz_path.name.split(".")[0]
        for start, spectrogram in zip(stored["spectrogram_clip_start_s"], stored["spectrogram"]):
            cases.append((name, float(start), spectrogram))
    return cases


@pytest.fixture(scope="module")
def feature_extractor():
    return OrcaHelloFeatureExtractor()


@pytest.mark.needs_test_data
def test_every_stored_production_window_is_reproduced(feature_extractor):
    cases = stored_windows()
    assert len(cases) >= 30, "expected 3 stored windows for most of the 11 fixture WAVs"
    audio_cache = {}
    mean_differences, close_fractions = [], []
    for name, start, expected in cases:
        if name not in audio_cache:
            audio_cache[name] = read_native(LEGACY / "audio" / f"{name}.wav")
        samples, rate = audio_cache[name]
        begin = int(round(start * rate))
        features = feature_extractor(samples[:, begin : begin + 2 * rate], sampling_rate=rate)["input_features"]
        assert features.shape == (1, 1, 256, 312)
        difference = np.abs(features[0] - expected)
        mean_differences.append(difference.mean())
        close_fractions.append((difference <= 1e-3).mean())
    # The bar: every window's mean |diff| <= 0.005 dB; >= 95% of windows with 99.9% of elements within 1e-3.
    assert max(mean_differences) <= 0.005, f"worst window mean |diff| {max(mean_differences):.5f} dB"
    windows_close = np.mean(np.array(close_fractions) >= 0.999)
    assert windows_close >= 0.95, f"only {windows_close:.1%} of windows have 99.9% of elements within 1e-3 dB"


def test_padding_is_zero_db_after_the_content(feature_extractor):
    rng = np.random.default_rng(0)
    features = feature_extractor(rng.standard_normal(96000).astype(np.float32) * 0.01, sampling_rate=48000)
    image = features["input_features"][0, 0]
    assert np.all(image[:, 157:] == 0.0)
    assert np.all(image[:, :157] != 0.0)


def test_top_db_floor_is_per_window_not_per_batch(feature_extractor):
    rng = np.random.default_rng(1)
    loud = (0.9 * np.sin(2 * np.pi * 1000 * np.arange(40000) / 20000)).astype(np.float32)
    quiet = (rng.standard_normal(40000) * 1e-3).astype(np.float32)
    batched = feature_extractor([loud, quiet], sampling_rate=20000)["input_features"]
    alone = feature_extractor(quiet, sampling_rate=20000)["input_features"]
    np.testing.assert_array_equal(batched[1], alone[0])
    # A floor shared across the batch (torchaudio's AmplitudeToDB on a stack) would have raised these values.
    loud_floor = batched[0, 0, :, :157].max() - 100.0
    assert batched[1, 0, :, :157].min() < loud_floor - 10.0


def test_sixteen_khz_filterbank_quirk_leaves_top_18_rows_at_the_floor(feature_extractor):
    rng = np.random.default_rng(2)
    image = feature_extractor(rng.standard_normal(40000).astype(np.float32) * 0.1, sampling_rate=20000)
    content = image["input_features"][0, 0, :, :157]
    floor = content.max() - 100.0
    assert np.allclose(content[238:], floor)
    assert not np.allclose(content[237], floor)


def test_int16_round_trip_matches_libsndfile():
    rng = np.random.default_rng(3)
    near_integers = (rng.integers(-32768, 32767, 100000) - rng.uniform(0, 1e-3, 100000)) / 32768
    for values in (rng.standard_normal(100000) * 0.1, near_integers, np.array([1.0, 1.5, -1.0, -1.5])):
        for dtype in (np.float32, np.float64):
            buffer = io.BytesIO()
            soundfile.write(buffer, values.astype(dtype), 20000, format="WAV", subtype="PCM_16")
            buffer.seek(0)
            expected = soundfile.read(buffer, dtype="float32")[0]
            np.testing.assert_array_equal(quantize_int16(values.astype(dtype)), expected)


def test_stereo_is_downmixed_per_window_and_either_orientation_works(feature_extractor):
    rng = np.random.default_rng(4)
    stereo = (rng.standard_normal((2, 96000)) * 3000).astype(np.int16)
    channels_first = feature_extractor(stereo, sampling_rate=48000)["input_features"]
    samples_first = feature_extractor(stereo.T, sampling_rate=48000)["input_features"]
    np.testing.assert_array_equal(channels_first, samples_first)
    mono_of_mean = feature_extractor((stereo.astype(np.float32) / 32768).mean(axis=0), sampling_rate=48000)[
        "input_features"
    ]
    np.testing.assert_allclose(channels_first, mono_of_mean, atol=1e-3)
    left_only = feature_extractor(stereo[0], sampling_rate=48000)["input_features"]
    assert np.abs(channels_first - left_only).max() > 1.0


def test_integer_and_float_inputs_agree(feature_extractor):
    rng = np.random.default_rng(5)
    pcm = (rng.standard_normal(88200) * 2000).astype(np.int16)
    from_int = feature_extractor(pcm, sampling_rate=44100)["input_features"]
    from_float = feature_extractor(pcm.astype(np.float32) / 32768, sampling_rate=44100)["input_features"]
    from_tensor = feature_extractor(torch.from_numpy(pcm), sampling_rate=44100, return_tensors="pt")["input_features"]
    np.testing.assert_array_equal(from_int, from_float)
    np.testing.assert_array_equal(from_int, from_tensor.numpy())


def test_batches_keep_their_order_and_shape(feature_extractor):
    rng = np.random.default_rng(6)
    windows = [(rng.standard_normal(96000) * scale).astype(np.float32) for scale in (0.001, 0.01, 0.1)]
    batch = feature_extractor(windows, sampling_rate=48000, return_tensors="pt")["input_features"]
    assert batch.shape == (3, 1, 256, 312) and batch.dtype == torch.float32
    for index, window in enumerate(windows):
        single = feature_extractor(window, sampling_rate=48000)["input_features"]
        np.testing.assert_array_equal(batch[index].numpy(), single[0])


@pytest.mark.parametrize(
    "audio, sampling_rate, message",
    [
        (np.zeros(40000, np.float32), None, "sampling_rate is required"),
        (np.zeros(40000, np.float32), -5, "sampling_rate must be a positive"),
        (np.zeros(40000, np.float32), 44100.5, "sampling_rate must be a positive"),
        (np.zeros(0, np.float32), 20000, "empty"),
        ([], 20000, "Empty batch"),
        (np.array([0.0, np.nan] * 20000, np.float32), 20000, "NaN or infinite"),
        (np.array([0.0, np.inf] * 20000, np.float32), 20000, "NaN or infinite"),
        (np.zeros(500, np.float32), 20000, "too short"),
        (np.zeros((2, 3, 4, 40000), np.float32), 20000, "shape"),
        (np.zeros((64, 40000), np.float32), 20000, "implausible"),
        (np.array(["a", "b"]), 20000, "unsupported sample type"),
        ("not audio", 20000, "Unsupported audio input"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(feature_extractor, audio, sampling_rate, message):
    with pytest.raises((ValueError, TypeError), match=message):
        feature_extractor(audio, sampling_rate=sampling_rate)


@pytest.mark.parametrize(
    "num_samples, rate, expected_windows",
    [
        (2880512, 48000, 59),
        (2880000, 48000, 59),
        (2879472, 48000, 58),
        (480000, 48000, 9),
        (120000, 48000, 1),
        (96000, 48000, 1),
        (72000, 48000, 0),
        (264600, 44100, 5),
        (120000, 20000, 5),
    ],
)
def test_window_bounds_follow_production(num_samples, rate, expected_windows):
    bounds = window_bounds(num_samples, rate)
    assert len(bounds) == expected_windows
    for index, (start, stop) in enumerate(bounds):
        assert (start, stop) == (index * rate, (index + 2) * rate)


def test_feature_extractor_round_trips_through_save_pretrained(tmp_path):
    feature_extractor = OrcaHelloFeatureExtractor(top_db=80.0)
    feature_extractor.save_pretrained(tmp_path)
    reloaded = OrcaHelloFeatureExtractor.from_pretrained(tmp_path)
    assert reloaded.top_db == 80.0 and reloaded.filterbank_sampling_rate == 16000
    assert "_mel_transforms" not in (tmp_path / "preprocessor_config.json").read_text()


def test_both_mel_implementations_are_torchaudios_melspectrogram(feature_extractor):
    """The CPU path (scipy FFTs, sparse filterbank) and the device path (torch.stft, banded products; what a GPU
    runs, run here on CPU) both compute torchaudio's MelSpectrogram with production's settings."""
    import warnings

    import torchaudio

    rng = np.random.default_rng(11)
    waveforms = torch.from_numpy(quantize_int16(rng.standard_normal((5, 40000)).astype(np.float32) * 0.05))
    waveforms[4] = 0.0  # digital silence: all power zero
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 18 empty filters
        reference = torchaudio.transforms.MelSpectrogram(
            sample_rate=16000, n_fft=2560, hop_length=256, f_min=0.0, f_max=10000.0, n_mels=256, pad=0
        )(waveforms)
    window, bands = feature_extractor._mel_filterbank(waveforms.device)
    on_cpu = feature_extractor._mel_power(waveforms)
    on_device = feature_extractor._mel_power_torch(waveforms, window, bands)

    def decibels(power):
        return 10 * torch.log10(torch.clamp(power, min=1e-10))

    for power in (on_cpu, on_device):
        assert power.shape == reference.shape == (5, 256, 157) and power.dtype == torch.float32
        # Where the power is not negligible (the top_db floor hides the rest), the same dB to float32 rounding.
        audible = reference > reference.amax(dim=(1, 2), keepdim=True) * 1e-9
        assert (decibels(power) - decibels(reference))[audible].abs().max() < 1e-3
        assert torch.equal(power[4], torch.zeros_like(power[4]))
