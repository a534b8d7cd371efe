# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Decoding one HLS recording, segment by segment, into the samples production would score: `HLSStream`, which
`orcahello detect` and `orcahello batch` (through `hls_orcahello.HLSAudio`, fed a finished input's segments at once)
and `orcahello live` (fed each segment as the stream grows) all read.

Production (orca-hls-utils) concatenates about six segments' bytes into one `.ts` file and converts it with
`ffmpeg -i clip.ts clip.wav`: 16-bit PCM at the stream's rate and channel count. The segments are decoded here as ONE
continuous AAC stream (every packet through one decoder, in order, as ffmpeg decodes the concatenated file),
converting to int16 with swresample as ffmpeg's WAV output does: the samples are those of the WAV production would
have made from the same segments. That also means a recording can only be decoded exactly from its first segment:
AAC's perceptual noise substitution draws from a random generator that runs through the whole stream, so the same
packets decoded by a decoder started later give other samples.

**Memory.** Each segment is demuxed and decoded once as it is added: that checks it, counts its samples exactly, and
feeds the time line (`hls_timeline_orcahello.StreamTimeLine`: gaps, UTC). Only the compressed AAC packets are kept
(about 40 MB an hour for mono, a tenth of the decoded audio); `read` decodes them again, forward, with a second
decoder that has seen every packet from the first, keeping only the samples a caller may still ask for
(`forget_before`). A rewindable stream (a finished input) keeps every packet, so that reading backwards decodes
again from the first (correct, only slower); a live one lets go of the packets, samples and time line before what
it has consumed, so that its memory stays flat however long the stream runs.
"""

import io
import urllib.parse
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

try:
    from .hls_playlist_orcahello import HLSInputError, Segment
    from .hls_timeline_orcahello import Gap, PacketTiming, StreamTimeLine
    from .vocabulary_orcahello import SEGMENT_SUFFIX, is_url
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from hls_playlist_orcahello import HLSInputError, Segment
    from hls_timeline_orcahello import Gap, PacketTiming, StreamTimeLine
    from vocabulary_orcahello import SEGMENT_SUFFIX, is_url


def import_av(name: str) -> Any:
    """PyAV, imported only when an HLS input arrives (WAV and FLAC inputs never need it)."""
    try:
        import av
    except ImportError:
        raise HLSInputError(f"{name}: HLS input needs PyAV, FFmpeg's libraries for Python: pip install av") from None
    return av


def samples_from_chunks(
    chunks: Iterable[tuple[int, np.ndarray]], start: int, stop: int, num_channels: int | None
) -> np.ndarray:
    """
    Samples `[start, stop)` as int16 `(channels, samples)` from decoded `chunks`, `(first sample, array)` pairs in
    order; an empty span gives an empty array.
    """
    pieces = []
    for first, chunk in chunks:
        if first >= stop:
            break
        low, high = max(start - first, 0), min(stop - first, chunk.shape[1])
        if high > low:
            pieces.append(chunk[:, low:high])
    if not pieces:
        return np.zeros((num_channels or 1, 0), dtype=np.int16)
    return np.concatenate(pieces, axis=1) if len(pieces) > 1 else pieces[0].copy()


class HLSStream:
    """
    One recording decoded segment by segment: `add_segment` decodes a segment's bytes onto the end, `add_marked_gap`
    notes a segment the playlist marks `#EXT-X-GAP`, `finish` ends it; `read(start, stop)` gives int16 samples
    `(channels, samples)`, `forget_before(sample)` says what will not be asked for again. `num_samples`,
    `sampling_rate`, `num_channels`, `codec_name`, and the time line of what was added so far: `anchors`, `gaps`,
    `start_time_utc`, `start_time_source`, `warnings`. Not thread-safe: one reader at a time.

    Args:
        name (`str`): what messages call it.
        nominal_seconds (`float` or None): the mean segment duration (a playlist's EXTINF), or None to take it from
            the decoded segments at `finish` (see `StreamTimeLine`).
        folder_epoch (`int` or None): the Unix time the stream's folder is named by.
        count_missing_numbers (`bool`, *optional*, False): a gap in the segments' numbers is a gap (a folder).
        rewindable (`bool`, *optional*, True): keep every packet so that any sample can be read again; False (live):
            `forget_before` lets go of the packets, samples and time line before it for good.
    """

    def __init__(
        self,
        name: str,
        nominal_seconds: float | None,
        folder_epoch: int | None,
        count_missing_numbers: bool = False,
        rewindable: bool = True,
    ) -> None:
        self.name = name
        self.rewindable = rewindable
        self._av = import_av(name)
        self.time_line = StreamTimeLine(nominal_seconds, folder_epoch, count_missing_numbers)
        self.sampling_rate: int | None = None
        self.num_channels: int | None = None
        self.num_samples = 0
        self.codec_name: str | None = None
        self.finished = False
        self.max_buffered_samples = 0
        self._closed = False
        self._warnings: list[str] = []  # decoding's own (frames skipped); the time line has its own
        self._layout_name: str | None = None
        self._extradata: bytes | None = None
        # PyAV's objects are handled as untyped here, as `import_av` returns the module.
        self._counter: Any = None  # the decoder that counts samples as segments are added
        self._last_segment: Segment | None = None  # the last decoded segment, for the samples a flush adds
        # Compressed AAC packets, in stream order: what `read` decodes again. `_packets[0]` is packet number
        # `_first_packet` (a live stream drops the ones already read).
        self._packets: list[bytes] = []
        self._first_packet = 0
        self._rejected: set[int] = set()  # numbers of the packets the decoder rejected
        # Reading: a second decoder that has seen every packet from the first (made on the first read), and the
        # samples it decoded that may still be asked for.
        self._reader: Any = None
        self._resampler: Any = None
        self._next_packet = 0
        self._flushed = False
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (first sample, int16 array (channels, samples))
        self._decoded_end = 0
        self._held_from = 0  # nothing before it will be asked for (`forget_before`)

    # -- the time line, as decoded so far ---------------------------------------------------------------------

    @property
    def anchors(self) -> list:
        return self.time_line.anchors

    @property
    def gaps(self) -> list[Gap]:
        return self.time_line.gaps

    @property
    def start_time_utc(self) -> float | None:
        return self.time_line.start_time_utc

    @property
    def start_time_source(self) -> str | None:
        return self.time_line.start_time_source

    @property
    def warnings(self) -> list[str]:
        """Decoding's warnings (AAC frames skipped), then the time line's (an estimated start)."""
        return self._warnings + self.time_line.warnings

    # -- adding segments ----------------------------------------------------------------------------------------

    def add_marked_gap(self, segment: Segment) -> None:
        """A segment the playlist marks `#EXT-X-GAP`: no audio, only its duration for the time line."""
        self._check_open()
        segment.first_sample = self.num_samples
        self.time_line.add_marked_gap(segment)

    def add_segment(self, segment: Segment, data: bytes) -> int:
        """
        Decode one playable segment (its bytes) onto the end of the recording; returns its sample count. Raises
        `HLSInputError` (one line) for a segment that is not media, holds no audio, changes codec or format, or
        decodes to nothing; one that breaks off part-way keeps what decoded before the error, then raises.
        """
        self._check_open()
        av = self._av
        segment.first_sample = self.num_samples
        container = self._open_container(segment, data)
        packets, failures, first_failure, broken_off = [], 0, None, None
        try:
            if not container.streams.audio:
                raise HLSInputError(f"{self.name}: segment {segment.name} holds no audio stream")
            stream = container.streams.audio[0]
            self._check_codec(stream.codec_context, segment)
            time_base = stream.time_base
            for packet in container.demux(stream):
                if not packet.size:  # the demuxer's end-of-stream marker
                    continue
                number = self._first_packet + len(self._packets)
                self._packets.append(bytes(packet))
                try:
                    frames = self._counter.decode(packet)
                except (av.error.FFmpegError, ValueError) as error:
                    # ffmpeg skips a frame its decoder rejects (a segment cut short, a damaged byte) and goes on,
                    # so production's WAV lacks it: skip it too. It is still fed to the decoder when reading, so
                    # the decoder's state is the one ffmpeg's had.
                    failures += 1
                    first_failure = first_failure or str(error)
                    self._rejected.add(number)
                    continue
                samples = self._count(frames, segment)
                timestamp = (packet.pts, time_base) if packet.pts is not None and time_base is not None else None
                packets.append(PacketTiming(timestamp, samples))
                self.num_samples += samples
        except (av.error.FFmpegError, OSError) as error:
            broken_off = HLSInputError(f"{self.name}: segment {segment.name} cannot be demuxed ({error})")
        finally:
            container.close()
        segment.num_samples = self.num_samples - segment.first_sample
        if segment.num_samples == 0:
            why = f"does not decode ({first_failure})" if failures else "holds no audio"
            raise broken_off or HLSInputError(f"{self.name}: segment {segment.name} {why}")
        if failures:
            self._warnings.append(
                f"{failures} AAC frame(s) of {segment.name} do not decode ({first_failure}): skipped, as ffmpeg "
                f"does when it converts the segments"
            )
        self.time_line.add_segment(segment, packets, self.sampling_rate)
        self._last_segment = segment
        if broken_off is not None:
            raise broken_off
        return segment.num_samples

    def finish(self) -> None:
        """The recording ended (its playlist's end, a new stream folder): count what the decoder still holds."""
        if self.finished:
            return
        self.finished = True
        if self._counter is not None:
            assert self._last_segment is not None  # the decoder is made for the first segment
            for frame in self._counter.decode(None):
                # AAC has no decoder delay; whatever a codec holds is counted
                self.num_samples += frame.samples
                self._last_segment.num_samples += frame.samples
        self.time_line.finish()

    def close(self) -> None:
        """Let go of the packets and decoded samples held: the stream cannot be read after."""
        self._packets.clear()
        self._chunks.clear()
        self._closed = True

    def _check_open(self) -> None:
        if self.finished:
            raise HLSInputError(f"{self.name}: the recording has ended; no segment can be added")

    def _open_container(self, segment: Segment, data: bytes) -> Any:
        av = self._av
        # HLS segments named .ts are MPEG-TS; saying so keeps a damaged one from being probed as something else.
        path = urllib.parse.urlsplit(segment.location).path if is_url(segment.location) else segment.location
        container_format = "mpegts" if path.lower().endswith(SEGMENT_SUFFIX) else None
        try:
            return av.open(io.BytesIO(data), format=container_format)
        except (av.error.FFmpegError, OSError, ValueError) as error:
            raise HLSInputError(f"{self.name}: segment {segment.name} is not readable media ({error})") from None

    def _check_codec(self, codec_context: Any, segment: Segment) -> None:
        """The first segment sets the stream's codec (and starts the counting decoder); the others must share it."""
        if self._counter is None:
            self.codec_name, self._extradata = codec_context.name, codec_context.extradata
            self._counter = self._new_decoder()
        elif codec_context.name != self.codec_name:
            raise HLSInputError(
                f"{self.name}: segment {segment.name} is {codec_context.name}, the stream before it "
                f"{self.codec_name}: one recording needs one codec"
            )

    def _count(self, frames: Sequence[Any], segment: Segment) -> int:
        """The samples of decoded `frames`; the first sets the stream's rate and channels, the others must match."""
        samples = 0
        for frame in frames:
            rate, channels = frame.sample_rate, len(frame.layout.channels)
            if self.sampling_rate is None:
                self.sampling_rate, self.num_channels, self._layout_name = rate, channels, frame.layout.name
            elif (rate, channels) != (self.sampling_rate, self.num_channels):
                raise HLSInputError(
                    f"{self.name}: segment {segment.name} changes the audio from {self.sampling_rate} Hz "
                    f"{self.num_channels} ch to {rate} Hz {channels} ch: score the parts separately"
                )
            samples += frame.samples
        return samples

    def _new_decoder(self) -> Any:
        """
        One decoder for the whole stream, as ffmpeg has for the concatenated segments. AAC in MPEG-TS carries its
        configuration in every frame's ADTS header, so the codec's name (and extradata, if any) is all it needs.
        """
        decoder = self._av.CodecContext.create(self.codec_name, "r")
        if self._extradata:
            decoder.extradata = self._extradata
        return decoder

    # -- reading: decode forward, keep only what may still be asked for ------------------------------------------

    def read(self, start: int, stop: int) -> np.ndarray:
        """
        Samples `[start, stop)` of the decoded stream as int16 `(channels, samples)`. Before what `forget_before`
        let go of, a rewindable stream decodes again from its first packet; a live one refuses.
        """
        start, stop = int(start), int(stop)
        if self._closed:
            raise HLSInputError(f"{self.name}: closed: it cannot be read")
        if not 0 <= start <= stop <= self.num_samples:
            raise HLSInputError(f"{self.name}: samples [{start}, {stop}) are outside the {self.num_samples} decoded")
        if stop == start:
            return np.zeros((self.num_channels or 1, 0), dtype=np.int16)
        if self._reader is None or start < self._held_from:
            if self._reader is not None and not self.rewindable:
                raise HLSInputError(
                    f"{self.name}: samples [{start}, {stop}) asked for, [{self._held_from}, {self.num_samples}) held"
                )
            self._rewind()
        while self._decoded_end < stop:
            if not self._decode_more():
                raise HLSInputError(
                    f"{self.name}: decoding again gave {self._decoded_end} samples, {self.num_samples} the first time"
                )
        self.max_buffered_samples = max(self.max_buffered_samples, self.held_samples())
        return samples_from_chunks(self._chunks, start, stop, self.num_channels)

    def forget_before(self, sample: int) -> None:
        """
        Samples before `sample` will not be asked for again: the decoded ones are let go of (decoding on up to
        `sample` first, dropping as it goes, so that nothing piles up when nothing is read); a live stream also lets
        go of the packets decoded and of the time line before `sample`.
        """
        sample = min(int(sample), self.num_samples)
        if sample <= self._held_from:
            return
        if self._reader is None:
            self._rewind()
        self._drop_chunks_before(sample)
        while self._decoded_end < sample and self._decode_more():
            self._drop_chunks_before(sample)
        self._held_from = sample
        if not self.rewindable:
            decoded = range(self._first_packet, self._next_packet)
            del self._packets[: len(decoded)]
            self._rejected.difference_update(decoded)
            self._first_packet = self._next_packet
            assert self.sampling_rate is not None  # a sample was decoded (`sample > 0`), so the rate is known
            self.time_line.forget_before(sample / self.sampling_rate)

    def held_samples(self) -> int:
        """Decoded samples held for reading."""
        return sum(chunk.shape[1] for _, chunk in self._chunks)

    def _drop_chunks_before(self, sample: int) -> None:
        while self._chunks and self._chunks[0][0] + self._chunks[0][1].shape[1] <= sample:
            self._chunks.popleft()

    def _rewind(self) -> None:
        """A fresh reader at the first packet, which must still be held."""
        if self._first_packet != 0:
            raise HLSInputError(f"{self.name}: the stream's first packets were let go of: it cannot be read again")
        self._reader = self._new_decoder()
        # swresample converts to 16-bit as ffmpeg's WAV output does (pcm_s16le takes packed s16): round to nearest,
        # saturate, no dither.
        self._resampler = self._av.AudioResampler(format="s16", layout=self._layout_name, rate=self.sampling_rate)
        self._next_packet = 0
        self._flushed = False
        self._chunks = deque()  # (first sample, int16 array (channels, samples))
        self._decoded_end = 0
        self._held_from = 0

    def _decode_more(self) -> bool:
        """Decode the next packet (at the end of a finished stream, flush); False when there is nothing more."""
        av, number = self._av, self._next_packet
        try:
            if number < self._first_packet + len(self._packets):
                self._next_packet += 1
                try:
                    frames = self._reader.decode(av.Packet(self._packets[number - self._first_packet]))
                except (av.error.FFmpegError, ValueError):
                    if number in self._rejected:  # rejected the first time too: skipped, as then
                        return True
                    raise
                self._append(frames)
            elif self.finished and not self._flushed:
                self._flushed = True
                self._append([*self._reader.decode(None), None])  # the decoder's last frames, then swresample's
            else:
                return False
        except (av.error.FFmpegError, ValueError) as error:
            raise HLSInputError(f"{self.name}: cannot decode the stream again at packet {number} ({error})") from None
        return True

    def _append(self, frames: Iterable[Any]) -> None:
        """Convert decoded `frames` (a None among them flushes the converter) and keep their samples."""
        for frame in frames:
            for converted in self._resampler.resample(frame):
                samples = converted.to_ndarray().reshape(-1, self.num_channels).T.copy()
                self._chunks.append((self._decoded_end, samples))
                self._decoded_end += samples.shape[1]
