# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The time line of an HLS recording: when each decoded sample was recorded (UTC), and where the stream has gaps.
`StreamTimeLine` is fed the segments in order as they are decoded (`hls_stream_orcahello.HLSStream` feeds it), all
of them at once for a finished playlist or one by one as a live stream grows: each gap is decided, and each UTC
anchor set, once, from what came before it, so that both ways give the same time line.

**Time.** The start is absolute UTC when the playlist gives `#EXT-X-PROGRAM-DATE-TIME`, else when the playlist's or
segments' folder is named by a Unix epoch (10 digits), which orcanode sets when it starts a stream; like
orca-hls-utils, that instant is taken as the start of segment 0, and a first segment numbered n starts n mean
segment durations later. Otherwise there is no absolute time: nothing is invented.

**Gaps.** Missing segment numbers (folders), `#EXT-X-DISCONTINUITY`, `#EXT-X-GAP`, `#EXT-X-PROGRAM-DATE-TIME` jumps
and presentation-timestamp (PTS) jumps are each reported, with where the gap falls in the decoded audio and how long
it is when that can be known. The audio on either side is butted together, as production's concatenation does; the
times in UTC after a gap account for what is missing.

Torch-free and PyAV-free: results are built from it without either.
"""

import bisect
import dataclasses
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from typing import Any, cast

import numpy as np

try:
    from .hls_playlist_orcahello import Segment
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from hls_playlist_orcahello import Segment


# MPEG-TS timestamps are 33-bit counts of a 90 kHz clock; they wrap every 26.5 hours.
MPEG_TS_CLOCK_HZ = 90000
MPEG_TS_PTS_WRAP = 1 << 33
# A timestamp jump shorter than this is jitter, not missing audio: one AAC frame at 48 kHz is 21.3 ms.
TIMESTAMP_JUMP_TOLERANCE_SECONDS = 0.05
# EXT-X-PROGRAM-DATE-TIME is often a wall clock read by the encoder, good to tens of milliseconds.
PROGRAM_DATE_TIME_JUMP_TOLERANCE_SECONDS = 0.5


# A recorder's start time in its file name, in UTC, read as BirdNET-Analyzer and OpenSoundscape read it: an ISO 8601
# basic `YYYYMMDDTHHMMSSZ` anywhere in the name (`...20240131T235959Z...`), or AudioMoth's whole name
# `YYYYMMDD_HHMMSS.WAV` (AudioMoth names its files by their start in UTC unless set otherwise).
FILE_NAME_UTC_PATTERNS = (
    (re.compile(r"(?<!\d)(\d{8}T\d{6})Z(?![0-9A-Za-z])"), "%Y%m%dT%H%M%S"),
    (re.compile(r"^(\d{8}_\d{6})\.[A-Za-z0-9]+$"), "%Y%m%d_%H%M%S"),
)
FILE_NAME_START_SOURCE = "file name"


def start_utc_from_file_name(path: str) -> float | None:
    """The Unix time a recording's file name (of a path or URL) says it started at, or None when it says none."""
    if re.match(r"[a-z][a-z0-9+.-]*://", path, flags=re.IGNORECASE):
        path = urllib.parse.urlsplit(path).path
    name = os.path.basename(path)
    for pattern, layout in FILE_NAME_UTC_PATTERNS:
        match = pattern.search(name)
        if match:
            try:
                return datetime.strptime(match.group(1), layout).replace(tzinfo=timezone.utc).timestamp()
            except ValueError:  # 20241399T..., not a date
                return None
    return None


def file_name_timeline(path: str | None) -> dict[str, Any] | None:
    """
    The time line of a recording (not a stream) whose file name says when it started (`start_utc_from_file_name`):
    that start, no gaps, `source` saying where the time came from. None when the name says nothing.
    """
    start = start_utc_from_file_name(path) if path else None
    if start is None or path is None:  # no start without a path
        return None
    return {
        "start_time_utc": start,
        "anchors": [[0.0, start]],
        "gaps": [],
        "source": {"name": os.path.basename(path), "start_time_source": FILE_NAME_START_SOURCE},
        "warnings": [],
    }


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
    # An anchor's seconds are never None (only its UTC may be unknown).
    index = max(find(anchors, seconds, key=lambda anchor: cast(float, anchor[0])) - 1, 0)
    anchor_seconds, anchor_utc = anchors[index]
    return None if anchor_utc is None else anchor_utc + (seconds - cast(float, anchor_seconds))


@dataclasses.dataclass(frozen=True)
class Gap:
    """
    A gap in an HLS stream, as the results report it (`to_dict` gives their JSON object, keys in this order).

    Args:
        after_segment (`str` or None): the last segment before the gap (None: the stream starts with it).
        next_segment (`str`): the segment after it (an `#EXT-X-GAP` segment when the playlist marks it).
        start_s (`float`): where it falls in the decoded audio: the first sample after it, in seconds.
        missing_s (`float` or None): how long it is; None when nothing says.
        missing_s_from (`str` or None): what says so (`"timestamps"`, `"program-date-time"`, ...).
        reason (`str`): every way it was found, joined by "; ".
        utc (`str` or None): ISO 8601 UTC of the instant just before it; None when the time is unknown.
        resumes_utc (`str` or None): ISO 8601 UTC where the audio resumes after it.
    """

    after_segment: str | None
    next_segment: str
    start_s: float
    missing_s: float | None
    missing_s_from: str | None
    reason: str
    utc: str | None
    resumes_utc: str | None

    def to_dict(self) -> dict[str, Any]:
        """The gap as the results' JSON (and batch's Parquet metadata, live's minute files) write it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Gap":
        """The gap `to_dict` wrote (read back from JSON)."""
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls)})


def plain_timeline(timeline: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A time line (`HLSAudio.timeline`) as JSON-ready data: its gaps as `Gap.to_dict` gives them."""
    if timeline is None:
        return None
    return {**timeline, "gaps": [gap.to_dict() for gap in timeline["gaps"]]}


def timeline_from_plain(plain: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The time line `plain_timeline` wrote (read back from JSON), its gaps `Gap`s again."""
    if plain is None:
        return None
    return {**plain, "gaps": [Gap.from_dict(gap) for gap in plain["gaps"]]}


@dataclasses.dataclass(frozen=True)
class PacketTiming:
    """What the time line needs of one decoded packet: its `(pts, time base)` (None without one) and its samples."""

    timestamp: tuple[int, Fraction] | None
    num_samples: int


@dataclasses.dataclass
class GapEvidence:
    """What a boundary shows about the gap there, besides its timestamp and program-date-time jumps."""

    discontinuity: bool = False  # `#EXT-X-DISCONTINUITY`: the timestamps start afresh
    marked_seconds: float | None = None  # EXTINF of the `#EXT-X-GAP` segments there
    numbers_seconds: float | None = None  # missing segment numbers x the mean segment duration


def gap_missing_seconds(
    evidence: GapEvidence, timestamp_jump: float | None, clock_jump: float | None
) -> tuple[float | None, str | None]:
    """
    `(missing_s, missing_s_from)` for a gap: how long it is and what says so (`(None, None)` when nothing does).
    `evidence` is what the boundary showed, `timestamp_jump` the presentation-timestamp jump there, `clock_jump` the
    `#EXT-X-PROGRAM-DATE-TIME` one.
    """
    # Timestamps count the encoder's samples exactly, unless the stream was restarted (a discontinuity);
    # the playlist's clock comes next; then what the playlist or the numbering imply.
    if evidence.discontinuity:
        timestamp_jump = None
    if timestamp_jump is not None and timestamp_jump > TIMESTAMP_JUMP_TOLERANCE_SECONDS:
        return timestamp_jump, "timestamps"
    if clock_jump is not None and clock_jump > PROGRAM_DATE_TIME_JUMP_TOLERANCE_SECONDS:
        return clock_jump, "program-date-time"
    if evidence.marked_seconds is not None:
        return evidence.marked_seconds, "EXTINF of #EXT-X-GAP segments"
    if timestamp_jump is not None and abs(timestamp_jump) <= TIMESTAMP_JUMP_TOLERANCE_SECONDS:
        # Numbers are missing, or the clock jumped, but the timestamps run on: no audio is missing.
        return max(timestamp_jump, 0.0), "timestamps"
    if evidence.numbers_seconds is not None:
        return evidence.numbers_seconds, "segment numbers x mean duration"
    if clock_jump is not None:
        return max(clock_jump, 0.0), "program-date-time"
    return None, None


def program_date_time_jump(previous: Segment, segment: Segment, rate: int) -> float | None:
    """
    Seconds between `segment`'s `#EXT-X-PROGRAM-DATE-TIME` and the end of `previous` (its date-time plus the
    audio it decoded to, at `rate`): 0 for back-to-back segments. None unless both segments give a date-time.
    """
    if previous.program_date_time is None or segment.program_date_time is None:
        return None
    expected = previous.program_date_time + previous.num_samples / rate
    return segment.program_date_time - expected


def timestamp_jump(previous: PacketTiming | None, current: PacketTiming, rate: int) -> float | None:
    """Seconds of stream time between the end of packet `previous` and the start of `current` (None: unmeasurable)."""
    if previous is None or previous.timestamp is None or current.timestamp is None:
        return None
    (previous_pts, previous_base), (pts, time_base) = previous.timestamp, current.timestamp
    if previous_base != time_base:
        return None
    expected = previous_pts + previous.num_samples / rate / time_base
    ticks = pts - expected
    if time_base.denominator == MPEG_TS_CLOCK_HZ and time_base.numerator == 1:
        # Each segment is demuxed on its own, so a wrap of the 33-bit clock between two shows as a huge jump.
        ticks = (ticks + MPEG_TS_PTS_WRAP / 2) % MPEG_TS_PTS_WRAP - MPEG_TS_PTS_WRAP / 2
    return float(ticks * time_base)


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


def mean_segment_seconds(durations: Sequence[float]) -> float | None:
    """The mean of segment durations, the last (shorter: the stream stopped in it) aside; None without any."""
    durations = list(durations)
    if not durations:
        return None
    return float(np.mean(durations[:-1] if len(durations) > 1 else durations))


def listed_segment_seconds(segments: Sequence[Segment]) -> float | None:
    """The mean segment duration a playlist's EXTINF gives (`mean_segment_seconds`); None without EXTINF."""
    return mean_segment_seconds([segment.duration for segment in segments if segment.duration])


@dataclasses.dataclass
class _OpenGap:
    """A gap whose evidence is still being collected: it is decided when the segment after it has been decoded."""

    after_segment: str | None
    next_segment: str
    reasons: list = dataclasses.field(default_factory=list)
    evidence: GapEvidence = dataclasses.field(default_factory=GapEvidence)
    timestamp_jump: float | None = None
    clock_jump: float | None = None


class StreamTimeLine:
    """
    The UTC time line and gaps of one recording, fed its segments in order: `add_marked_gap` for a segment the
    playlist marks `#EXT-X-GAP`, `add_segment` for each decoded one (with its packets' timestamps), `finish` at the
    end. `anchors` (`[[seconds, utc or None], ...]`, see `utc_at`), `gaps` (`Gap`s), `start_time_utc`,
    `start_time_source` and `warnings` hold what the segments fed so far say.

    Every rule needs the mean segment duration (a late first segment's start, an `#EXT-X-GAP` segment without EXTINF,
    missing numbers): given as `nominal_seconds` (a playlist's EXTINF, `listed_segment_seconds`), the segments are
    timed as they come; None (no EXTINF: a folder of `.ts` files), they are held and timed at `finish`, from the mean
    of their decoded durations.

    Args:
        nominal_seconds (`float` or None): the mean segment duration, or None to take it from the decoded segments.
        folder_epoch (`int` or None): the Unix time the stream's folder is named by.
        count_missing_numbers (`bool`, *optional*, False): a gap in the segments' numbers is a gap in the stream
            (a folder of `.ts` files, numbered by their names).
    """

    def __init__(
        self, nominal_seconds: float | None, folder_epoch: int | None, count_missing_numbers: bool = False
    ) -> None:
        self.nominal_seconds = nominal_seconds
        self.folder_epoch = folder_epoch
        self.count_missing_numbers = count_missing_numbers
        self.sampling_rate: int | None = None
        self.start_time_utc: float | None = None
        self.start_time_source: str | None = None
        self.anchors: list[list[float | None]] = []  # [seconds, utc or None]; empty until the first playable segment
        self.gaps: list[Gap] = []
        self.warnings: list[str] = []
        # (segment, packets or None for a marked gap) fed before the mean duration is known
        self._held: list[tuple[Segment, Sequence[PacketTiming] | None]] = []
        self._previous_segment: Segment | None = None  # the last playable segment
        # (PacketTiming, its segment) of the last packet that decoded
        self._previous_packet: tuple[PacketTiming, Segment] | None = None
        self._open_gaps: dict[
            int, _OpenGap
        ] = {}  # first sample after the gap -> _OpenGap, until its evidence is complete

    @property
    def started(self) -> bool:
        return bool(self.anchors)

    def add_marked_gap(self, segment: Segment) -> None:
        """A segment the playlist marks `#EXT-X-GAP` (no audio, only its duration), at `segment.first_sample`."""
        if self.nominal_seconds is None:
            self._held.append((segment, None))
            return
        previous = self._previous_segment.name if self._previous_segment else None
        gap = self._open(segment.first_sample, previous, segment.name, f"{segment.name} is marked #EXT-X-GAP")
        duration = segment.duration or self.nominal_seconds
        gap.evidence.marked_seconds = (gap.evidence.marked_seconds or 0.0) + duration

    def add_segment(self, segment: Segment, packets: Sequence[PacketTiming], sampling_rate: int) -> None:
        """
        A decoded segment (`segment.first_sample`, `segment.num_samples` set) and its packets that decoded, in order
        (`sampling_rate` is the stream's): its boundary and packets are checked for gaps, which are then decided,
        and the time line is extended over it.
        """
        self.sampling_rate = sampling_rate
        if self.nominal_seconds is None:
            self._held.append((segment, packets))
            return
        first_sample, previous, clock_jump = segment.first_sample, self._previous_segment, None
        if previous is not None:
            where = (first_sample, previous.name, segment.name)
            if segment.discontinuity:
                self._open(*where, f"#EXT-X-DISCONTINUITY before {segment.name}").evidence.discontinuity = True
            skipped, numbers = segment.numbers_missing_after(previous) if self.count_missing_numbers else (0, None)
            if skipped > 0:
                gap = self._open(*where, f"segment number(s) {numbers} missing")
                gap.evidence.numbers_seconds = skipped * self.nominal_seconds
            clock_jump = program_date_time_jump(previous, segment, sampling_rate)
            if clock_jump is not None and abs(clock_jump) > PROGRAM_DATE_TIME_JUMP_TOLERANCE_SECONDS:
                self._open(*where, f"#EXT-X-PROGRAM-DATE-TIME jumps by {clock_jump:+.3f} s")
        timestamp_jumps = {}  # first sample of a packet -> its timestamp jump
        sample = first_sample
        for packet in packets:
            jump = timestamp_jump(self._previous_packet[0] if self._previous_packet else None, packet, sampling_rate)
            if jump is not None:
                timestamp_jumps[sample] = jump
                if abs(jump) > TIMESTAMP_JUMP_TOLERANCE_SECONDS:
                    assert self._previous_packet is not None  # a jump is measured from the packet before
                    before = self._previous_packet[1]
                    inside = "" if before is not segment else f" inside {segment.name}"
                    direction = "jump ahead" if jump > 0 else "go back"
                    self._open(
                        sample, before.name, segment.name, f"timestamps {direction} by {abs(jump):.3f} s{inside}"
                    )
            self._previous_packet = (packet, segment)
            sample += packet.num_samples
        stated = segment.program_date_time if self.started else None
        if not self.started:
            self._start(segment)
        # Every open gap is at this segment's first sample (its boundary) or inside it (its packets).
        for gap_sample, gap in self._open_gaps.items():
            gap.timestamp_jump = timestamp_jumps.get(gap_sample)
            if gap_sample == first_sample:
                gap.clock_jump = clock_jump
        self._close_gaps(first_sample if stated is not None else None, stated)
        self._previous_segment = segment

    def finish(self) -> None:
        """The recording ended: time what was held for the mean duration, and decide the gaps at the very end."""
        if self.nominal_seconds is None:
            rate = self.sampling_rate
            decoded = [segment.num_samples / rate for segment, packets in self._held if packets is not None and rate]
            self.nominal_seconds = mean_segment_seconds(decoded) or 0.0
            held, self._held = self._held, []
            for segment, packets in held:
                if packets is None:
                    self.add_marked_gap(segment)
                else:
                    assert rate is not None  # set by the decoded segment `packets` came from
                    self.add_segment(segment, packets, rate)
        if self._open_gaps and self.started:  # #EXT-X-GAP segments at the very end
            self._close_gaps(None, None)

    def forget_before(self, seconds: float) -> None:
        """Let go of the anchors before the one in force at `seconds`, and of the gaps before it."""
        if self.anchors:
            in_force = max(
                index for index, anchor in enumerate(self.anchors) if cast(float, anchor[0]) <= seconds or index == 0
            )
            del self.anchors[:in_force]
        self.gaps = [gap for gap in self.gaps if gap.start_s >= seconds]

    # -- internals ----------------------------------------------------------------------------------------------

    def _open(self, sample: int, after_segment: str | None, next_segment: str, reason: str) -> _OpenGap:
        """
        Record `reason` for the gap before sample `sample`: a gap found several ways (a discontinuity and a
        timestamp jump) is one gap with every reason.
        """
        if sample not in self._open_gaps:
            self._open_gaps[sample] = _OpenGap(after_segment, next_segment)
        gap = self._open_gaps[sample]
        gap.reasons.append(reason)
        return gap

    def _start(self, first: Segment) -> None:
        assert self.nominal_seconds is not None  # segments are timed (and the time line started) once it is known
        self.start_time_utc, self.start_time_source, warning = stream_start_time(
            first, self.folder_epoch, self.nominal_seconds
        )
        if warning:
            self.warnings.append(warning)
        self.anchors = [[0.0, self.start_time_utc]]

    def _close_gaps(self, stated_sample: int | None, stated_utc: float | None) -> None:
        """
        Extend the time line over the open gaps (and the playlist's date-time at `stated_sample`), in time order,
        then decide each gap: its length, and its UTC either side.
        """
        rate = self.sampling_rate
        assert rate is not None  # gaps are closed as a decoded segment arrives, or at the end after one did
        missing = {
            sample: gap_missing_seconds(gap.evidence, gap.timestamp_jump, gap.clock_jump)
            for sample, gap in self._open_gaps.items()
        }
        for sample in sorted(set(self._open_gaps) | ({stated_sample} if stated_sample is not None else set())):
            seconds = sample / rate
            if sample == stated_sample:  # the playlist's clock is authoritative where it speaks
                self.anchors.append([seconds, stated_utc])
            else:  # a gap's anchor extrapolates from everything before it
                before, missing_s = utc_at(self.anchors, seconds, before=True), missing[sample][0]
                self.anchors.append(
                    [seconds, before + missing_s if before is not None and missing_s is not None else None]
                )
        for sample in sorted(self._open_gaps):
            gap, seconds = self._open_gaps[sample], sample / rate
            self.gaps.append(
                Gap(
                    after_segment=gap.after_segment,
                    next_segment=gap.next_segment,
                    start_s=seconds,
                    missing_s=missing[sample][0],
                    missing_s_from=missing[sample][1],
                    reason="; ".join(gap.reasons),
                    utc=iso_utc(utc_at(self.anchors, seconds, before=True)),
                    resumes_utc=iso_utc(utc_at(self.anchors, seconds)),
                )
            )
        self._open_gaps = {}
