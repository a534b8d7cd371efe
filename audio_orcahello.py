# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Audio input for the OrcaHello pipeline: recordings and the windows the detector scores.

A recording (path, bytes, array, `datasets` row, or an HLS stream: `.m3u8` playlist or folder of `.ts` segments) is
opened as a `Recording` that is read window by window, never whole; `scoring_windows` cuts it into 2-second windows
every second, exactly as production OrcaHello does, and `featurize_windows` turns a block of them into the model's
spectrograms. The pipeline, `orcahello batch`, `orcahello live` and fine-tuning all read audio through this module.
"""

import io
import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

try:
    from .feature_extraction_orcahello import (
        OrcaHelloFeatureExtractor,
        channels_first,
        port_segment_bounds,
        window_bounds,
    )
    from .hls_orcahello import HLSAudio, open_hls
    from .hls_playlist_orcahello import HLSInputError, is_hls_input
    from .hls_timeline_orcahello import file_name_timeline
    from .vocabulary_orcahello import MIN_SAMPLING_RATE, is_url
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from feature_extraction_orcahello import (
        OrcaHelloFeatureExtractor,
        channels_first,
        port_segment_bounds,
        window_bounds,
    )
    from hls_orcahello import HLSAudio, open_hls
    from hls_playlist_orcahello import HLSInputError, is_hls_input
    from hls_timeline_orcahello import file_name_timeline
    from vocabulary_orcahello import MIN_SAMPLING_RATE, is_url


# Windows featurized together: enough to vectorize resampling, few enough that the model starts soon and that a
# day-long file never holds more than a few MB of audio and spectrograms at once (8 was the fastest of 4 to 32).
FRONTEND_BLOCK_WINDOWS = 8


class AudioInputError(ValueError):
    """
    Raised for audio the detector cannot score: unreadable, truncated, too short, non-finite, wrong type, a sample
    rate below `MIN_SAMPLING_RATE`; for HLS, a bad or empty playlist, a missing or undecodable segment, an
    unreachable URL.
    """


def check_sampling_rate(sampling_rate: float, name: str) -> None:
    """
    Refuse a rate below `MIN_SAMPLING_RATE` (see there why) with a one-line `AudioInputError`. Rates from there to
    `FULL_BAND_SAMPLING_RATE` are scored, with a warning in the result (`results_orcahello.recording_summary`).
    """
    if sampling_rate < MIN_SAMPLING_RATE:
        raise AudioInputError(
            f"{name}: sampled at {sampling_rate:g} Hz, below the {MIN_SAMPLING_RATE} Hz OrcaHello scores at the "
            f"least (the model hears 0-10 kHz); score recordings made at {MIN_SAMPLING_RATE} Hz or more"
        )


# ----------------------------------------------------------------------------------------------------------------
# Reading recordings
# ----------------------------------------------------------------------------------------------------------------

# Sample types production's readers kept: integer PCM as integers (exact), anything else as float.
_SOUNDFILE_READ_DTYPE = {"PCM_16": "int16", "PCM_S8": "int16", "PCM_U8": "int16", "PCM_24": "int32", "PCM_32": "int32"}


def wav_declared_frames(header: bytes, bytes_per_frame: int) -> int | None:
    """
    Frames a RIFF/WAVE header announces in its data chunk, or None when it announces nothing usable (not a WAV,
    or a streamed WAV whose size fields hold a placeholder). libsndfile quietly shortens a truncated WAV to what
    is present, so this is how truncation is noticed.
    """
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE" or bytes_per_frame <= 0:
        return None
    position = 12
    while position + 8 <= len(header):
        chunk_id, chunk_size = (
            header[position : position + 4],
            int.from_bytes(header[position + 4 : position + 8], "little"),
        )
        if chunk_id == b"data":
            if chunk_size in (0, 0xFFFFFFFF, 0x7FFFFFFF) or chunk_size % bytes_per_frame:
                return None
            return chunk_size // bytes_per_frame
        position += 8 + chunk_size + (chunk_size & 1)
    return None


class Recording:
    """
    A recording the pipeline reads window by window: a sound file (read in blocks, never whole), an in-memory array,
    or an HLS stream (decoded forward as it is read, see `hls_orcahello`). `read(start, stop)` returns samples
    `[start, stop)` as `(channels, samples)` in the source's own sample type (int16/int32 PCM stay integers; HLS
    gives int16, as the WAV production converts it to), which is what production's frontend saw.

    `timeline` is, for HLS, a dict with `start_time_utc` (Unix time or None), `anchors` (the UTC time line), `gaps`
    (`hls_timeline_orcahello.Gap`s), `source` and `warnings` (see `hls_orcahello.HLSAudio.timeline`); for a file whose
    name says when it started (`...20240131T235959Z...`, AudioMoth's `20240131_235959.WAV`), the same with that
    start and no gaps (`hls_timeline_orcahello.file_name_timeline`); else None.
    """

    # Only on a whole recording resampled for the v1 frontend (`whole_recording_audio`): the source's rate and length.
    source_sampling_rate: int
    source_num_samples: int

    def __init__(
        self,
        name: str,
        sampling_rate: int,
        num_samples: int,
        num_channels: int,
        array: np.ndarray | None = None,
        sound_file: Any = None,
        read_dtype: str | None = None,
        hls_audio: HLSAudio | None = None,
    ) -> None:
        self.name = name
        self.sampling_rate = int(sampling_rate)
        self.num_samples = int(num_samples)
        self.num_channels = int(num_channels)
        self._array = array
        self._sound_file = sound_file
        self._read_dtype = read_dtype
        self._hls_audio = hls_audio
        self.timeline = hls_audio.timeline() if hls_audio is not None else file_name_timeline(name)
        # The largest |x| of the float samples read so far (0 for integer PCM and HLS): see `largest_float_sample`.
        self._largest_float_sample = 0.0
        if array is not None and array.dtype.kind == "f":
            self._largest_float_sample = float(np.abs(array).max())

    @property
    def largest_float_sample(self) -> float:
        """
        The largest |x| of the recording's float samples: of the whole array for an in-memory recording, of what
        `read` has returned so far for a sound file; 0 for integer PCM and HLS streams, whose samples cannot leave
        full scale. Results warn when it exceeds `FLOAT_SAMPLE_WARNING_PEAK` (see there why).
        """
        return self._largest_float_sample

    @property
    def duration_seconds(self) -> float:
        return self.num_samples / self.sampling_rate

    @classmethod
    def from_file(
        cls,
        source: str | os.PathLike | bytes | bytearray | memoryview,
        name: str | None = None,
        allow_other_hosts: bool = False,
    ) -> "Recording":
        """
        Open a path or the bytes of a sound file (WAV, FLAC, OGG, MP3: whatever libsndfile decodes), or an HLS input
        (`allow_other_hosts`: see `from_hls`).
        """
        import soundfile

        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if is_hls_input(path):
                return cls.from_hls(path, name=name, allow_other_hosts=allow_other_hosts)
            if is_url(path):
                raise AudioInputError(
                    f"{path}: URLs are not fetched except HLS playlists (.m3u8); download the file first"
                )
            if not os.path.exists(path):
                raise AudioInputError(f"{path}: no such file")
            if os.path.isdir(path):
                raise AudioInputError(
                    f"{path}: is a directory without .ts segments, not a sound file, an .m3u8 playlist or an HLS "
                    f"segment folder"
                )
            name = name or path
            opener = path
        else:
            name = name or "<bytes>"
            if len(source) == 0:
                raise AudioInputError(f"{name}: empty input, no audio bytes")
            opener = io.BytesIO(bytes(source))
        try:
            sound_file = soundfile.SoundFile(opener)
        except Exception as error:  # libsndfile reports every format problem as a RuntimeError/LibsndfileError
            raise AudioInputError(f"{name}: cannot decode audio ({error})") from None
        try:
            check_sampling_rate(sound_file.samplerate, name)
        except AudioInputError:
            sound_file.close()
            raise
        read_dtype = _SOUNDFILE_READ_DTYPE.get(sound_file.subtype, "float32")
        if sound_file.format == "WAV":
            bits = {"PCM_U8": 8, "PCM_S8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}
            bytes_per_frame = bits.get(sound_file.subtype, 0) // 8 * sound_file.channels
            if isinstance(opener, io.BytesIO):
                header = opener.getvalue()[:65536]
            else:
                with open(opener, "rb") as handle:
                    header = handle.read(65536)
            declared = wav_declared_frames(header, bytes_per_frame)
            if declared is not None and declared > sound_file.frames:
                sound_file.close()
                raise AudioInputError(
                    f"{name}: truncated WAV: its header announces {declared} samples "
                    f"({declared / sound_file.samplerate:.3f} s) but the file holds {sound_file.frames}"
                )
        return cls(
            name,
            sound_file.samplerate,
            sound_file.frames,
            sound_file.channels,
            sound_file=sound_file,
            read_dtype=read_dtype,
        )

    @classmethod
    def from_hls(
        cls, source: str | os.PathLike, name: str | None = None, allow_other_hosts: bool = False
    ) -> "Recording":
        """
        Open an HLS playlist (path or http(s) URL), a folder of `.ts` segments or one `.ts` segment. Segments and
        redirects on hosts other than the playlist's are refused unless `allow_other_hosts`.
        """
        try:
            audio = open_hls(source, name=name, allow_other_hosts=allow_other_hosts)
        except HLSInputError as error:
            raise AudioInputError(str(error)) from None
        try:
            check_sampling_rate(audio.sampling_rate, audio.name)
        except AudioInputError:
            audio.close()
            raise
        return cls(audio.name, audio.sampling_rate, audio.num_samples, audio.num_channels, hls_audio=audio)

    @classmethod
    def from_array(
        cls, array: np.ndarray | torch.Tensor, sampling_rate: float | None, name: str = "<array>"
    ) -> "Recording":
        """An in-memory recording: `(samples,)` or `(channels, samples)` (either order), integer or float samples."""
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        array = np.asarray(array)
        if array.dtype == object or array.dtype.kind not in "iuf":
            raise AudioInputError(f"{name}: unsupported sample type {array.dtype}")
        if array.ndim not in (1, 2):
            raise AudioInputError(
                f"{name}: expected audio of shape (samples,) or (channels, samples), got {array.shape}"
            )
        if array.size == 0:
            raise AudioInputError(f"{name}: empty audio, no samples")
        if sampling_rate is None:
            raise AudioInputError(
                f"{name}: an array needs its sampling_rate (e.g. pipe(audio, sampling_rate=48000) or "
                f"{{'array': audio, 'sampling_rate': 48000}}); OrcaHello accepts rates from 8 kHz up"
            )
        if not float(sampling_rate).is_integer() or sampling_rate <= 0:
            raise AudioInputError(f"{name}: sampling_rate must be a positive whole number of Hz, got {sampling_rate!r}")
        check_sampling_rate(sampling_rate, name)
        array = channels_first(array) if array.ndim == 2 else array[None, :]
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise AudioInputError(f"{name}: audio contains NaN or infinite samples")
        recording = cls(name, int(sampling_rate), array.shape[-1], array.shape[0], array=array)
        if recording.largest_float_sample > float(np.finfo(np.float32).max):
            # float64 samples the frontend's float32 cannot hold: they would be infinite there.
            raise AudioInputError(
                f"{name}: audio holds samples up to {recording.largest_float_sample:.3g}, beyond float32's range "
                f"(the frontend reads float32): they are infinite there"
            )
        return recording

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples `[start, stop)` as `(channels, samples)`, in the source's own sample type."""
        if self._array is not None:
            return self._array[:, start:stop]
        if self._hls_audio is not None:
            try:
                return self._hls_audio.read(start, stop)
            except HLSInputError as error:
                raise AudioInputError(str(error)) from None
        try:
            self._sound_file.seek(start)
            block = self._sound_file.read(stop - start, dtype=self._read_dtype, always_2d=True).T
        except Exception as error:  # a decoder error in the middle of a compressed stream
            raise AudioInputError(f"{self.name}: cannot decode audio at sample {start} ({error})") from None
        if block.shape[-1] != stop - start:
            raise AudioInputError(
                f"{self.name}: truncated: its header announces {self.num_samples} samples but reading stopped at "
                f"{start + block.shape[-1]}"
            )
        if block.dtype.kind == "f" and block.size:
            if not np.isfinite(block).all():
                raise AudioInputError(f"{self.name}: audio contains NaN or infinite samples")
            self._largest_float_sample = max(self._largest_float_sample, float(np.abs(block).max()))
        return block

    def close(self) -> None:
        """Release the sound file or the HLS stream (an array holds nothing to release)."""
        if self._sound_file is not None:
            self._sound_file.close()
        if self._hls_audio is not None:
            self._hls_audio.close()


def open_recording(inputs: Any, sampling_rate: float | None = None, allow_other_hosts: bool = False) -> Recording:
    """
    Turn any input the pipeline accepts into a `Recording`. `allow_other_hosts`: an HLS playlist's segments (and
    redirects) may be on other hosts than the playlist's.
    """
    if isinstance(inputs, Recording):
        return inputs
    if isinstance(inputs, (str, os.PathLike, bytes, bytearray, memoryview)):
        return Recording.from_file(inputs, allow_other_hosts=allow_other_hosts)
    if isinstance(inputs, dict):
        if "array" in inputs or "raw" in inputs:
            array = inputs["array"] if "array" in inputs else inputs["raw"]
            rate = inputs.get("sampling_rate", sampling_rate)
            name = inputs.get("path") or "<array>"
            return Recording.from_array(array, rate, name=name)
        if inputs.get("bytes") is not None:  # datasets Audio(decode=False) row
            return Recording.from_file(inputs["bytes"], name=inputs.get("path"))
        if inputs.get("path"):
            return Recording.from_file(inputs["path"], allow_other_hosts=allow_other_hosts)
        raise AudioInputError(
            f"A dict input needs 'array' (or 'raw') and 'sampling_rate', or 'path'/'bytes'; got keys {sorted(inputs)}"
        )
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        return Recording.from_array(inputs, sampling_rate)
    if hasattr(inputs, "get_all_samples"):  # a torchcodec AudioDecoder, as datasets >= 4 returns for Audio columns
        samples = inputs.get_all_samples()
        return Recording.from_array(samples.data, samples.sample_rate, name="<decoded audio>")
    raise AudioInputError(
        f"Unsupported input of type {type(inputs).__name__}: pass a file path, the bytes of a sound file, a numpy "
        f"array or torch tensor with sampling_rate, or a dict {{'array', 'sampling_rate'}}"
    )


# ----------------------------------------------------------------------------------------------------------------
# Windows and their features (shared by the pipeline and `orcahello batch`)
# ----------------------------------------------------------------------------------------------------------------


def scoring_windows(
    recording: Recording,
    window_seconds: float = 2.0,
    hop_seconds: float = 1.0,
    whole_recording_frontend: bool = False,
    strict_segments: bool = True,
    model_sampling_rate: int = 20000,
) -> list[tuple[int, int]]:
    """
    The `(start, stop)` sample bounds of every window of `recording` the detector scores; `AudioInputError` when the
    recording is shorter than one window (production crashes there).

    With `whole_recording_frontend` (the v1 port), the bounds are the port's millisecond segments of the recording
    once resampled to `model_sampling_rate` (`resample_poly` gives `ceil(samples * up / down)` samples), in samples
    of that audio: the recording `whole_recording_orcahello.whole_recording_audio` makes.
    """
    if whole_recording_frontend:
        divisor = math.gcd(model_sampling_rate, recording.sampling_rate)
        up, down = model_sampling_rate // divisor, recording.sampling_rate // divisor
        resampled = -(-recording.num_samples * up // down)
        bounds = port_segment_bounds(resampled, model_sampling_rate, window_seconds, hop_seconds, strict_segments)
        rule = "the v1 port's segments"
    else:
        bounds = window_bounds(recording.num_samples, recording.sampling_rate, window_seconds, hop_seconds)
        rule = "production OrcaHello crashes on such files"
    if not bounds:
        raise AudioInputError(
            f"{recording.name}: {recording.duration_seconds:.3f} s of audio is shorter than one "
            f"{window_seconds:g}-second window; nothing to score ({rule})"
        )
    return bounds


def recording_info(
    recording: Recording, num_windows: int, window_seconds: float = 2.0, hop_seconds: float = 1.0
) -> dict:
    """What `build_file_result` needs to know about a recording besides its window scores."""
    return {
        "name": recording.name,
        "sampling_rate": getattr(recording, "source_sampling_rate", recording.sampling_rate),
        "num_samples": getattr(recording, "source_num_samples", recording.num_samples),
        "num_channels": recording.num_channels,
        "num_windows": num_windows,
        "window_seconds": window_seconds,
        "hop_seconds": hop_seconds,
        # HLS inputs: UTC anchors, gaps and their warnings (None for files and arrays).
        "timeline": getattr(recording, "timeline", None),
    }


def featurize_windows(
    recording: Recording,
    block_bounds: list[tuple[int, int]],
    feature_extractor: OrcaHelloFeatureExtractor,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, list[bool]]:
    """
    Read one block of consecutive windows (`block_bounds`, a slice of `scoring_windows`) from `recording` in a single
    read and featurize them. Returns `(input_features, silent)`: a `(windows, 1, 256, 312)` tensor and, per window,
    whether it is digital silence (constant samples). With `device` (a GPU), the spectrograms are computed there and
    stay there.
    """
    first_sample, last_sample = block_bounds[0][0], block_bounds[-1][1]
    audio = recording.read(first_sample, last_sample)
    windows = [audio[:, start - first_sample : stop - first_sample] for start, stop in block_bounds]
    features = feature_extractor(windows, sampling_rate=recording.sampling_rate, return_tensors="pt", device=device)
    features = features["input_features"]
    if dtype is not None:
        features = features.to(dtype)
    # Digital silence is scored as production would (a flat -100 dB image), but flagged.
    silent = [bool(np.all(window == window.flat[0])) for window in windows]
    return features, silent


def featurized_blocks(
    recording: Recording,
    bounds: list[tuple[int, int]],
    feature_extractor: OrcaHelloFeatureExtractor,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> Iterator[tuple[int, torch.Tensor, list[bool]]]:
    """
    `(first window, input_features, silent)` for consecutive blocks of the windows `bounds` of `recording`, each
    featurized (`featurize_windows`, with `dtype` and `device`) in a background thread while the caller works on the
    one before. Leaves the recording open.
    """

    def featurize(position):
        block = bounds[block_starts[position] : block_starts[position + 1]]
        return featurize_windows(recording, block, feature_extractor, dtype=dtype, device=device)

    if not bounds:
        return
    # Small blocks: the model starts on its first batch soon, and every buffer stays small (see
    # `process_memory_orcahello.return_large_buffers_to_the_system`). Each window is featurized on its own: how
    # windows are grouped does not change a single value.
    block_starts = list(range(0, len(bounds), FRONTEND_BLOCK_WINDOWS)) + [len(bounds)]
    # Resampling, the STFT and the engines all release the GIL, so the frontend mostly hides behind the model.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orcahello-frontend")
    try:
        pending = executor.submit(featurize, 0)
        for position, block_start in enumerate(block_starts[:-1]):
            features, silent = pending.result()
            if position + 2 < len(block_starts):
                pending = executor.submit(featurize, position + 1)
            yield block_start, features, silent
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
