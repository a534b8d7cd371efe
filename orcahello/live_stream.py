# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Following one hydrophone's HLS stream as it grows, for `orcahello live`: where its current recording is, fetching
with retries, and decoding each new segment onto one continuous recording with the time line `orcahello detect`
would give the finished playlist.

A source is an Orcasound node (`http(s)://host/<node>`, or a local folder, holding `latest.txt` that names the
current stream folder `hls/<epoch>/live.m3u8`) or one live `.m3u8` playlist (a URL or a path). Each stream folder
(epoch) is one recording: a node restart starts a new one.

The samples are exactly those of `hls_orcahello.HLSAudio` on the finished playlist: every packet goes through one
decoder per recording, in order, as ffmpeg decodes the concatenated segments. That also means a recording can only
be decoded exactly from its first segment (AAC's noise substitution draws from a random generator that runs through
the whole stream), so a restarted follower decodes the recording again from there, without scoring it again.
The gaps and UTC anchors follow `HLSAudio`'s rules, applied segment by segment (`hls_orcahello.gap_missing_seconds`,
`hls_orcahello.stream_start_time`, `hls_orcahello.utc_at`).
"""

import io
import logging
import os
import time
import urllib.parse
from collections import deque

import numpy as np

from hls_orcahello import (
    MPEG_TS_CLOCK_HZ,
    MPEG_TS_PTS_WRAP,
    PROGRAM_DATE_TIME_JUMP_TOLERANCE_SECONDS,
    TIMESTAMP_JUMP_TOLERANCE_SECONDS,
    gap_missing_seconds,
    import_av,
    iso_utc,
    samples_from_chunks,
    stream_start_time,
    utc_at,
)
from hls_playlist_orcahello import HLSInputError, fetch, is_playlist, parse_playlist
from vocabulary_orcahello import is_url

logger = logging.getLogger("orcahello.live")

LATEST_FILE = "latest.txt"
PLAYLIST_NAME = "live.m3u8"
HTTP_TIMEOUT_SECONDS = 20.0
# Quick retries of one request inside a poll; beyond these, the next poll tries again (with the source's backoff).
FETCH_ATTEMPTS = 3
FETCH_FIRST_BACKOFF_SECONDS = 0.5


class LiveSourceError(ValueError):
    """A SOURCE argument that cannot be followed; the message is one line."""


def source_name_of(source):
    """
    The folder name of a source's outputs: the node (`.../<node>` or `.../<node>/hls/<epoch>/live.m3u8`), else the
    playlist's folder names joined.
    """
    path = urllib.parse.urlsplit(source).path if is_url(source) else os.path.abspath(source)
    parts = [part for part in path.replace("\\", "/").split("/") if part]
    if is_playlist(source):
        parts = parts[:-1]
        if len(parts) >= 3 and parts[-2] == "hls":
            return parts[-3]
        return "_".join(parts[-2:]) or "stream"
    return parts[-1] if parts else "stream"


class LiveSource:
    """
    One stream to follow.

    Args:
        source (`str`): a node (`http(s)://host/<node>` or a local folder holding `latest.txt`) or a live `.m3u8`.
        timeout (`float`): seconds to wait for each HTTP answer.
    """

    def __init__(self, source, timeout=HTTP_TIMEOUT_SECONDS, stop_event=None):
        self.stop_event = stop_event  # set on SIGTERM: no more retries, so that stopping never waits on them
        self.source = source.rstrip("/") if is_url(source) and not is_playlist(source) else source
        self.timeout = timeout
        self.name = source_name_of(source)
        if is_playlist(source):
            self.kind = "playlist"
        elif is_url(source):
            self.kind = "node"
        elif os.path.isdir(source):
            if not os.path.isfile(os.path.join(source, LATEST_FILE)):
                raise LiveSourceError(f"{source}: a local node folder needs a {LATEST_FILE} naming its stream folder")
            self.kind = "node"
        else:
            raise LiveSourceError(
                f"{source}: not a node (http(s)://host/<node> or a folder holding {LATEST_FILE}) nor an .m3u8 playlist"
            )

    def location(self, *parts):
        if is_url(self.source):
            return "/".join([self.source, *(urllib.parse.quote(part) for part in parts)])
        return os.path.join(self.source, *parts)

    def read(self, location):
        """The bytes at `location` (a URL through `hls_playlist_orcahello.fetch`, retried with backoff; or a local file)."""
        if not is_url(location):
            try:
                with open(location, "rb") as handle:
                    return handle.read()
            except OSError as error:
                raise HLSInputError(f"{self.name}: {location}: cannot read it ({error.strerror})") from None
        delay = FETCH_FIRST_BACKOFF_SECONDS
        for attempt in range(1, FETCH_ATTEMPTS + 1):
            try:
                return fetch(location, self.name, self.timeout)
            except HLSInputError as error:
                logger.warning("%s (attempt %d of %d)", error, attempt, FETCH_ATTEMPTS)
                if attempt == FETCH_ATTEMPTS or (self.stop_event is not None and self.stop_event.wait(delay)):
                    raise
                if self.stop_event is None:
                    time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def current_playlist(self):
        """`(recording id, playlist location)` of the stream now: for a node, the folder `latest.txt` names."""
        if self.kind == "playlist":
            return self.source, self.source
        text = self.read(self.location(LATEST_FILE)).decode("utf-8", errors="replace").strip()
        epoch = text.split()[0] if text else ""
        if not epoch.isdigit():
            raise HLSInputError(f"{self.name}: {LATEST_FILE} does not name a stream folder (it reads {text[:40]!r})")
        return epoch, self.location("hls", epoch, PLAYLIST_NAME)

    def playlist(self, location):
        """`(segments, info)` of the playlist at `location` (see `hls_playlist_orcahello.parse_playlist`)."""
        try:
            text = self.read(location).decode("utf-8")
        except UnicodeDecodeError:
            raise HLSInputError(f"{self.name}: {location}: not an HLS playlist (not UTF-8 text)") from None
        return parse_playlist(text, location, self.name)


def nominal_segment_seconds(segments):
    """Mean EXTINF of a playlist's segments, the last (shorter) one aside, as `HLSAudio` estimates a late start."""
    listed = [segment.duration for segment in segments if segment.duration]
    if not listed:
        return None
    return float(np.mean(listed[:-1] if len(listed) > 1 else listed))


class LiveRecording:
    """
    One recording (one stream folder) decoded segment by segment: `add_segment` decodes a segment's bytes onto the
    end, `read(start, stop)` gives int16 `(channels, samples)` of what is still held, `forget_before(sample)` lets
    go of what is no longer needed (memory stays bounded), `finish` flushes the decoder. `anchors`, `gaps` and
    `warnings` are `HLSAudio`'s, for the audio decoded so far.

    Args:
        name (`str`): what messages call it.
        recording_id (`str`): the epoch folder name (nodes) or the playlist (playlist sources).
        folder_epoch (`int` or None): the Unix time the stream folder is named by.
        nominal_seconds (`float` or None): the mean segment duration, for a start estimated from a late segment.
    """

    def __init__(self, name, recording_id, folder_epoch, nominal_seconds):
        self.name = name
        self.recording_id = recording_id
        self.folder_epoch = folder_epoch
        self.nominal_seconds = nominal_seconds
        self._av = import_av(name)
        self._decoder = None
        self._resampler = None
        self.sampling_rate = None
        self.num_channels = None
        self.num_samples = 0
        self.finished = False
        self.start_time_utc = None
        self.start_time_source = None
        self.anchors = None
        self.gaps = []
        self.warnings = []
        self.segments_decoded = 0
        self._previous_segment = None  # the last playable segment (name, program date-time, samples)
        self._previous_packet = None  # ((pts, time base) or None, samples, segment name) of the last decoded packet
        self._open_gaps = {}  # first sample after the gap -> gap, while its evidence is still being collected
        self._chunks = deque()  # (first sample, int16 (channels, samples))
        self._held_from = 0

    # -- decoding ----------------------------------------------------------------------------------------------

    def _gap_at(self, sample, after_segment, next_segment):
        """The gap at `sample` (first sample after it), made on first mention, as `HLSAudio` collects them."""
        if sample not in self._open_gaps:
            self._open_gaps[sample] = {
                "after_segment": after_segment,
                "next_segment": next_segment,
                "start_s": None,
                "missing_s": None,
                "missing_s_from": None,
                "reasons": [],
                "_evidence": {},
                "_timestamp_jump": None,
                "_clock_jump": None,
            }
        return self._open_gaps[sample]

    def add_marked_gap(self, segment):
        """A segment the playlist marks `#EXT-X-GAP`: no audio, only its duration for the time line."""
        previous = self._previous_segment["name"] if self._previous_segment else None
        gap = self._gap_at(self.num_samples, previous, segment.name)
        gap["reasons"].append(f"{segment.name} is marked #EXT-X-GAP")
        duration = segment.duration or self.nominal_seconds or 0.0
        gap["_evidence"]["marked"] = gap["_evidence"].get("marked", 0.0) + duration

    def add_segment(self, segment, data):
        """Decode one playable segment (its `.ts` bytes) onto the end of the recording; returns its sample count."""
        if self.finished:
            raise RuntimeError(f"{self.name}: recording {self.recording_id} is finished")
        av = self._av
        first_sample = self.num_samples
        previous, clock_jump = self._previous_segment, None
        if previous is not None:
            if segment.discontinuity:
                gap = self._gap_at(first_sample, previous["name"], segment.name)
                gap["reasons"].append(f"#EXT-X-DISCONTINUITY before {segment.name}")
                gap["_evidence"]["discontinuity"] = True
            if previous["program_date_time"] is not None and segment.program_date_time is not None:
                expected = previous["program_date_time"] + previous["num_samples"] / self.sampling_rate
                clock_jump = segment.program_date_time - expected
                if abs(clock_jump) > PROGRAM_DATE_TIME_JUMP_TOLERANCE_SECONDS:
                    gap = self._gap_at(first_sample, previous["name"], segment.name)
                    gap["reasons"].append(f"#EXT-X-PROGRAM-DATE-TIME jumps by {clock_jump:+.3f} s")
        try:
            container = av.open(io.BytesIO(data), format="mpegts")
        except (av.error.FFmpegError, OSError, ValueError) as error:
            raise HLSInputError(f"{self.name}: segment {segment.name} is not readable media ({error})") from None
        timestamp_jumps = {}  # first sample of a packet -> its timestamp jump
        failures, first_failure = 0, None
        try:
            if not container.streams.audio:
                raise HLSInputError(f"{self.name}: segment {segment.name} holds no audio stream")
            stream = container.streams.audio[0]
            if self._decoder is None:
                self._decoder = av.CodecContext.create(stream.codec_context.name, "r")
                if stream.codec_context.extradata:
                    self._decoder.extradata = stream.codec_context.extradata
            time_base = stream.time_base
            for packet in container.demux(stream):
                if not packet.size:  # the demuxer's end-of-stream marker
                    continue
                try:
                    frames = self._decoder.decode(av.Packet(bytes(packet)))
                except (av.error.FFmpegError, ValueError) as error:
                    failures += 1  # skipped, as ffmpeg (and `HLSAudio`) skip a frame the decoder rejects
                    first_failure = first_failure or str(error)
                    continue
                packet_first = self.num_samples
                samples = self._append(frames, segment)
                current = (packet.pts, time_base) if packet.pts is not None and time_base is not None else None
                jump = self._timestamp_jump(current)
                if jump is not None:
                    timestamp_jumps[packet_first] = jump
                    if abs(jump) > TIMESTAMP_JUMP_TOLERANCE_SECONDS:
                        before = self._previous_packet[2]
                        gap = self._gap_at(packet_first, before, segment.name)
                        where = "" if before != segment.name else f" inside {segment.name}"
                        gap["reasons"].append(
                            f"timestamps {'jump ahead' if jump > 0 else 'go back'} by {abs(jump):.3f} s{where}"
                        )
                self._previous_packet = (current, samples, segment.name)
        except (av.error.FFmpegError, OSError) as error:
            raise HLSInputError(f"{self.name}: segment {segment.name} cannot be demuxed ({error})") from None
        finally:
            container.close()
        num_samples = self.num_samples - first_sample
        if num_samples == 0:
            why = f"does not decode ({first_failure})" if failures else "holds no audio"
            raise HLSInputError(f"{self.name}: segment {segment.name} {why}")
        if failures:
            self.warnings.append(
                f"{failures} AAC frame(s) of {segment.name} do not decode ({first_failure}): skipped, as ffmpeg "
                f"does when it converts the segments"
            )
        if self.anchors is None:
            self._start(segment)
            stated = None
        else:
            stated = segment.program_date_time
        for sample, gap in self._open_gaps.items():
            gap["_timestamp_jump"] = timestamp_jumps.get(sample)
            if sample == first_sample:
                gap["_clock_jump"] = clock_jump
        # The time line in time order: where the playlist's clock speaks it is authoritative, else a gap's anchor
        # extrapolates from everything before it.
        samples = sorted(set(self._open_gaps) | ({first_sample} if stated is not None else set()))
        for sample in samples:
            seconds = sample / self.sampling_rate
            if sample == first_sample and stated is not None:
                self.anchors.append([seconds, stated])
            else:
                gap = self._open_gaps[sample]
                before, missing = utc_at(self.anchors, seconds, before=True), self._missing(gap)
                self.anchors.append([seconds, before + missing if before is not None and missing is not None else None])
        self._close_gaps()
        self._previous_segment = {
            "name": segment.name,
            "program_date_time": segment.program_date_time,
            "num_samples": num_samples,
        }
        self.segments_decoded += 1
        return num_samples

    def _missing(self, gap):
        """A gap's length from its evidence, by `HLSAudio`'s rule (set on the gap; None when unknown)."""
        if "_evidence" in gap:
            gap["missing_s"], gap["missing_s_from"] = gap_missing_seconds(
                gap.pop("_evidence"), gap.pop("_timestamp_jump"), gap.pop("_clock_jump")
            )
        return gap["missing_s"]

    def _close_gaps(self):
        for sample in sorted(self._open_gaps):
            gap = self._open_gaps[sample]
            seconds = sample / self.sampling_rate
            self._missing(gap)
            gap["start_s"] = seconds
            gap["reason"] = "; ".join(gap.pop("reasons"))
            gap["utc"] = iso_utc(utc_at(self.anchors, seconds, before=True))
            gap["resumes_utc"] = iso_utc(utc_at(self.anchors, seconds))
            self.gaps.append(gap)
        self._open_gaps = {}

    def _start(self, first):
        self.start_time_utc, self.start_time_source, warning = stream_start_time(
            first, self.folder_epoch, self.nominal_seconds
        )
        if warning:
            self.warnings.append(warning)
        self.anchors = [[0.0, self.start_time_utc]]

    def _timestamp_jump(self, current):
        """Seconds of stream time between the end of the previous packet and `current` (`(pts, time base)`), as
        `HLSAudio._timestamp_jump`; None when either has no timestamp."""
        if self._previous_packet is None or current is None or self._previous_packet[0] is None:
            return None
        (previous_pts, previous_base), previous_samples = self._previous_packet[0], self._previous_packet[1]
        pts, time_base = current
        if previous_base != time_base:
            return None
        expected = previous_pts + previous_samples / self.sampling_rate / time_base
        ticks = pts - expected
        if time_base.denominator == MPEG_TS_CLOCK_HZ and time_base.numerator == 1:
            # Each segment is demuxed on its own, so a wrap of the 33-bit clock between two shows as a huge jump.
            ticks = (ticks + MPEG_TS_PTS_WRAP / 2) % MPEG_TS_PTS_WRAP - MPEG_TS_PTS_WRAP / 2
        return float(ticks * time_base)

    def _append(self, frames, segment):
        av = self._av
        count = 0
        for frame in frames:
            rate, channels = frame.sample_rate, len(frame.layout.channels)
            if self.sampling_rate is None:
                self.sampling_rate, self.num_channels = rate, channels
                # swresample to 16-bit as ffmpeg's WAV output does (as `HLSAudio` reads).
                self._resampler = av.AudioResampler(format="s16", layout=frame.layout.name, rate=rate)
            elif (rate, channels) != (self.sampling_rate, self.num_channels):
                raise HLSInputError(
                    f"{self.name}: segment {segment.name} changes the audio from {self.sampling_rate} Hz "
                    f"{self.num_channels} ch to {rate} Hz {channels} ch"
                )
            count += frame.samples
            for converted in self._resampler.resample(frame):
                self._hold(converted)
        return count

    def _hold(self, converted):
        samples = converted.to_ndarray().reshape(-1, self.num_channels).T.copy()
        self._chunks.append((self.num_samples, samples))
        self.num_samples += samples.shape[1]

    def finish(self):
        """The recording ended (ENDLIST, or the node restarted): flush the decoder, as the last read of detect does."""
        if self.finished:
            return
        self.finished = True
        if self._decoder is not None:
            self._append(self._decoder.decode(None), self._previous_segment or {"name": "?"})
            for converted in self._resampler.resample(None):
                self._hold(converted)
        if self._open_gaps and self.anchors is not None:  # #EXT-X-GAP segments at the very end
            for sample in sorted(self._open_gaps):
                seconds = sample / self.sampling_rate
                before = utc_at(self.anchors, seconds, before=True)
                missing = self._missing(self._open_gaps[sample])
                self.anchors.append([seconds, before + missing if before is not None and missing is not None else None])
            self._close_gaps()

    # -- reading ------------------------------------------------------------------------------------------------

    def read(self, start, stop):
        """Samples `[start, stop)` as int16 `(channels, samples)`; they must still be held."""
        if start < self._held_from or stop > self.num_samples:
            raise HLSInputError(
                f"{self.name}: samples [{start}, {stop}) asked for, [{self._held_from}, {self.num_samples}) held"
            )
        return samples_from_chunks(self._chunks, start, stop, self.num_channels)

    def forget_before(self, sample):
        """
        Let go of the samples before `sample` (whole chunks), and of the time line before it (all but the anchor in
        force there, the gaps before it): memory stays bounded by what is still to be scored, however long the
        recording runs.
        """
        while self._chunks and self._chunks[0][0] + self._chunks[0][1].shape[1] <= sample:
            self._chunks.popleft()
        self._held_from = max(self._held_from, min(sample, self._chunks[0][0] if self._chunks else self.num_samples))
        if self.anchors and self.sampling_rate:
            seconds = self._held_from / self.sampling_rate
            in_force = max(index for index, anchor in enumerate(self.anchors) if anchor[0] <= seconds or index == 0)
            del self.anchors[:in_force]
            self.gaps = [gap for gap in self.gaps if gap["start_s"] >= seconds]

    def held_samples(self):
        return sum(chunk.shape[1] for _, chunk in self._chunks)
