"""
The v1 preset's whole-recording frontend streamed (`whole_recording_orcahello`): the same int16 samples, bit for
bit, as the port's one `resample_poly` call over the whole recording (`prepare_whole_recording`), on every fixture
and real recording and at every rate, with the same peak, while the source is only ever read a few seconds at a time.
"""

import numpy as np
import pytest
from conftest import LEGACY, REAL_AUDIO
from scipy.signal import resample_poly

from audio_orcahello import Recording
from feature_extraction_orcahello import OrcaHelloFeatureExtractor
from whole_recording_orcahello import PEAK_PASS_BLOCK_SAMPLES, WholeRecordingAudio, WholeRecordingResampler

FEATURE_EXTRACTOR = OrcaHelloFeatureExtractor()


def every_recording():
    return sorted((LEGACY / "audio").glob("*.wav")) + sorted(REAL_AUDIO.glob("*.wav"))


def read_in_pieces(audio, piece_samples):
    """All of `audio`'s samples, read `piece_samples` at a time from its start, joined."""
    pieces = [audio.read(start, start + piece_samples) for start in range(0, audio.num_samples, piece_samples)]
    return np.concatenate(pieces, axis=-1)


class CountingRecording(Recording):
    """An in-memory recording that notes the length of every read, to show the source is never read whole."""

    def __init__(self, array, sampling_rate):
        source = Recording.from_array(array, sampling_rate)
        super().__init__(source.name, sampling_rate, source.num_samples, source.num_channels, array=source._array)
        self.read_lengths = []

    def read(self, start, stop):
        self.read_lengths.append(stop - start)
        return super().read(start, stop)


@pytest.mark.needs_test_data
@pytest.mark.parametrize("peak_normalize", [True, False], ids=["normalized", "raw"])
@pytest.mark.parametrize("path", every_recording(), ids=lambda path: path.stem)
def test_streamed_samples_are_the_whole_recordings(path, peak_normalize):
    whole = Recording.from_file(path)
    expected = FEATURE_EXTRACTOR.prepare_whole_recording(
        whole.read(0, whole.num_samples), whole.sampling_rate, peak_normalize=peak_normalize
    )
    whole.close()
    streamed = WholeRecordingAudio(Recording.from_file(path), 20000, peak_normalize=peak_normalize)
    assert streamed.num_samples == expected.size
    # Pieces not aligned with anything: 1.85 s, and the pipeline's own reads (9 s blocks every 8 s).
    np.testing.assert_array_equal(read_in_pieces(streamed, 37_123)[0], expected)
    for start in range(0, streamed.num_samples, 160_000):
        np.testing.assert_array_equal(streamed.read(start, start + 180_000)[0], expected[start : start + 180_000])
    assert streamed.sampling_rate == 20000 and streamed.source_sampling_rate == whole.sampling_rate
    assert streamed.source_num_samples == whole.num_samples and streamed.num_channels == whole.num_channels
    streamed.close()


@pytest.mark.needs_test_data
@pytest.mark.parametrize("path", every_recording(), ids=lambda path: path.stem)
def test_the_peak_is_the_resampled_recordings(path):
    recording = Recording.from_file(path)
    mono = FEATURE_EXTRACTOR.whole_recording_mono(recording.read(0, recording.num_samples))
    if recording.sampling_rate != 20000:
        mono = resample_poly(mono, 20000, recording.sampling_rate).astype(np.float32)
    assert WholeRecordingResampler(recording, 20000).peak() == np.abs(mono).max()
    recording.close()


@pytest.mark.parametrize("sampling_rate", [22050, 32000, 44100, 48000, 96000])
@pytest.mark.parametrize("channels", [1, 3])
def test_block_edges_at_any_rate(sampling_rate, channels):
    """
    Long enough for several peak-pass blocks, with a length that is no multiple of anything, loud samples right at
    the block edges, and integer and float sources: every sample and the peak as the one whole call gives them.
    """
    rng = np.random.default_rng(sampling_rate + channels)
    num_samples = int(2.3 * PEAK_PASS_BLOCK_SAMPLES * sampling_rate / 20000) + 7
    audio = rng.integers(-3000, 3000, size=(channels, num_samples), dtype=np.int16)
    for edge in range(0, num_samples, PEAK_PASS_BLOCK_SAMPLES * sampling_rate // 20000):
        audio[:, max(0, edge - 1) : edge + 2] = 32000
    for source in (audio, audio.astype(np.float32) / 32768):
        expected = FEATURE_EXTRACTOR.prepare_whole_recording(source, sampling_rate)
        streamed = WholeRecordingAudio(Recording.from_array(source, sampling_rate), 20000)
        np.testing.assert_array_equal(read_in_pieces(streamed, 12_345)[0], expected)


def test_the_source_is_never_read_whole():
    """Ten minutes at 48 kHz: the first pass and the windows read at most a block plus the filter's context."""
    sampling_rate = 48000
    audio = np.random.default_rng(0).integers(-3000, 3000, size=600 * sampling_rate, dtype=np.int16)
    source = CountingRecording(audio, sampling_rate)
    streamed = WholeRecordingAudio(source, 20000)
    read_in_pieces(streamed, 180_000)
    block_input = PEAK_PASS_BLOCK_SAMPLES * sampling_rate // 20000
    assert len(source.read_lengths) > 100
    assert max(source.read_lengths) < block_input + 1000  # 10 s of 48-kHz audio and two filter contexts


def test_the_filter_context_is_needed():
    """The identity rests on the context around each block: without it, the samples at block edges change."""
    audio = np.random.default_rng(1).integers(-3000, 3000, size=500_000, dtype=np.int16)
    expected = FEATURE_EXTRACTOR.prepare_whole_recording(audio, 48000, peak_normalize=False)
    streamed = WholeRecordingAudio(Recording.from_array(audio, 48000), 20000, peak_normalize=False)
    streamed._resampler.context = 0
    assert not np.array_equal(read_in_pieces(streamed, 12_345)[0], expected)
