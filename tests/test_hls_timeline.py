"""
The HLS time line on its own (no audio, no PyAV): the `Gap` type and its serialised form, and `StreamTimeLine` fed a
synthetic stream segment by segment (as `orcahello live` feeds it) or held and timed at the end (as a finished folder
of segments is), which must give the same gaps and UTC anchors, the ones worked out by hand here.
"""

import dataclasses
import json
from fractions import Fraction

import pytest

from hls_playlist_orcahello import Segment
from hls_timeline_orcahello import (
    Gap,
    PacketTiming,
    StreamTimeLine,
    plain_timeline,
    timeline_from_plain,
    utc_at,
)

RATE = 48000
PACKET_SAMPLES = 960  # 20 ms
PACKET_TICKS = 1800  # 20 ms of the 90 kHz MPEG-TS clock
TIME_BASE = Fraction(1, 90000)
SEGMENT_PACKETS = 50  # 1 s a segment
START = 1700000000.0


def segment(name, number, pts_seconds, program_date_time=None, discontinuity=False):
    """A decoded 1-s segment and its packets, its timestamps starting at `pts_seconds`."""
    decoded = Segment(name, name, number, 1.0, program_date_time, discontinuity=discontinuity)
    first_tick = round(pts_seconds * 90000)
    packets = [
        PacketTiming((first_tick + index * PACKET_TICKS, TIME_BASE), PACKET_SAMPLES) for index in range(SEGMENT_PACKETS)
    ]
    return decoded, packets


def the_stream():
    """
    s0, s1 dated; s2 left out of the playlist (its second missing from the timestamps, and from the clock: s3 is
    dated 1 s late); an #EXT-X-GAP segment of 2 s whose audio is indeed missing; s5 after a discontinuity (the
    timestamps start again at 0); s6 dated 100 s after the start.
    """
    return [
        segment("s0.ts", 0, 0.0, START),
        segment("s1.ts", 1, 1.0, START + 1),
        segment("s3.ts", 2, 3.0, START + 3),
        (Segment("m.ts", "m.ts", number=3, duration=2.0, marked_gap=True), None),
        segment("s4.ts", 4, 6.0),
        segment("s5.ts", 5, 0.0, discontinuity=True),
        segment("s6.ts", 6, 1.0, START + 100),
    ]


def feed(time_line, stream):
    """Feed `stream` in order, as `HLSStream` does (first samples counted here); a snapshot after each segment."""
    sample, snapshots = 0, []
    for decoded, packets in stream:
        decoded.first_sample = sample
        if packets is None:
            time_line.add_marked_gap(decoded)
        else:
            decoded.num_samples = SEGMENT_PACKETS * PACKET_SAMPLES
            sample += decoded.num_samples
            time_line.add_segment(decoded, packets, RATE)
        snapshots.append((list(time_line.gaps), [list(anchor) for anchor in time_line.anchors]))
    time_line.finish()
    return snapshots


EXPECTED_GAPS = [
    Gap(
        after_segment="s1.ts",
        next_segment="s3.ts",
        start_s=2.0,
        missing_s=1.0,
        missing_s_from="timestamps",
        reason="#EXT-X-PROGRAM-DATE-TIME jumps by +1.000 s; timestamps jump ahead by 1.000 s",
        utc="2023-11-14T22:13:22.000Z",
        resumes_utc="2023-11-14T22:13:23.000Z",
    ),
    Gap(
        after_segment="s3.ts",
        next_segment="m.ts",
        start_s=3.0,
        missing_s=2.0,
        missing_s_from="timestamps",
        reason="m.ts is marked #EXT-X-GAP; timestamps jump ahead by 2.000 s",
        utc="2023-11-14T22:13:24.000Z",
        resumes_utc="2023-11-14T22:13:26.000Z",
    ),
    Gap(
        after_segment="s4.ts",
        next_segment="s5.ts",
        start_s=4.0,
        missing_s=None,  # the timestamps start afresh, and no clock says
        missing_s_from=None,
        reason="#EXT-X-DISCONTINUITY before s5.ts; timestamps go back by 7.000 s",
        utc="2023-11-14T22:13:27.000Z",
        resumes_utc=None,
    ),
]
# Where the playlist dates a segment, its clock; after a gap, the time before it plus what is missing (None: unknown).
EXPECTED_ANCHORS = [
    [0.0, START], [1.0, START + 1], [2.0, START + 3], [3.0, START + 6], [4.0, None], [5.0, START + 100],
]  # fmt: skip


def test_gap_is_a_frozen_dataclass_serialised_in_the_results_key_order():
    gap = EXPECTED_GAPS[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        gap.start_s = 3.0
    assert list(gap.to_dict()) == [
        "after_segment", "next_segment", "start_s", "missing_s", "missing_s_from", "reason", "utc", "resumes_utc",
    ]  # fmt: skip
    assert gap.to_dict()["reason"] == gap.reason and gap.to_dict()["start_s"] == 2.0
    assert Gap.from_dict(json.loads(json.dumps(gap.to_dict()))) == gap
    with pytest.raises(KeyError):
        Gap.from_dict({"start_s": 1.0})


def test_a_time_line_goes_to_json_and_back_with_its_gaps():
    timeline = {"start_time_utc": START, "anchors": EXPECTED_ANCHORS, "gaps": EXPECTED_GAPS, "warnings": []}
    text = json.dumps(plain_timeline(timeline), sort_keys=True)
    assert json.loads(text)["gaps"][2] == {
        "after_segment": "s4.ts", "next_segment": "s5.ts", "start_s": 4.0, "missing_s": None, "missing_s_from": None,
        "reason": "#EXT-X-DISCONTINUITY before s5.ts; timestamps go back by 7.000 s",
        "utc": "2023-11-14T22:13:27.000Z", "resumes_utc": None,
    }  # fmt: skip
    assert timeline_from_plain(json.loads(text)) == timeline
    assert plain_timeline(None) is None and timeline_from_plain(None) is None


def test_segment_by_segment_gives_the_gaps_and_anchors_worked_out_by_hand():
    time_line = StreamTimeLine(nominal_seconds=1.0, folder_epoch=None)
    feed(time_line, the_stream())
    assert time_line.gaps == EXPECTED_GAPS
    assert time_line.anchors == EXPECTED_ANCHORS
    assert (time_line.start_time_utc, time_line.start_time_source) == (START, "EXT-X-PROGRAM-DATE-TIME")
    assert utc_at(time_line.anchors, 2.5) == START + 3.5 and utc_at(time_line.anchors, 4.5) is None


def test_fed_one_by_one_each_gap_and_anchor_is_final_when_it_appears():
    """What live has written from an early snapshot is never contradicted later: the time line only grows."""
    time_line = StreamTimeLine(nominal_seconds=1.0, folder_epoch=None)
    snapshots = feed(time_line, the_stream())
    for gaps, anchors in snapshots:
        assert gaps == time_line.gaps[: len(gaps)]
        assert anchors == time_line.anchors[: len(anchors)]
    # Each gap is there once the segment after it is decoded (the marked one: once s4 is).
    assert [len(gaps) for gaps, _ in snapshots] == [0, 0, 1, 1, 2, 3, 3]


def test_held_until_the_end_gives_what_segment_by_segment_gives():
    """Without EXTINF the mean duration is the decoded segments', known at the end: the same rules, applied then."""
    one_by_one = StreamTimeLine(nominal_seconds=1.0, folder_epoch=None)
    feed(one_by_one, the_stream())
    at_the_end = StreamTimeLine(nominal_seconds=None, folder_epoch=None)
    snapshots = feed(at_the_end, the_stream())
    assert all(gaps == [] for gaps, _ in snapshots)  # nothing is timed before the mean duration is known
    assert at_the_end.nominal_seconds == 1.0
    assert at_the_end.gaps == one_by_one.gaps == EXPECTED_GAPS
    assert at_the_end.anchors == one_by_one.anchors == EXPECTED_ANCHORS


def test_a_folder_starting_late_is_timed_from_its_epoch_and_its_missing_numbers():
    """A folder named by its epoch whose first file is segment 2, with segment 4 missing (no timestamps to say)."""
    stream = []
    for name, number in (("live002.ts", 2), ("live003.ts", 3), ("live005.ts", 5)):
        decoded, packets = segment(name, number, 0.0)
        stream.append((decoded, [PacketTiming(None, packet.num_samples) for packet in packets]))
    results = []
    for nominal in (1.0, None):
        time_line = StreamTimeLine(nominal_seconds=nominal, folder_epoch=1600000000, count_missing_numbers=True)
        feed(time_line, [(Segment(s.location, s.name, number=s.number), packets) for s, packets in stream])
        results.append((time_line.gaps, time_line.anchors, time_line.start_time_utc, time_line.warnings))
    assert results[0] == results[1]
    gaps, anchors, start, warnings = results[0]
    assert start == 1600000002.0 and "live002.ts is segment 2" in warnings[0]
    assert gaps == [
        Gap("live003.ts", "live005.ts", 2.0, 1.0, "segment numbers x mean duration", "segment number(s) 4 missing",
            "2020-09-13T12:26:44.000Z", "2020-09-13T12:26:45.000Z"),
    ]  # fmt: skip
    assert anchors == [[0.0, 1600000002.0], [2.0, 1600000005.0]]


def test_forgetting_keeps_the_anchor_in_force_and_the_gaps_after():
    time_line = StreamTimeLine(nominal_seconds=1.0, folder_epoch=None)
    feed(time_line, the_stream())
    time_line.forget_before(3.5)
    assert time_line.anchors == EXPECTED_ANCHORS[3:]
    assert time_line.gaps == EXPECTED_GAPS[2:]
    assert utc_at(time_line.anchors, 3.5) == START + 6.5
