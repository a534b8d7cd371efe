# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The v1 port's whole-recording frontend, streamed: the int16 audio at the model's rate that upstream's port writes
to its temporary WAV (the recording read whole, downmixed, resampled by one `resample_poly` call, divided by its
peak, quantised), produced block by block in two passes over the recording, so that its memory does not grow with
the recording's length.

Why the blocks give the same samples, bit for bit: `resample_poly` is `upfirdn` with a fixed FIR filter, and
`upfirdn` computes each output sample as its own sum over the input samples under the filter, in increasing input
order. Shifting the input by a multiple of `down` samples shifts the outputs by the same multiple of `up` with the
very same sums, so a block of the recording that starts on such a multiple and reaches at least the filter's length
past the wanted outputs on both sides (or to the recording's own ends, where the whole call pads with zeros as the
block call does) gives those outputs exactly. The peak is a maximum, the same whatever the order it is taken in;
dividing and quantising go sample by sample. `tests/test_whole_recording.py` checks the identity on every fixture
and real recording.
"""

import math

import numpy as np
from scipy.signal import resample_poly

try:
    from .audio_orcahello import Recording
    from .feature_extraction_orcahello import OrcaHelloFeatureExtractor
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from audio_orcahello import Recording
    from feature_extraction_orcahello import OrcaHelloFeatureExtractor

# Output samples resampled at a time in the first pass (the peak): 10 seconds at 20 kHz, a few MB at most.
PEAK_PASS_BLOCK_SAMPLES = 200_000


class WholeRecordingResampler:
    """
    Any stretch `[start, stop)` of `resample_poly(mono, up, down)` over a whole recording, computed from only the
    stretch of the recording around it.

    Args:
        recording (`Recording`):
            The source, read block by block (`Recording.read`) and downmixed as the port reads it.
        model_sampling_rate (`int`):
            The rate resampled to (the feature extractor's, 20 kHz).
    """

    def __init__(self, recording: Recording, model_sampling_rate: int) -> None:
        self.recording = recording
        divisor = math.gcd(model_sampling_rate, recording.sampling_rate)
        self.up, self.down = model_sampling_rate // divisor, recording.sampling_rate // divisor
        self.num_samples = -(-recording.num_samples * self.up // self.down)
        # `resample_poly`'s filter has 2 * 10 * max(up, down) + 1 taps at the upsampled rate, so an output sample
        # depends on the input samples within (10 * max(up, down) + down) / up of its own position; this context
        # (in input samples, each side) is more than that for every pair of rates.
        self.context = 10 * max(self.up, self.down) + 2 * self.down

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples `[start, stop)` of the whole recording's resampled float32 mono audio."""
        if self.up == self.down:
            return OrcaHelloFeatureExtractor.whole_recording_mono(self.recording.read(start, stop))
        # The block starts on a multiple of `down` input samples (its outputs are then the whole call's, shifted by
        # a whole number of `up`), at least `context` before the first input sample the outputs need.
        first_input = max(0, (start * self.down // self.up - self.context) // self.down * self.down)
        last_input = min(self.recording.num_samples, -(-stop * self.down // self.up) + self.context)
        mono = OrcaHelloFeatureExtractor.whole_recording_mono(self.recording.read(first_input, last_input))
        offset = first_input // self.down * self.up
        resampled = resample_poly(mono, self.up, self.down).astype(np.float32)
        return resampled[start - offset : stop - offset]

    def peak(self) -> np.float32:
        """The largest |x| of the whole resampled recording (the first pass: one read of the recording)."""
        peak = np.float32(0.0)
        for start in range(0, self.num_samples, PEAK_PASS_BLOCK_SAMPLES):
            block = self.read(start, min(start + PEAK_PASS_BLOCK_SAMPLES, self.num_samples))
            if block.size:
                peak = max(peak, np.abs(block).max())
        return peak


class WholeRecordingAudio(Recording):
    """
    The v1 port's int16 audio at the model's rate (see the module's docstring), read window by window as any
    `Recording`: the peak is found in a first pass when it is needed, and every `read` then resamples just the
    stretch asked for. Memory stays that of a few seconds of audio, whatever the recording's length; results are
    those of `OrcaHelloFeatureExtractor.prepare_whole_recording` on the whole recording, bit for bit.

    Reports the source's rate and length (`source_sampling_rate`, `source_num_samples`), channels and HLS
    timeline (its anchors are in seconds, so they hold for the resampled audio too). Closing it closes the source.
    """

    def __init__(self, recording: Recording, model_sampling_rate: int, peak_normalize: bool = True) -> None:
        self._resampler = WholeRecordingResampler(recording, model_sampling_rate)
        super().__init__(recording.name, model_sampling_rate, self._resampler.num_samples, recording.num_channels)
        self._source = recording
        self.timeline = recording.timeline
        self.source_sampling_rate = recording.sampling_rate
        self.source_num_samples = recording.num_samples
        self.peak = self._resampler.peak() if peak_normalize and self.num_samples else None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples `[start, stop)` as int16 `(1, samples)`."""
        start, stop = max(0, start), min(stop, self.num_samples)
        resampled = self._resampler.read(start, stop) if stop > start else np.zeros(0, np.float32)
        return OrcaHelloFeatureExtractor.whole_recording_int16(resampled, self.peak)[None, :]

    @property
    def largest_float_sample(self) -> float:
        """The source's (`Recording.largest_float_sample`): this audio is int16, made from the source's samples."""
        return self._source.largest_float_sample

    def close(self) -> None:
        self._source.close()


def whole_recording_audio(
    recording: Recording, feature_extractor: OrcaHelloFeatureExtractor, peak_normalize: bool = True
) -> WholeRecordingAudio:
    """
    The v1 port's whole-recording frontend over `recording`: a `WholeRecordingAudio` that
    `scoring_windows(..., whole_recording_frontend=True)` bounds index. It takes over `recording` (closing it closes
    the source); when reading the source for the peak fails, the source is closed and the error raised.
    """
    try:
        return WholeRecordingAudio(recording, feature_extractor.sampling_rate, peak_normalize=peak_normalize)
    except BaseException:
        recording.close()
        raise
