# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
HLS decoding for the OrcaHello pipeline: the samples production would score, and when they were recorded.

Production (orca-hls-utils) concatenates about six segments' bytes into one `.ts` file and converts it with
`ffmpeg -i clip.ts clip.wav`: 16-bit PCM at the stream's rate and channel count. This module decodes the segments
an HLS input lists (`hls_playlist_orcahello`: a playlist, a folder of `.ts` segments, one segment) as ONE
continuous AAC stream (every packet through one decoder, as ffmpeg decodes the concatenated file), converting to
int16 with swresample as ffmpeg's WAV output does: the samples are those of the WAV production would have made from
the same segments.

**Memory.** The segments are demuxed and decoded once when the input is opened: that checks every segment, counts
the samples exactly, and finds the gaps and timestamps. Only the compressed AAC packets are kept (about 40 MB an hour
for mono, a tenth of the decoded audio); `read` decodes them again, forward, keeping only the samples a caller may
still ask for. Reading backwards restarts decoding from the first packet (correct, only slower).

**Time.** The start is absolute UTC when the playlist gives `#EXT-X-PROGRAM-DATE-TIME`, else when the playlist's or
segments' folder is named by a Unix epoch (10 digits), which orcanode sets when it starts a stream; like
orca-hls-utils, that instant is taken as the start of segment 0, and a first segment numbered n starts n mean
segment durations later. Otherwise there is no absolute time: nothing is invented.

**Gaps.** Missing segment numbers (folders), `#EXT-X-DISCONTINUITY`, `#EXT-X-GAP`, `#EXT-X-PROGRAM-DATE-TIME` jumps
and presentation-timestamp (PTS) jumps are each reported, with where the gap falls in the decoded audio and how long
it is when that can be known. The audio on either side is butted together, as production's concatenation does; the
times in UTC after a gap account for what is missing.
"""

import bisect
import io
import os
import threading
import urllib.parse
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

try:
    from .hls_playlist_orcahello import MAX_PLAYLIST_SEGMENTS, HLSInputError, Segment, fetch, list_segments
    from .http_orcahello import HTTP_TIMEOUT_SECONDS, origin
    from .vocabulary_orcahello import SEGMENT_SUFFIX, is_url
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from hls_playlist_orcahello import MAX_PLAYLIST_SEGMENTS, HLSInputError, Segment, fetch, list_segments
    from http_orcahello import HTTP_TIMEOUT_SECONDS, origin
    from vocabulary_orcahello import SEGMENT_SUFFIX, is_url


# MPEG-TS timestamps are 33-bit counts of a 90 kHz clock; they wrap every 26.5 hours.
MPEG_TS_CLOCK_HZ = 90000
MPEG_TS_PTS_WRAP = 1 << 33
# A timestamp jump shorter than this is jitter, not missing audio: one AAC frame at 48 kHz is 21.3 ms.
TIMESTAMP_JUMP_TOLERANCE_SECONDS = 0.05
# EXT-X-PROGRAM-DATE-TIME is often a wall clock read by the encoder, good to tens of milliseconds.
PROGRAM_DATE_TIME_JUMP_TOLERANCE_SECONDS = 0.5


def iso_utc(epoch_seconds: float | None) -> str | None:
    """`1600000000.5` -> `"2020-09-13T12:26:40.500Z"` (ISO 8601, UTC, milliseconds); None stays None."""
    if epoch_seconds is None:
        return None
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=float(epoch_seconds))
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_at(anchors: Sequence[Sequence[float | None]], seconds: float, before: bool = False) -> float | None:
    """
    Unix time at `seconds` into the decoded audio, from `anchors` (`[[seconds, utc or None], ...]`, sorted, the first
    at 0): the last anchor at or before `seconds` (strictly before with `before=True`: the instant just before a gap
    at `seconds`) plus the time since it. None when that anchor's time is unknown.
    """
    if not anchors:
        return None
    find = bisect.bisect_left if before else bisect.bisect_right
    index = max(find(anchors, seconds, key=lambda anchor: anchor[0]) - 1, 0)
    anchor_seconds, anchor_utc = anchors[index]
    return None if anchor_utc is None else anchor_utc + (seconds - anchor_seconds)


def gap_missing_seconds(
    evidence: dict, timestamp_jump: float | None, clock_jump: float | None
) -> tuple[float | None, str | None]:
    """
    `(missing_s, missing_s_from)` for a gap: how long it is and what says so (`(None, None)` when nothing does).
    `evidence` is what the boundary showed (`"discontinuity"`, `"marked"` seconds, `"numbers"` seconds),
    `timestamp_jump` the presentation-timestamp jump there, `clock_jump` the `#EXT-X-PROGRAM-DATE-TIME` one.
    """
    # Timestamps count the encoder's samples exactly, unless the stream was restarted (a discontinuity);
    # the playlist's clock comes next; then what the playlist or the numbering imply.
    if evidence.get("discontinuity"):
        timestamp_jump = None
    if timestamp_jump is not None and timestamp_jump > TIMESTAMP_JUMP_TOLERANCE_SECONDS:
        return timestamp_jump, "timestamps"
    if clock_jump is not None and clock_jump > PROGRAM_DATE_TIME_JUMP_TOLERANCE_SECONDS:
        return clock_jump, "program-date-time"
    if "marked" in evidence:
        return evidence["marked"], "EXTINF of #EXT-X-GAP segments"
    if timestamp_jump is not None and abs(timestamp_jump) <= TIMESTAMP_JUMP_TOLERANCE_SECONDS:
        # Numbers are missing, or the clock jumped, but the timestamps run on: no audio is missing.
        return max(timestamp_jump, 0.0), "timestamps"
    if "numbers" in evidence:
        return evidence["numbers"], "segment numbers x mean duration"
    if clock_jump is not None:
        return max(clock_jump, 0.0), "program-date-time"
    return None, None


def record_gap(
    gaps: dict[int, dict], sample: int, rate: int, after_segment: str | None, next_segment: str, reason: str
) -> dict:
    """
    Record `reason` for a gap before sample `sample` of the decoded audio (at `rate`) in `gaps` (first sample after
    each gap -> the gap): a gap found several ways (a discontinuity and a timestamp jump) is one gap with every
    reason. Returns the gap; its `_evidence` holds what the boundary shows, for `finish_gap`.
    """
    if sample not in gaps:
        gaps[sample] = {
            "after_segment": after_segment,
            "next_segment": next_segment,
            "start_s": sample / rate,
            "missing_s": None,
            "missing_s_from": None,
            "reasons": [],
            "_evidence": {},
        }
    gap = gaps[sample]
    gap["reasons"].append(reason)
    return gap


def finish_gap(gap: dict, timestamp_jump: float | None, clock_jump: float | None) -> None:
    """
    Decide how long `gap` is (`gap_missing_seconds`, from its evidence and the boundary's timestamp and
    program-date-time jumps) and join its reasons into one: the gap as the results report it.
    """
    evidence = gap.pop("_evidence")
    gap["missing_s"], gap["missing_s_from"] = gap_missing_seconds(evidence, timestamp_jump, clock_jump)
    gap["reason"] = "; ".join(gap.pop("reasons"))


def program_date_time_jump(previous: Segment, segment: Segment, rate: int) -> float | None:
    """
    Seconds between `segment`'s `#EXT-X-PROGRAM-DATE-TIME` and the end of `previous` (its date-time plus the
    audio it decoded to, at `rate`): 0 for back-to-back segments. None unless both segments give a date-time.
    """
    if previous.program_date_time is None or segment.program_date_time is None:
        return None
    expected = previous.program_date_time + previous.num_samples / rate
    return segment.program_date_time - expected


def stream_start_time(
    first: Segment, folder_epoch: int | None, nominal: float
) -> tuple[float | None, str | None, str | None]:
    """
    `(start, start_time_source, warning)`: the Unix time of the first decoded sample, from the first playable
    segment `first` (its program date-time) or the stream folder's epoch (`folder_epoch`, plus `first.number` mean
    segment durations `nominal` when earlier segments are absent); `(None, None, None)` when neither says.
    """
    if first.program_date_time is not None:
        return first.program_date_time, "EXT-X-PROGRAM-DATE-TIME", None
    if folder_epoch is None:
        return None, None, None
    start, source, warning = float(folder_epoch), "folder name (Unix epoch of the stream start)", None
    first_number = first.number or 0
    if first_number > 0:
        start += first_number * nominal
        source += f" + {first_number} x {nominal:.3f} s (segments before {first.name} absent)"
        warning = (
            f"the start time is estimated: the folder name is the stream's start, and {first.name} is segment "
            f"{first_number}, taken to start {first_number} mean segment durations ({nominal:.3f} s) later"
        )
    return start, source, warning


# ----------------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------------


def import_av(name: str) -> Any:
    """PyAV, imported only when an HLS input arrives (WAV and FLAC inputs never need it)."""
    try:
        import av
    except ImportError:
        raise HLSInputError(f"{name}: HLS input needs PyAV, FFmpeg's libraries for Python: pip install av") from None
    return av


class HLSAudio:
    """
    An HLS input opened for the pipeline: `read(start, stop)` gives int16 samples `(channels, samples)` of the
    continuous decoded stream; `num_samples`, `sampling_rate`, `num_channels`, `name`; and what was found when it was
    opened: `start_time_utc` (Unix time or None), `anchors` (the UTC time line), `gaps`, `segments`, `warnings`.

    Args:
        source (`str`): an `.m3u8` path or http(s) URL, a folder of `.ts` segments, or one `.ts` file.
        name (`str`, *optional*): what messages call it (default: `source`).
        timeout (`float`, *optional*): seconds to wait for each HTTP answer (default `HTTP_TIMEOUT_SECONDS`).
        allow_other_hosts (`bool`, *optional*, False): fetch segments (and follow redirects) on hosts other than the
            playlist's; refused by default.
        max_segments (`int`, *optional*): refuse a playlist listing more segments (default `MAX_PLAYLIST_SEGMENTS`).
    """

    def __init__(
        self,
        source: str | os.PathLike,
        name: str | None = None,
        timeout: float | None = None,
        allow_other_hosts: bool = False,
        max_segments: int = MAX_PLAYLIST_SEGMENTS,
    ) -> None:
        self.source = os.fspath(source)
        self.name = name or self.source
        self.timeout = HTTP_TIMEOUT_SECONDS if timeout is None else float(timeout)
        self._av = import_av(self.name)
        self.kind, self.segments, self.playlist_info, self.folder_epoch = list_segments(
            self.source, self.timeout, allow_other_hosts=allow_other_hosts, max_segments=max_segments
        )
        # Redirects of segments stay on the playlist's host too (a remote playlist), unless other hosts are allowed.
        self._allowed_origin = None if allow_other_hosts or not is_url(self.source) else origin(self.source)
        self.warnings = []
        self._lock = threading.Lock()
        self._decode_everything_once()
        self._find_gaps_and_times()
        self._rewind()

    # -- opening: one pass over every segment ------------------------------------------------------------------

    def _open_container(self, segment):
        if is_url(segment.location):
            opened = io.BytesIO(fetch(segment.location, self.name, self.timeout, allowed_origin=self._allowed_origin))
        else:
            if not os.path.isfile(segment.location):
                raise HLSInputError(f"{self.name}: segment {segment.name} does not exist ({segment.location})")
            opened = segment.location
        # HLS segments named .ts are MPEG-TS; saying so keeps a damaged one from being probed as something else.
        path = urllib.parse.urlsplit(segment.location).path if is_url(segment.location) else segment.location
        container_format = "mpegts" if path.lower().endswith(SEGMENT_SUFFIX) else None
        try:
            return self._av.open(opened, format=container_format)
        except (self._av.error.FFmpegError, OSError, ValueError) as error:
            raise HLSInputError(f"{self.name}: segment {segment.name} is not readable media ({error})") from None

    def _decode_everything_once(self):
        av = self._av
        self._packets = []  # compressed AAC frames, in stream order: what `read` decodes again
        self._failed_packets = set()  # indices of the packets the decoder rejected
        # Per packet: its presentation timestamp `(pts, time_base)` (None when absent or rejected), the samples it
        # decoded to, and the index of its segment.
        packet_times, packet_samples, packet_segments = [], [], []
        decoder, codec_name = None, None
        self.sampling_rate, self.num_channels, layout_name = None, None, None
        total = 0
        playable = [segment for segment in self.segments if not segment.marked_gap]
        if not playable:
            raise HLSInputError(f"{self.name}: every segment of the playlist is marked #EXT-X-GAP: no audio")
        for index, segment in enumerate(self.segments):
            segment.first_sample = total
            if segment.marked_gap:
                continue
            container = self._open_container(segment)
            try:
                if not container.streams.audio:
                    raise HLSInputError(f"{self.name}: segment {segment.name} holds no audio stream")
                stream = container.streams.audio[0]
                if decoder is None:
                    codec_name = stream.codec_context.name
                    self._codec_name, self._extradata = codec_name, stream.codec_context.extradata
                    decoder = self._new_decoder()
                elif stream.codec_context.name != codec_name:
                    raise HLSInputError(
                        f"{self.name}: segment {segment.name} is {stream.codec_context.name}, the stream before it "
                        f"{codec_name}: one recording needs one codec"
                    )
                time_base = stream.time_base
                failures, first_failure = 0, None
                for packet in container.demux(stream):
                    if not packet.size:  # the demuxer's end-of-stream marker
                        continue
                    try:
                        frames = decoder.decode(packet)
                    except (av.error.FFmpegError, ValueError) as error:
                        # ffmpeg skips a frame its decoder rejects (a segment cut short, a damaged byte) and goes on,
                        # so production's WAV lacks it: skip it too. It is still fed to the decoder when reading, so
                        # the decoder's state is the one ffmpeg's had.
                        failures += 1
                        first_failure = first_failure or str(error)
                        self._failed_packets.add(len(self._packets))
                        self._packets.append(bytes(packet))
                        packet_times.append(None)
                        packet_samples.append(0)
                        packet_segments.append(index)
                        continue
                    samples = 0
                    for frame in frames:
                        rate, channels, layout = frame.sample_rate, len(frame.layout.channels), frame.layout.name
                        if self.sampling_rate is None:
                            self.sampling_rate, self.num_channels, layout_name = rate, channels, layout
                        elif (rate, channels) != (self.sampling_rate, self.num_channels):
                            raise HLSInputError(
                                f"{self.name}: segment {segment.name} changes the audio from {self.sampling_rate} Hz "
                                f"{self.num_channels} ch to {rate} Hz {channels} ch: score the parts separately"
                            )
                        samples += frame.samples
                    timestamp = None
                    if packet.pts is not None and time_base is not None:
                        timestamp = (packet.pts, time_base)
                    self._packets.append(bytes(packet))
                    packet_times.append(timestamp)
                    packet_samples.append(samples)
                    packet_segments.append(index)
                    total += samples
            except (av.error.FFmpegError, OSError) as error:
                raise HLSInputError(f"{self.name}: segment {segment.name} cannot be demuxed ({error})") from None
            finally:
                container.close()
            segment.num_samples = total - segment.first_sample
            if segment.num_samples == 0:
                why = f"does not decode ({first_failure})" if failures else "holds no audio"
                raise HLSInputError(f"{self.name}: segment {segment.name} {why}")
            if failures:
                self.warnings.append(
                    f"{failures} AAC frame(s) of {segment.name} do not decode ({first_failure}): skipped, as ffmpeg "
                    f"does when it converts the segments"
                )
        for frame in decoder.decode(None):  # AAC has no decoder delay; whatever a codec still holds is counted
            packet_samples[-1] += frame.samples
            self.segments[packet_segments[-1]].num_samples += frame.samples
            total += frame.samples
        self._layout_name = layout_name
        self.num_samples = total
        self._packet_times, self._packet_samples, self._packet_segments = packet_times, packet_samples, packet_segments

    # -- gaps and the UTC time line -------------------------------------------------------------------------------

    def _nominal_segment_seconds(self):
        """Mean segment duration (EXTINF when the playlist gives it, else decoded), the last, shorter one aside."""
        listed = [segment.duration for segment in self.segments if segment.duration]
        if listed:
            return float(np.mean(listed[:-1] if len(listed) > 1 else listed))
        decoded = [segment.num_samples / self.sampling_rate for segment in self.segments if segment.num_samples]
        return float(np.mean(decoded[:-1] if len(decoded) > 1 else decoded))

    def _timestamp_jump(self, previous_index, index):
        """Seconds of stream time between the end of packet `previous_index` and the start of packet `index`."""
        previous, current = self._packet_times[previous_index], self._packet_times[index]
        if previous is None or current is None or previous[1] != current[1]:
            return None
        time_base = current[1]
        expected = previous[0] + self._packet_samples[previous_index] / self.sampling_rate / time_base
        ticks = current[0] - expected
        if time_base.denominator == MPEG_TS_CLOCK_HZ and time_base.numerator == 1:
            # Each segment is demuxed on its own, so a wrap of the 33-bit clock between two shows as a huge jump.
            ticks = (ticks + MPEG_TS_PTS_WRAP / 2) % MPEG_TS_PTS_WRAP - MPEG_TS_PTS_WRAP / 2
        return float(ticks * time_base)

    def _find_gaps_and_times(self):
        """
        Find the gaps, between segments and then inside them, decide how long each is, and build the UTC time line:
        `gaps`, `anchors`, `start_time_utc`, `start_time_source` (and their warnings).
        """
        nominal = self._nominal_segment_seconds()
        gaps = {}  # first sample after the gap -> gap
        clock_jumps = self._find_segment_boundary_gaps(gaps, nominal)
        timestamp_jumps = self._find_timestamp_gaps(gaps)
        for sample, gap in gaps.items():
            finish_gap(gap, timestamp_jumps.get(sample), clock_jumps.get(sample))
        self.gaps = [gaps[sample] for sample in sorted(gaps)]
        self._build_time_line(nominal)

    def _find_segment_boundary_gaps(self, gaps, nominal):
        """
        Record in `gaps` what the playlist or the file names say at each boundary between segments: a segment marked
        `#EXT-X-GAP`, a discontinuity, missing segment numbers (folders), a program-date-time jump. Returns every
        boundary's program-date-time jump (first sample of the segment -> seconds), gap or not.
        """
        rate = self.sampling_rate
        clock_jumps = {}
        previous = None
        for segment in self.segments:
            if segment.marked_gap:
                gap = record_gap(
                    gaps,
                    segment.first_sample,
                    rate,
                    previous.name if previous else None,
                    segment.name,
                    f"{segment.name} is marked #EXT-X-GAP",
                )
                gap["_evidence"]["marked"] = gap["_evidence"].get("marked", 0.0) + (segment.duration or nominal)
                continue
            if previous is not None:
                where = (gaps, segment.first_sample, rate, previous.name, segment.name)
                if segment.discontinuity:
                    gap = record_gap(*where, f"#EXT-X-DISCONTINUITY before {segment.name}")
                    gap["_evidence"]["discontinuity"] = True
                skipped, numbers = segment.numbers_missing_after(previous) if self.kind == "folder" else (0, None)
                if skipped > 0:
                    gap = record_gap(*where, f"segment number(s) {numbers} missing")
                    gap["_evidence"]["numbers"] = skipped * nominal
                jump = program_date_time_jump(previous, segment, rate)
                if jump is not None:
                    clock_jumps[segment.first_sample] = jump
                    if abs(jump) > PROGRAM_DATE_TIME_JUMP_TOLERANCE_SECONDS:
                        record_gap(*where, f"#EXT-X-PROGRAM-DATE-TIME jumps by {jump:+.3f} s")
            previous = segment
        return clock_jumps

    def _find_timestamp_gaps(self, gaps):
        """
        Record in `gaps` every packet whose presentation timestamp does not follow on from the previous packet's
        end (beyond `TIMESTAMP_JUMP_TOLERANCE_SECONDS`), between segments or inside one. Returns every measurable
        jump (first sample of the packet -> seconds), gap or not.
        """
        jumps = {}
        first_sample, previous_index = 0, None
        for index in range(len(self._packets)):
            if index in self._failed_packets:
                continue
            if previous_index is not None:
                jump = self._timestamp_jump(previous_index, index)
                if jump is not None:
                    jumps[first_sample] = jump
                    if abs(jump) > TIMESTAMP_JUMP_TOLERANCE_SECONDS:
                        before = self.segments[self._packet_segments[previous_index]]
                        after = self.segments[self._packet_segments[index]]
                        where = "" if before is not after else f" inside {after.name}"
                        record_gap(
                            gaps,
                            first_sample,
                            self.sampling_rate,
                            before.name,
                            after.name,
                            f"timestamps {'jump ahead' if jump > 0 else 'go back'} by {abs(jump):.3f} s{where}",
                        )
            first_sample += self._packet_samples[index]
            previous_index = index
        return jumps

    def _build_time_line(self, nominal):
        """
        The UTC time line from the start time (`stream_start_time`), the playlist's date-times and the gaps: sets
        `anchors`, `start_time_utc`, `start_time_source`, and each gap's `utc` and `resumes_utc`.
        """
        rate = self.sampling_rate
        # The UTC time line: anchors where the time is known (or becomes unknown), extrapolated between them.
        first = next(segment for segment in self.segments if not segment.marked_gap)
        start, self.start_time_source, warning = stream_start_time(first, self.folder_epoch, nominal)
        if warning:
            self.warnings.append(warning)
        # Walked in time order, so a gap's anchor extrapolates from everything before it.
        anchors = [[0.0, start]]
        stated = {
            segment.first_sample: segment.program_date_time
            for segment in self.segments
            if segment is not first and not segment.marked_gap and segment.program_date_time is not None
        }
        gap_by_sample = {round(gap["start_s"] * rate): gap for gap in self.gaps}
        for sample in sorted(set(stated) | set(gap_by_sample)):
            seconds = sample / rate
            if sample in stated:  # the playlist's clock is authoritative where it speaks
                anchors.append([seconds, stated[sample]])
            else:
                gap = gap_by_sample[sample]
                before = utc_at(anchors, seconds, before=True)
                known = before is not None and gap["missing_s"] is not None
                anchors.append([seconds, before + gap["missing_s"] if known else None])
        self.anchors = anchors
        self.start_time_utc = start
        for gap in self.gaps:
            gap["utc"] = iso_utc(utc_at(anchors, gap["start_s"], before=True))
            gap["resumes_utc"] = iso_utc(utc_at(anchors, gap["start_s"]))
        if self.kind == "playlist" and not self.playlist_info.get("ended"):
            self.warnings.append(
                "the playlist has no #EXT-X-ENDLIST (a live playlist): scored as it stood when it was read"
            )

    def describe(self) -> dict:
        """What the result records about the input: plain data (JSON-ready)."""
        return {
            "type": f"hls-{self.kind}",
            "uri": self.source,
            "segments": len(self.segments),
            "first_segment": self.segments[0].name,
            "last_segment": self.segments[-1].name,
            "media_sequence": self.playlist_info.get("media_sequence") if self.kind == "playlist" else None,
            "ended": self.playlist_info.get("ended") if self.kind == "playlist" else None,
            "codec": self._codec_name,
            "start_time_source": self.start_time_source,
        }

    def timeline(self) -> dict:
        """The plain-data time line the pipeline carries to its results: start, anchors, gaps, source, warnings."""
        return {
            "start_time_utc": self.start_time_utc,
            "anchors": [list(anchor) for anchor in self.anchors],
            "gaps": [dict(gap) for gap in self.gaps],
            "source": self.describe(),
            "warnings": list(self.warnings),
        }

    # -- reading: decode forward, keep only what may still be asked for ------------------------------------------

    def _new_decoder(self):
        """
        One decoder for the whole stream, as ffmpeg has for the concatenated segments. AAC in MPEG-TS carries its
        configuration in every frame's ADTS header, so the codec's name (and extradata, if any) is all it needs.
        """
        decoder = self._av.CodecContext.create(self._codec_name, "r")
        if self._extradata:
            decoder.extradata = self._extradata
        return decoder

    def _rewind(self):
        av = self._av
        self._decoder = self._new_decoder()
        # swresample converts to 16-bit as ffmpeg's WAV output does (pcm_s16le takes packed s16): round to nearest,
        # saturate, no dither.
        self._resampler = av.AudioResampler(format="s16", layout=self._layout_name, rate=self.sampling_rate)
        self._next_packet = 0
        self._flushed = False
        self._chunks = deque()  # (first sample, int16 array (channels, samples))
        self._buffer_start = 0
        self._buffer_end = 0
        self.max_buffered_samples = getattr(self, "max_buffered_samples", 0)

    def _append(self, frames):
        """Convert decoded `frames` (a None among them flushes the converter) and keep their samples."""
        for frame in frames:
            for converted in self._resampler.resample(frame):
                samples = converted.to_ndarray().reshape(-1, self.num_channels).T.copy()
                self._chunks.append((self._buffer_end, samples))
                self._buffer_end += samples.shape[1]

    def _decode_more(self):
        av = self._av
        try:
            if self._next_packet < len(self._packets):
                index = self._next_packet
                self._next_packet += 1
                try:
                    frames = self._decoder.decode(av.Packet(self._packets[index]))
                except (av.error.FFmpegError, ValueError):
                    if index in self._failed_packets:  # rejected the first time too: skipped, as then
                        return True
                    raise
                self._append(frames)
            elif not self._flushed:
                self._flushed = True
                self._append([*self._decoder.decode(None), None])  # the decoder's last frames, then swresample's
            else:
                return False
        except (av.error.FFmpegError, ValueError) as error:
            raise HLSInputError(
                f"{self.name}: cannot decode the stream again at packet {self._next_packet} ({error})"
            ) from None
        return True

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples `[start, stop)` of the decoded stream as int16 `(channels, samples)`."""
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= self.num_samples:
            raise HLSInputError(f"{self.name}: samples [{start}, {stop}) are outside the {self.num_samples} decoded")
        with self._lock:
            if start < self._buffer_start:
                self._rewind()  # backwards: decode again from the first packet
            while self._buffer_end < stop:
                if not self._decode_more():
                    raise HLSInputError(
                        f"{self.name}: decoding again gave {self._buffer_end} samples, {self.num_samples} the first time"
                    )
            while self._chunks and self._chunks[0][0] + self._chunks[0][1].shape[1] <= start:
                self._chunks.popleft()
            self._buffer_start = self._chunks[0][0] if self._chunks else self._buffer_end
            held = sum(chunk.shape[1] for _, chunk in self._chunks)
            self.max_buffered_samples = max(self.max_buffered_samples, held)
            return samples_from_chunks(self._chunks, start, stop, self.num_channels)

    def close(self) -> None:
        """Drop the packets and decoded samples held (the stream cannot be read after)."""
        self._packets = []
        self._chunks = deque()


def samples_from_chunks(
    chunks: Iterable[tuple[int, np.ndarray]], start: int, stop: int, num_channels: int | None
) -> np.ndarray:
    """
    Samples `[start, stop)` as int16 `(channels, samples)` from decoded `chunks`, `(first sample, array)` pairs in
    order (what `HLSAudio` and the live recorder hold); an empty span gives an empty array.
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


def open_hls(
    source: str | os.PathLike,
    name: str | None = None,
    timeout: float | None = None,
    allow_other_hosts: bool = False,
    max_segments: int = MAX_PLAYLIST_SEGMENTS,
) -> HLSAudio:
    """Open an HLS input (see `HLSAudio`); raises `HLSInputError` with a one-line message when it cannot be read."""
    return HLSAudio(source, name=name, timeout=timeout, allow_other_hosts=allow_other_hosts, max_segments=max_segments)
