# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Feature extractor of the OrcaHello SRKW detector: 2-second waveforms in, the exact mel-spectrogram images that
production OrcaHello (fastai v1 + fastai_audio 0.1) fed its model out.

Every step below reproduces a measured behaviour of production, quirks included (see the model card):
per-window downmix, two int16 round trips with *floor* quantisation, per-window `resample_poly` to 20 kHz, a mel
filterbank that believes the audio is 16 kHz, a per-window top_db floor, and 0 dB padding after the content.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy import fft as scipy_fft
from scipy import sparse as scipy_sparse
from scipy.signal import resample_poly
from transformers import BatchFeature, SequenceFeatureExtractor

try:
    import torchaudio
except ImportError:  # checked again, with a clear message, when a spectrogram is first needed
    torchaudio = None

try:
    from .vocabulary_orcahello import check_setting
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from vocabulary_orcahello import check_setting


def window_bounds(
    num_samples: int, sampling_rate: int, window_seconds: float = 2.0, hop_seconds: float = 1.0
) -> list[tuple[int, int]]:
    """
    Sample ranges `[(start, end), ...]` of the windows production scores in a recording of `num_samples` samples.

    Windows start at 0 and every `hop_seconds`; only whole windows are kept, so the tail shorter than a window is
    never scored. With the defaults this is production's `floor(duration) - 1` windows of `[k, k + 2)` seconds
    (60.0 s -> 59 windows, 59.989 s -> 58, 2.5 s -> 1, under 2 s -> none).
    """
    window_samples = int(round(window_seconds * sampling_rate))
    hop_samples = int(round(hop_seconds * sampling_rate))
    if window_samples <= 0 or hop_samples <= 0:
        raise ValueError(f"window_seconds and hop_seconds must be positive, got {window_seconds} and {hop_seconds}")
    if num_samples < window_samples:
        return []
    num_windows = (num_samples - window_samples) // hop_samples + 1
    return [(k * hop_samples, k * hop_samples + window_samples) for k in range(num_windows)]


def port_segment_bounds(
    num_samples: int,
    sampling_rate: int,
    window_seconds: float = 3.0,
    hop_seconds: float = 2.0,
    strict_segments: bool = True,
) -> list[tuple[int, int]]:
    """
    Sample ranges of the segments upstream's v1 port scores in `num_samples` samples of its 20-kHz audio
    (`audio_segment_generator`): `floor(duration / hop)` candidate starts `k * hop`; with `strict_segments` the
    first segment ending after the recording stops the cutting, without it the last ones are cut short at the end.
    Bounds are whole milliseconds (`int(seconds * 1000)`), converted to samples as pydub does.
    """
    duration = num_samples / sampling_rate
    bounds = []
    for index in range(int(np.floor(duration / hop_seconds))):
        start_seconds = index * hop_seconds
        end_seconds = start_seconds + window_seconds
        if strict_segments and end_seconds > duration:
            break
        start = int(int(start_seconds * 1000) * (sampling_rate / 1000.0))
        stop = min(int(int(end_seconds * 1000) * (sampling_rate / 1000.0)), num_samples)
        bounds.append((start, stop))
    return bounds


def _indices_by_length(arrays):
    """`{length: [indices]}`: arrays of one length are stacked and processed together."""
    groups: dict[int, list[int]] = {}
    for index, array in enumerate(arrays):
        groups.setdefault(array.shape[-1], []).append(index)
    return groups


def channels_first(waveform: np.ndarray) -> np.ndarray:
    """
    A 2-D waveform as `(channels, samples)`. A `(samples, channels)` array, as soundfile returns it, is transposed:
    channels are always far fewer than samples. More than 32 channels is refused as ambiguous (it is more likely
    a batch of windows passed as one 2-D array).
    """
    if waveform.ndim != 2:
        raise ValueError(f"Expected a 2-D (channels, samples) waveform, got shape {waveform.shape}")
    if waveform.shape[0] > waveform.shape[1]:
        waveform = waveform.T
    if waveform.shape[0] > 32:
        raise ValueError(
            f"A 2-D array of shape {waveform.shape} is read as (channels, samples), but {waveform.shape[0]} channels "
            f"is implausible; pass a batch of windows as a list of 1-D arrays or a 3-D (batch, channels, samples) array"
        )
    return waveform


def quantize_int16(waveform: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """
    One int16 round trip exactly as production's soundfile (libsndfile 1.2.2) write-then-read does it.

    libsndfile converts a float sample to 32-bit PCM with round-to-nearest (`lrint(x * 2**31)`, clipped), then to
    16-bit PCM by an arithmetic shift (`>> 16`, a floor). The result is `floor(x * 32768)` except within about 1e-5
    LSB below an integer, where the first rounding carries it up; this rule matched libsndfile on every one of 2.5
    million float32 and float64 samples tested, plain floor did not. Read back as `q / 32768`, float32.

    Float32 input is computed in float32, in place: every step is exact there (scaling by powers of two, rounding a
    float to an integer, flooring, clipping to integers), so it equals the float64 computation bit for bit at a
    fraction of the memory traffic. Clipping the int16 value to [-32768, 32767] after the shift is the same as
    clipping the int32 value before it.
    """
    waveform = np.asarray(waveform)
    work_dtype = np.float32 if waveform.dtype == np.float32 else np.float64
    values: np.ndarray = waveform.astype(work_dtype, copy=True)
    values *= work_dtype(2.0**31)
    np.rint(values, out=values)
    values *= work_dtype(2.0**-16)
    np.floor(values, out=values)
    np.clip(values, -32768.0, 32767.0, out=values)
    values *= work_dtype(2.0**-15)
    return values.astype(np.float32, copy=False)


def to_production_float32(waveform: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """
    Float32 samples as production's reader saw them for a waveform stored in `waveform`'s sample format.

    Integer PCM is scaled as soundfile does (int16 / 2**15, int32 / 2**31, uint8 around 128). Floating-point audio
    went through pydub/ffmpeg as 32-bit integer PCM first (round to nearest, clipped), so it is taken through the
    same int32 round trip; for audio inside [-1, 1) that only rounds samples below 2**-31.
    """
    waveform = np.asarray(waveform)
    if waveform.dtype == np.int16:
        return waveform.astype(np.float32) / np.float32(2**15)
    if waveform.dtype == np.int32:
        return waveform.astype(np.float32) * np.float32(2.0**-31)
    if waveform.dtype == np.uint8:
        return (waveform.astype(np.float32) - np.float32(128.0)) / np.float32(128.0)
    if waveform.dtype.kind == "f":
        scaled = np.rint(waveform.astype(np.float32).astype(np.float64) * 2.0**31)
        as_int32 = np.clip(scaled, -(2.0**31), 2.0**31 - 1)
        return as_int32.astype(np.float32) * np.float32(2.0**-31)
    raise TypeError(f"Unsupported sample type {waveform.dtype}: pass float (-1..1), int16, int32 or uint8 PCM samples")


# Largest FFT output computed at once on CPU (see `OrcaHelloFeatureExtractor._mel_power_numpy`).
FFT_CHUNK_BYTES = 512 * 1024


class OrcaHelloFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns 2-second waveforms at any sample rate into the `(batch, 1, 256, 312)` dB mel spectrograms that production
    OrcaHello fed its ResNet.

    One waveform is one window: cutting a recording into windows is the pipeline's job (see `window_bounds`).
    Each window goes, on its own, through: downmix (mean over channels) -> int16 round trip -> `resample_poly` to
    `sampling_rate` -> int16 round trip -> power mel spectrogram -> dB with a `top_db` floor below this window's
    maximum -> right-padding with `padding_value` dB up to `num_frames` frames.

    Args:
        feature_size (`int`, *optional*, defaults to 256):
            Number of mel filters (rows of the image).
        sampling_rate (`int`, *optional*, defaults to 20000):
            Rate the model's audio is resampled to, from 8000 to 192000 Hz (`vocabulary_orcahello.HERTZ_RANGES`).
        padding_value (`float`, *optional*, defaults to 0.0):
            Value, in dB, of the frames appended after the content. 0 dB is not silence: it is what production did.
        n_fft (`int`, *optional*, defaults to 2560):
            FFT size and (periodic Hann) window length.
        hop_length (`int`, *optional*, defaults to 256):
            Hop between STFT frames, in samples at `sampling_rate`.
        f_min (`float`, *optional*, defaults to 0.0):
            Lowest mel filter edge, as the filterbank understands frequencies.
        f_max (`float`, *optional*, defaults to 10000.0):
            Highest mel filter edge, as the filterbank understands frequencies.
        filterbank_sampling_rate (`int`, *optional*, defaults to 16000):
            Sample rate the mel filterbank is built for. Production left torchaudio's default of 16 kHz on 20 kHz
            audio, so every filter sits at 1.25x its nominal frequency and the top 18 filters are empty.
        top_db (`float`, *optional*, defaults to 100.0):
            Values more than `top_db` below the window's own maximum are raised to that floor.
        num_frames (`int`, *optional*, defaults to 312):
            Width of the image: fastai_audio's 4-second duration, `int(4.0 * 20000 / 256)`. Shorter spectrograms
            are padded after their content, longer ones cropped from the start.
    """

    model_input_names = ["input_features"]

    def __init__(
        self,
        feature_size: int = 256,
        sampling_rate: int = 20000,
        padding_value: float = 0.0,
        n_fft: int = 2560,
        hop_length: int = 256,
        f_min: float = 0.0,
        f_max: float = 10000.0,
        filterbank_sampling_rate: int = 16000,
        top_db: float = 100.0,
        num_frames: int = 312,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("return_attention_mask", False)
        # Read from a model folder's preprocessor_config.json: held to the range every source of settings is.
        settings = {"feature_size": feature_size, "sampling_rate": sampling_rate, "padding_value": padding_value,
                    "n_fft": n_fft, "hop_length": hop_length, "f_min": f_min, "f_max": f_max,
                    "filterbank_sampling_rate": filterbank_sampling_rate, "top_db": top_db,
                    "num_frames": num_frames}  # fmt: skip
        checked = {
            field: check_setting(field, value, f"the feature extractor's {field}") for field, value in settings.items()
        }
        if not checked["f_min"] < checked["f_max"]:
            raise ValueError(f"the feature extractor's f_min ({f_min!r}) must be below its f_max ({f_max!r})")
        # Checked, and kept as given (a folder's JSON saves back as it was), but for the rate, used as a whole number.
        sampling_rate = int(checked["sampling_rate"])
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.f_min = f_min
        self.f_max = f_max
        self.filterbank_sampling_rate = filterbank_sampling_rate
        self.top_db = top_db
        self.num_frames = num_frames
        # "sparse": the filterbank as a scipy sparse matrix; (device, ...) keys: a window and filterbank tensors.
        self._mel_transforms: dict[Any, Any] = {}

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("_mel_transforms", None)
        return output

    @property
    def min_input_samples(self) -> int:
        """Shortest waveform, at `sampling_rate`, the centred STFT's reflect padding accepts."""
        return self.n_fft // 2 + 1

    def prepare_waveforms(
        self, raw_audio: npt.ArrayLike | torch.Tensor | Sequence[npt.ArrayLike | torch.Tensor], sampling_rate: int
    ) -> list[npt.NDArray[np.float32]]:
        """
        Steps 1-5 of production's frontend: validated windows in, a list of float32 waveforms at `sampling_rate`
        out (one per window), each downmixed and taken through both int16 round trips and the resampling.
        Windows of equal length are resampled together.
        """
        sampling_rate = self._check_sampling_rate(sampling_rate)
        raw_windows = self._as_window_list(raw_audio)
        windows = [self._to_mono_float32(window, index) for index, window in enumerate(raw_windows)]
        # A mono int16 window is already on the int16 grid: its first round trip is an exact identity.
        on_int16_grid = [
            np.asarray(window).dtype == np.int16 and (np.ndim(window) == 1 or min(np.shape(window)) == 1)
            for window in raw_windows
        ]
        divisor = math.gcd(self.sampling_rate, sampling_rate)
        up, down = self.sampling_rate // divisor, sampling_rate // divisor

        prepared: list[Any] = [None] * len(windows)  # every slot is filled below, one length group at a time
        for length, indices in _indices_by_length(windows).items():
            stacked = np.stack([windows[index] for index in indices])
            if not all(on_int16_grid[index] for index in indices):
                stacked = quantize_int16(stacked)
            if up != down:
                stacked = resample_poly(stacked, up, down, axis=-1)
            stacked = quantize_int16(stacked)
            if stacked.shape[-1] < self.min_input_samples:
                raise ValueError(
                    f"Audio too short: {length} samples at {sampling_rate} Hz ({length / sampling_rate:.4f} s) give "
                    f"{stacked.shape[-1]} samples at {self.sampling_rate} Hz; at least {self.min_input_samples} are "
                    f"needed (the model expects 2-second windows)."
                )
            for row, index in enumerate(indices):
                prepared[index] = stacked[row]
        return prepared

    def prepare_whole_recording(
        self, waveform: npt.ArrayLike, sampling_rate: int, peak_normalize: bool = True
    ) -> npt.NDArray[np.int16]:
        """
        The v1 port's frontend up to its temporary WAV: a whole recording `(channels, samples)` (or `(samples,)`) in
        the source's sample type is read as float32, downmixed (mean over channels), resampled to `sampling_rate`
        in one `resample_poly` call, divided by its peak |x| when `peak_normalize` (and the peak is > 0), and
        written as 16-bit PCM: the result is that int16 audio, from which segments are cut. Its windows then go
        through `__call__` unchanged (on the int16 grid at the model's rate, both round trips are identities).
        This holds the whole recording; `whole_recording_orcahello.WholeRecordingAudio` gives the same samples
        streamed.
        """
        sampling_rate = self._check_sampling_rate(sampling_rate)
        mono = self.whole_recording_mono(waveform)
        divisor = math.gcd(self.sampling_rate, sampling_rate)
        up, down = self.sampling_rate // divisor, sampling_rate // divisor
        if up != down:
            mono = resample_poly(mono, up, down, axis=-1).astype(np.float32)
        peak = np.abs(mono).max() if peak_normalize and mono.size else None
        return self.whole_recording_int16(mono, peak)

    @staticmethod
    def whole_recording_mono(waveform: npt.ArrayLike) -> np.ndarray:
        """
        The v1 port's reading of `waveform` (`(channels, samples)` or `(samples,)`, the source's sample type):
        float32 as soundfile reads it (integer PCM scaled exactly as `to_production_float32` does, floats as they
        are), downmixed to the mean over channels. Sample by sample, so a block of a recording gives the samples
        the whole recording would.
        """
        samples = np.asarray(waveform)
        if samples.ndim == 1:
            samples = samples[None, :]
        samples = samples.astype(np.float32) if samples.dtype.kind == "f" else to_production_float32(samples)
        if samples.shape[0] > 1:
            return torch.from_numpy(np.ascontiguousarray(samples)).mean(dim=0).numpy()
        return samples[0]

    @staticmethod
    def whole_recording_int16(resampled: np.ndarray, peak: float | np.floating | None = None) -> np.ndarray:
        """
        The v1 port's temporary WAV from its float32 audio at the model's rate: divided by the recording's `peak`
        |x| (no division when it is None or 0), written as 16-bit PCM. Sample by sample, as `whole_recording_mono`.
        """
        if peak is not None and peak > 0:
            resampled = resampled / peak
        return (quantize_int16(resampled) * np.float32(32768.0)).astype(np.int16)

    def spectrogram(
        self, waveforms: torch.Tensor | npt.ArrayLike, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """
        Steps 6-8: float32 waveforms at `sampling_rate`, shape `(batch, samples)`, to the `(batch, 1, n_mels,
        num_frames)` model input. Runs on `device` (or the waveforms' device).
        """
        waveforms = torch.as_tensor(waveforms, dtype=torch.float32)
        if device is not None:
            waveforms = waveforms.to(device)
        if waveforms.ndim != 2:
            raise ValueError(f"Expected waveforms of shape (batch, samples), got {tuple(waveforms.shape)}")
        power = self._mel_power(waveforms)  # (batch, n_mels, frames)
        decibels = 10.0 * torch.log10(torch.clamp(power, min=1e-10))
        # The floor is relative to each window's own maximum; torchaudio's AmplitudeToDB on a (batch, mels, time)
        # stack would share one maximum across the batch.
        window_max = decibels.amax(dim=(-2, -1), keepdim=True)
        decibels = torch.maximum(decibels, window_max - self.top_db)
        frames = decibels.shape[-1]
        if frames >= self.num_frames:
            decibels = decibels[..., : self.num_frames]
        else:
            padding = decibels.new_full((*decibels.shape[:-1], self.num_frames - frames), float(self.padding_value))
            decibels = torch.cat([decibels, padding], dim=-1)
        return decibels.unsqueeze(1)

    def __call__(
        self,
        raw_audio: npt.ArrayLike | torch.Tensor | Sequence[npt.ArrayLike | torch.Tensor],
        sampling_rate: int | None = None,
        return_tensors: str | None = None,
        device: torch.device | str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """
        Featurize one window or a batch of windows.

        Args:
            raw_audio (`np.ndarray`, `torch.Tensor`, or a list of them):
                One window: a 1-D array `(samples,)`, or a 2-D multichannel array `(channels, samples)` (a
                `(samples, channels)` array, as soundfile returns, is recognised by its shape). A batch: a list of
                windows or a 3-D array `(batch, channels, samples)`. Samples are float in [-1, 1) or int16/int32 PCM.
            sampling_rate (`int`):
                Sample rate of `raw_audio`. Required: any rate is resampled to 20 kHz as production did.
            return_tensors (`str`, *optional*):
                `"pt"` for torch tensors, `"np"` (or `None`) for numpy arrays.
            device (`str` or `torch.device`, *optional*):
                Where to compute the spectrograms (e.g. `"cuda"`); the result stays there with `return_tensors="pt"`.

        Returns:
            [`BatchFeature`] with `input_features` of shape `(batch, 1, 256, 312)`.
        """
        if sampling_rate is None:
            raise ValueError(
                "sampling_rate is required: OrcaHello resamples any rate to 20 kHz, and guessing the rate would give "
                "silently wrong spectrograms. Call feature_extractor(audio, sampling_rate=48000)."
            )
        waveforms = self.prepare_waveforms(raw_audio, sampling_rate)
        features: list[Any] = [None] * len(waveforms)  # every slot is filled below, one length group at a time
        for indices in _indices_by_length(waveforms).values():
            batch = self.spectrogram(np.stack([waveforms[index] for index in indices]), device=device)
            for row, index in enumerate(indices):
                features[index] = batch[row]
        stacked = torch.stack(features)
        input_features: torch.Tensor | np.ndarray = stacked
        if return_tensors in (None, "np"):
            input_features = stacked.cpu().numpy()
        elif return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        return BatchFeature({"input_features": input_features})

    def _check_sampling_rate(self, sampling_rate):
        if isinstance(sampling_rate, (float, np.floating)) and float(sampling_rate).is_integer():
            sampling_rate = int(sampling_rate)
        if not isinstance(sampling_rate, (int, np.integer)) or isinstance(sampling_rate, bool) or sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be a positive whole number of Hz, got {sampling_rate!r}")
        return int(sampling_rate)

    @staticmethod
    def _as_window_list(raw_audio):
        if isinstance(raw_audio, torch.Tensor):
            raw_audio = raw_audio.detach().cpu().numpy()
        if isinstance(raw_audio, (list, tuple)):
            if len(raw_audio) == 0:
                raise ValueError("Empty batch: pass at least one waveform")
            if all(isinstance(item, (int, float, np.number)) for item in raw_audio):
                return [np.asarray(raw_audio, dtype=np.float32)]
            return list(raw_audio)
        if isinstance(raw_audio, np.ndarray):
            if raw_audio.ndim == 3:
                return list(raw_audio)
            if raw_audio.ndim in (1, 2):
                return [raw_audio]
            raise ValueError(
                f"Expected a waveform of shape (samples,) or (channels, samples), or a batch of shape (batch, "
                f"channels, samples); got an array of shape {raw_audio.shape}"
            )
        raise TypeError(
            f"Unsupported audio input of type {type(raw_audio).__name__}: pass a numpy array, a torch tensor, or a "
            f"list of them"
        )

    @staticmethod
    def _to_mono_float32(window, index):
        if isinstance(window, torch.Tensor):
            window = window.detach().cpu().numpy()
        window = np.asarray(window)
        if window.dtype == object or window.dtype.kind not in "iuf":
            raise TypeError(f"Window {index}: unsupported sample type {window.dtype}")
        if window.ndim == 2:
            try:
                window = channels_first(window)
            except ValueError as error:
                raise ValueError(f"Window {index}: {error}") from None
        elif window.ndim != 1:
            raise ValueError(f"Window {index}: expected shape (samples,) or (channels, samples), got {window.shape}")
        if window.shape[-1] == 0 or window.size == 0:
            raise ValueError(f"Window {index} is empty: no samples to score")
        if window.dtype.kind == "f" and not np.isfinite(window).all():
            raise ValueError(f"Window {index} contains NaN or infinite samples")
        samples = to_production_float32(window)
        if samples.ndim == 2:
            if samples.shape[0] == 1:
                samples = samples[0]
            else:
                # torch's float32 mean, as fastai_audio's downmix computed it
                samples = torch.from_numpy(np.ascontiguousarray(samples)).mean(dim=0).numpy()
        return samples

    def _mel_power(self, waveforms):
        """
        Exactly torchaudio's `MelSpectrogram(sample_rate=filterbank_sampling_rate, n_fft, hop_length, f_min, f_max,
        n_mels, pad=0)` (periodic Hann window, centred reflect-padded STFT, power 2, HTK mel, no normalisation), up to
        float32 rounding (~4e-5 dB), at under half its cost. The STFT's real and imaginary parts are squared in place
        of |X| (no square root), and each filter weight is applied to both squares, so that no intermediate is
        strided or transposed; since each triangular filter covers a few neighbouring frequency bins, the filterbank
        product is taken band by band, skipping the ~94% of its entries that are zero. On CPU the FFTs are scipy's
        (pocketfft: twice as fast as torch's for 2560 points) and each window is transformed on its own, which keeps
        its frames in cache; on other devices, torch's.
        """
        window, bands = self._mel_filterbank(waveforms.device)
        if waveforms.device.type == "cpu":
            return torch.from_numpy(self._mel_power_numpy(waveforms.numpy(), window.numpy(), bands))
        return self._mel_power_torch(waveforms, window, bands)

    def _mel_power_torch(self, waveforms, window, bands):
        """`_mel_power` with torch's STFT, on the waveforms' device (GPUs)."""
        spectrum = torch.stft(
            waveforms,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window=window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        # (batch, frames, bins, re/im) as the STFT laid it out in memory, flattened to (batch, frames, 2 * bins).
        interleaved = torch.view_as_real(spectrum.transpose(-1, -2))
        squares = interleaved.reshape(*interleaved.shape[:-2], -1).square()
        mel = squares.new_zeros((*squares.shape[:-1], self.feature_size))
        for first_filter, last_filter, first_value, last_value, weights in bands:
            mel[..., first_filter:last_filter] = squares[..., first_value:last_value] @ weights
        return mel.transpose(-1, -2)

    def _mel_power_numpy(self, waveforms, window, bands):
        """
        `_mel_power` for float32 numpy waveforms `(batch, samples)`: the same steps as torch's centred STFT, and the
        filterbank as a sparse matrix, whose product uses no BLAS: BLAS threads keep spinning after a product, and
        here they would take CPU from the model scoring beside the featurizing thread.

        Frames are transformed `FFT_CHUNK_BYTES` at a time: buffers that small come from the heap and are reused,
        where larger ones would be fresh memory mappings (the pipeline fixes glibc's mmap threshold at 1 MB to keep
        memory flat), page-faulted in anew for every window, which made this 2.6x slower.
        """
        half = self.n_fft // 2
        padded = np.pad(waveforms, ((0, 0), (half, half)), mode="reflect")  # torch's "reflect": edge not repeated
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft, axis=-1)[:, :: self.hop_length]
        filterbank = self._sparse_filterbank(bands)
        num_frames = frames.shape[1]
        chunk = max(1, FFT_CHUNK_BYTES // (8 * (self.n_fft // 2 + 1)))
        windowed = np.empty((min(chunk, num_frames), self.n_fft), dtype=np.float32)
        mel = np.empty((waveforms.shape[0], self.feature_size, num_frames), dtype=np.float32)
        for index in range(waveforms.shape[0]):
            for start in range(0, num_frames, chunk):
                stop = min(start + chunk, num_frames)
                np.multiply(frames[index, start:stop], window, out=windowed[: stop - start])
                spectrum = scipy_fft.rfft(windowed[: stop - start], axis=-1)  # complex64: scipy keeps float32
                squares = spectrum.view(np.float32)  # interleaved (re, im), as in the torch path
                np.square(squares, out=squares)
                mel[index, :, start:stop] = filterbank @ squares.T
        return mel

    def _sparse_filterbank(self, bands):
        """The interleaved filterbank of `bands` as a `(n_mels, 2 * bins)` CSR matrix, built once."""
        if "sparse" not in self._mel_transforms:
            dense = np.zeros((self.feature_size, self.n_fft + 2), dtype=np.float32)
            for first_filter, last_filter, first_value, last_value, weights in bands:
                dense[first_filter:last_filter, first_value:last_value] = weights.cpu().numpy().T
            self._mel_transforms["sparse"] = scipy_sparse.csr_matrix(dense)
        return self._mel_transforms["sparse"]

    def _mel_filterbank(self, device):
        """
        The STFT window and the mel filterbank in bands of 16 filters `(first_filter, last_filter, first_value,
        last_value, weights)`, over the interleaved (re, im) values of the STFT: each frequency bin's weight appears
        twice, once for the square of each part. Built lazily, never in __init__ (these tensors must not be serialized into
        preprocessor_config.json), and cached per device so that nothing is rebuilt per call.
        """
        key = str(device)
        if key not in self._mel_transforms:
            if torchaudio is None:
                raise ImportError("OrcaHelloFeatureExtractor needs torchaudio: pip install torchaudio")
            with warnings.catch_warnings():
                # The 18 empty top filters are production's 16 kHz quirk, reproduced on purpose.
                warnings.filterwarnings("ignore", message=".*all zero values.*")
                filterbank = torchaudio.functional.melscale_fbanks(
                    self.n_fft // 2 + 1,
                    f_min=float(self.f_min),
                    f_max=float(self.f_max),
                    n_mels=self.feature_size,
                    sample_rate=self.filterbank_sampling_rate,
                    norm=None,
                    mel_scale="htk",
                )
            bands = []
            for first_filter in range(0, self.feature_size, 16):
                weights = filterbank[:, first_filter : first_filter + 16]
                bins = torch.nonzero(weights.abs().sum(dim=1) > 0).flatten()
                if bins.numel() == 0:  # empty filters give zero power, as the full product would
                    continue
                first_bin, last_bin = int(bins[0]), int(bins[-1]) + 1
                interleaved_weights = weights[first_bin:last_bin].repeat_interleave(2, dim=0)
                bands.append(
                    (
                        first_filter,
                        first_filter + weights.shape[1],
                        2 * first_bin,
                        2 * last_bin,
                        interleaved_weights.contiguous().to(device),
                    )
                )
            window = torch.hann_window(self.n_fft, periodic=True, device=device)
            self._mel_transforms[key] = (window, bands)
        return self._mel_transforms[key]


def model_feature_extractor(model_path: str | None) -> OrcaHelloFeatureExtractor:
    """
    The feature extractor of the model at `model_path` (its folder's or Hub repo's `preprocessor_config.json`); the
    default settings only for a model built in memory (no path). A model whose settings cannot be loaded is refused
    with a one-line error naming it: scoring with settings it was not saved with would give wrong numbers silently.
    """
    if not model_path:
        return OrcaHelloFeatureExtractor()
    try:
        return OrcaHelloFeatureExtractor.from_pretrained(model_path)
    except Exception as error:  # a missing file, bad JSON, a bad value: transformers raises several kinds
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(
            f"{model_path}: cannot load the model's feature extractor settings (preprocessor_config.json): {reason}"
        ) from None
