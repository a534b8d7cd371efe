"""
HLS input, as Orcasound's hydrophones stream and archive it: real streams made with ffmpeg from the fixture WAVs
(orcanode's segment-muxer command), decoded to the samples of the WAV production converts, served over HTTP on
127.0.0.1, timed in UTC, gaps reported, bad input refused in one line; and `orcahello detect` on them.
"""

import csv
import datetime
import json
import os
import re
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import LEGACY, LocalHTTPServer, make_orcanode_hls, production_wav, remote_code_module, run_orcahello_cli

import hls_orcahello
import hls_playlist_orcahello
from hls_stream_orcahello import HLSStream
from hls_timeline_orcahello import listed_segment_seconds, utc_at
from orcahello import inputs, writers

EPOCH = 1600000000  # an Orcasound stream folder's name: the Unix time the node started the stream
MINUTE_WAV = LEGACY / "audio" / "rec01_calls_quiet_bg.wav"  # 60.011 s, 48 kHz mono: one production minute
STEREO_WAV = LEGACY / "audio" / "edge_stereo_48k_6s.wav"  # a research node streams two channels
SAMPLE_RATE = 48000
# oneDNN picks kernels by batch composition, so the same window's score can move by ~1e-6 between runs that batch
# differently; any difference in the samples moves it by far more.
SAME_WINDOWS_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """`<root>/rpi_orcasound_lab/hls/<EPOCH>/` (one minute, mono, 10-s segments) and a 2-channel stream (2-s segments)."""
    root = tmp_path_factory.mktemp("archive")
    minute = make_orcanode_hls(MINUTE_WAV, root / "rpi_orcasound_lab" / "hls" / str(EPOCH))
    stereo = make_orcanode_hls(STEREO_WAV, root / "research_node" / "hls" / "stereo", channels=2, segment_seconds=2)
    return root, minute, stereo


def segments_of(folder):
    return sorted(Path(folder).glob("live*.ts"))  # live000.ts ... : three digits sort correctly below 1000


def playlist_durations(playlist):
    """`{segment: EXTINF}` as ffmpeg's muxer wrote them, in playlist order (parsed here, not by the code under test)."""
    text = Path(playlist).read_text()
    return {name: float(duration) for duration, name in re.findall(r"#EXTINF:([0-9.]+),[^\n]*\n(\S+)", text)}


def read_int16(path):
    return soundfile.read(str(path), dtype="int16", always_2d=True)[0].T


def decode(source, **kwargs):
    """Every sample of an HLS input through the module under test, and the opened input (gaps, times...)."""
    audio = hls_orcahello.open_hls(str(source), **kwargs)
    samples = audio.read(0, audio.num_samples)
    audio.close()
    return samples, audio


def assert_same_samples_as_ffmpeg(samples, wav):
    """
    The decoded samples are those of ffmpeg's WAV, sample for sample (the AAC priming frame included). Measured:
    identical (max |difference| 0) against imageio-ffmpeg's ffmpeg 9.0 with PyAV 18's FFmpeg 8.1 libraries; Debian
    12's ffmpeg 5.1, what production ran, differs from both by 1 LSB on 1.6e-5 of the samples (its float AAC decoder
    rounds a few values the other way). A real difference in decoding or conversion (a lost frame, floor instead of
    rounding, swapped channels) breaks both bounds by far.
    """
    assert samples.dtype == np.int16 and samples.shape == wav.shape
    difference = np.abs(samples.astype(np.int32) - wav.astype(np.int32))
    assert difference.max() <= 1
    assert np.count_nonzero(difference) <= 1e-4 * difference.size


def expected_iso(epoch_seconds):
    """ISO 8601 UTC with milliseconds, formatted here for whole-millisecond instants."""
    moment = datetime.datetime.fromtimestamp(round(epoch_seconds, 3), tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{round(moment.microsecond / 1000):03d}Z"


def parse_iso(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def scores(result):
    return np.array([window["score"] for window in result["windows"]])


def audio_input_error(pipe):
    """The AudioInputError class of the pipeline's own audio module (remote code is imported as its own copy)."""
    return remote_code_module(pipe, "audio_orcahello").AudioInputError


def copy_segments(source_folder, destination, skip=(), rename=None):
    destination.mkdir(parents=True)
    for path in segments_of(source_folder):
        if path.name not in skip:
            shutil.copyfile(path, destination / (rename(path.name) if rename else path.name))
    return destination


# ---------------------------------------------------------------------------------------------------------------
# What production scored: the WAV that `ffmpeg -i concatenated.ts clip.wav` makes
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
@pytest.mark.parametrize("stream", ["mono", "stereo"])
def test_decoding_gives_the_samples_of_productions_wav(archive, stream, tmp_path):
    _, minute, stereo = archive
    folder = minute if stream == "mono" else stereo
    samples, audio = decode(folder / "live.m3u8")
    wav = read_int16(production_wav(segments_of(folder), tmp_path / "production.wav"))
    assert (audio.sampling_rate, audio.num_channels) == (SAMPLE_RATE, 1 if stream == "mono" else 2)
    assert len(segments_of(folder)) > 2  # several segments: their boundaries are part of what is checked
    assert_same_samples_as_ffmpeg(samples, wav)


@pytest.mark.needs_test_data
@pytest.mark.parametrize("stream", ["mono minute, tiny model", "stereo, production ResNet50"])
def test_scores_are_those_of_productions_wav(archive, stream, tiny_pipeline, resnet50_pipeline, tmp_path):
    _, minute, stereo = archive
    # The production architecture on the short stereo stream (its frontend downmixes); the minute with the tiny model,
    # which scores the same samples the same way at a fraction of the time.
    folder, pipe = (minute, tiny_pipeline) if stream.startswith("mono") else (stereo, resnet50_pipeline)
    wav = production_wav(segments_of(folder), tmp_path / "production.wav")
    from_hls = pipe(str(folder / "live.m3u8"), return_timestamps=True)
    from_wav = pipe(str(wav), return_timestamps=True)
    assert len(from_hls["windows"]) == len(from_wav["windows"]) == int(soundfile.info(str(wav)).duration) - 1
    np.testing.assert_allclose(scores(from_hls), scores(from_wav), rtol=0, atol=SAME_WINDOWS_TOLERANCE)
    assert from_hls["local_predictions"] == from_wav["local_predictions"]
    assert from_hls["global_prediction"] == from_wav["global_prediction"]
    assert from_hls["duration_s"] == from_wav["duration_s"]


# ---------------------------------------------------------------------------------------------------------------
# Playlist, folder, one segment, URL: the same recording
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
def test_folder_of_segments_playlist_and_single_segment_agree(archive, tiny_pipeline, tmp_path):
    _, minute, _ = archive
    from_playlist, _ = decode(minute / "live.m3u8")
    from_folder, folder_audio = decode(minute)
    np.testing.assert_array_equal(from_folder, from_playlist)
    assert folder_audio.gaps == [] and folder_audio.describe()["type"] == "hls-folder"

    one_segment, _ = decode(minute / "live003.ts")
    assert_same_samples_as_ffmpeg(one_segment, read_int16(production_wav([minute / "live003.ts"], tmp_path / "a.wav")))

    by_playlist = tiny_pipeline(str(minute / "live.m3u8"), return_timestamps=True)
    by_folder = tiny_pipeline(str(minute), return_timestamps=True)
    np.testing.assert_allclose(scores(by_folder), scores(by_playlist), rtol=0, atol=SAME_WINDOWS_TOLERANCE)


@pytest.mark.needs_test_data
def test_segments_are_ordered_by_the_number_in_their_names(archive, tmp_path):
    _, minute, _ = archive
    # live995.ts ... live1001.ts: sorted as text, live1000.ts and live1001.ts would come first.
    folder = copy_segments(minute, tmp_path / "renumbered", rename=lambda name: f"live{995 + int(name[4:7])}.ts")
    assert sorted(path.name for path in folder.iterdir())[0] == "live1000.ts"
    samples, audio = decode(folder)
    np.testing.assert_array_equal(samples, decode(minute / "live.m3u8")[0])
    assert audio.gaps == []


@pytest.mark.needs_test_data
def test_playlist_served_over_http_agrees_with_the_local_one(archive, tiny_pipeline):
    root, minute, _ = archive
    with LocalHTTPServer(root) as server:
        url = server.url(minute.relative_to(root) / "live.m3u8")
        from_url = tiny_pipeline(url, return_timestamps=True)
    local = tiny_pipeline(str(minute / "live.m3u8"), return_timestamps=True)
    np.testing.assert_allclose(scores(from_url), scores(local), rtol=0, atol=SAME_WINDOWS_TOLERANCE)
    assert from_url["source"]["uri"] == url and from_url["source"]["segments"] == len(segments_of(minute))
    assert from_url["start_time_utc"] == expected_iso(EPOCH)  # the URL's folder is named by the epoch too


@pytest.mark.needs_test_data
def test_reading_keeps_memory_bounded_and_can_go_back(archive):
    _, minute, _ = archive
    audio = hls_orcahello.open_hls(str(minute / "live.m3u8"))
    whole, _ = decode(minute / "live.m3u8")
    window, hop = 2 * SAMPLE_RATE, SAMPLE_RATE
    for start in range(0, audio.num_samples - window + 1, hop):  # the pipeline's 2-s windows, 1 s apart
        np.testing.assert_array_equal(audio.read(start, start + window), whole[:, start : start + window])
    # Never more than a window plus the AAC frame being decoded, of a minute of audio.
    assert audio.max_buffered_samples <= window + 2048
    np.testing.assert_array_equal(audio.read(1000, 5000), whole[:, 1000:5000])  # backwards: decoded again
    audio.close()


# ---------------------------------------------------------------------------------------------------------------
# Absolute time
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
def test_epoch_folder_name_gives_utc_times(archive, tiny_pipeline):
    _, minute, stereo = archive
    result = tiny_pipeline(str(minute / "live.m3u8"), return_timestamps=True, local_threshold=0.0)
    assert result["start_time_utc"] == expected_iso(EPOCH) == "2020-09-13T12:26:40.000Z"
    assert result["source"]["start_time_source"].startswith("folder name")
    assert result["gaps"] == [] and not any("gap" in warning for warning in result["warnings"])
    for window in result["windows"]:
        assert window["start_utc"] == expected_iso(EPOCH + window["start"])
        assert window["end_utc"] == expected_iso(EPOCH + window["end"])
        assert window["spans_gap"] is False
    for row in result["submission"]:
        assert row["start_time_utc"] == expected_iso(EPOCH + row["start_time_s"])
    [detection] = result["detections"]  # threshold 0: every row is positive, one detection over the minute
    assert detection["start_utc"] == expected_iso(EPOCH)
    assert detection["end_utc"] == expected_iso(EPOCH + detection["end"])

    # Without a dated playlist or an epoch-named folder there is no absolute time, and none is invented.
    undated = tiny_pipeline(str(stereo / "live.m3u8"), return_timestamps=True)
    wav = tiny_pipeline(str(MINUTE_WAV), return_timestamps=True)
    for result in (undated, wav):
        assert result["start_time_utc"] is None and result["gaps"] == []
        assert "start_utc" not in result["windows"][0] and "start_time_utc" not in result["submission"][0]


@pytest.mark.needs_test_data
def test_program_date_time_gives_utc_and_its_jump_is_a_gap(archive, tiny_pipeline, tmp_path):
    _, minute, _ = archive
    folder = copy_segments(minute, tmp_path / "dated")  # not an epoch name: the time comes from the playlist
    durations = playlist_durations(minute / "live.m3u8")
    names = list(durations)
    start = 1629919500.25  # 2021-08-25T19:25:00.250Z
    clock, lines = start, ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:11", "#EXT-X-MEDIA-SEQUENCE:0"]
    for index, name in enumerate(names):
        if index == 3:
            clock += 30.0  # the encoder's clock says 30 s passed that no segment holds
        stamp = datetime.datetime.fromtimestamp(clock, tz=datetime.timezone.utc).isoformat(timespec="milliseconds")
        lines += [f"#EXT-X-PROGRAM-DATE-TIME:{stamp}", f"#EXTINF:{durations[name]:.6f},", name]
        clock += durations[name]
    (folder / "dated.m3u8").write_text("\n".join(lines + ["#EXT-X-ENDLIST", ""]))

    result = tiny_pipeline(str(folder / "dated.m3u8"), return_timestamps=True)
    assert result["start_time_utc"] == "2021-08-25T19:25:00.250Z"
    assert result["source"]["start_time_source"] == "EXT-X-PROGRAM-DATE-TIME"
    [gap] = result["gaps"]
    first_three = read_int16(production_wav(segments_of(minute)[:3], tmp_path / "first3.wav")).shape[1]
    assert (gap["after_segment"], gap["next_segment"]) == (names[2], names[3])
    assert gap["start_s"] == first_three / SAMPLE_RATE
    assert gap["missing_s"] == pytest.approx(30.0, abs=2e-3) and gap["missing_s_from"] == "program-date-time"
    assert "PROGRAM-DATE-TIME jumps" in gap["reason"]
    for window in result["windows"]:
        assert window["spans_gap"] is (window["start"] < gap["start_s"] < window["end"])
        later = 30.0 if window["start"] >= gap["start_s"] else 0.0
        assert parse_iso(window["start_utc"]) == pytest.approx(start + window["start"] + later, abs=1.5e-3)
    assert sum(window["spans_gap"] for window in result["windows"]) == 2  # a gap at 30.016 s is inside 2 windows
    assert any(warning.startswith(f"gap after segment {names[2]}") for warning in result["warnings"])


# ---------------------------------------------------------------------------------------------------------------
# Gaps
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
def test_deleted_middle_segment_is_reported_as_a_gap(archive, tiny_pipeline, tmp_path):
    _, minute, _ = archive
    folder = copy_segments(minute, tmp_path / "rpi_orcasound_lab" / "hls" / str(EPOCH), skip={"live002.ts"})
    kept = segments_of(folder)
    samples, audio = decode(folder)
    # Production concatenates the segments it has: the audio either side is butted together, nothing inserted.
    assert_same_samples_as_ffmpeg(samples, read_int16(production_wav(kept, tmp_path / "production.wav")))

    before = read_int16(production_wav(kept[:2], tmp_path / "before.wav")).shape[1]  # live000 + live001
    missing = playlist_durations(minute / "live.m3u8")["live002.ts"]
    [gap] = audio.gaps
    assert (gap.after_segment, gap.next_segment) == ("live001.ts", "live003.ts")
    assert gap.start_s == before / SAMPLE_RATE
    assert "segment number(s) 2 missing" in gap.reason and "timestamps jump ahead" in gap.reason
    assert gap.missing_s == pytest.approx(missing, abs=1e-3) and gap.missing_s_from == "timestamps"
    assert parse_iso(gap.utc) == pytest.approx(EPOCH + gap.start_s, abs=1e-3)
    assert parse_iso(gap.resumes_utc) == pytest.approx(EPOCH + gap.start_s + missing, abs=1e-3)

    result = tiny_pipeline(str(folder), return_timestamps=True)
    assert result["gaps"] == [gap.to_dict() for gap in audio.gaps]
    assert len(result["windows"]) == int(samples.shape[1] // SAMPLE_RATE) - 1
    for window in result["windows"]:
        assert window["spans_gap"] is (window["start"] < gap.start_s < window["end"])
        later = missing if window["start"] >= gap.start_s else 0.0
        assert parse_iso(window["start_utc"]) == pytest.approx(EPOCH + window["start"] + later, abs=1e-3)
    assert [window["start"] for window in result["windows"] if window["spans_gap"]] == [19.0, 20.0]
    assert any(warning.startswith("gap after segment live001.ts") for warning in result["warnings"])


def edited_playlist(minute, tmp_path):
    """
    `<tmp_path>/edited/edited.m3u8`: the minute dated, live002.ts dropped from the playlist, a discontinuity before
    live004.ts, live005.ts marked #EXT-X-GAP (and absent). Returns it and the original EXTINF durations.
    """
    folder = copy_segments(minute, tmp_path / "edited", skip={"live005.ts"})  # #EXT-X-GAP: never fetched
    durations = playlist_durations(minute / "live.m3u8")
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:11", "#EXT-X-MEDIA-SEQUENCE:0"]
    for name, duration in durations.items():
        if name == "live000.ts":
            lines.append("#EXT-X-PROGRAM-DATE-TIME:2021-08-25T19:25:00Z")
        if name == "live002.ts":  # dropped from the playlist: only the timestamps tell
            continue
        if name == "live004.ts":
            lines.append("#EXT-X-DISCONTINUITY")
        if name == "live005.ts":
            lines.append("#EXT-X-GAP")
        lines += [f"#EXTINF:{duration:.6f},", name]
    (folder / "edited.m3u8").write_text("\n".join(lines + ["#EXT-X-ENDLIST", ""]))
    return folder / "edited.m3u8", durations


@pytest.mark.needs_test_data
def test_discontinuity_gap_tag_and_dropped_entry_in_a_playlist(archive, tiny_pipeline, tmp_path):
    _, minute, _ = archive
    playlist, durations = edited_playlist(minute, tmp_path)
    folder = playlist.parent

    samples, audio = decode(folder / "edited.m3u8")
    names = ["live000.ts", "live001.ts", "live003.ts", "live004.ts", "live006.ts"]
    assert_same_samples_as_ffmpeg(
        samples, read_int16(production_wav([folder / name for name in names], tmp_path / "production.wav"))
    )
    dropped, discontinuity, tagged = audio.gaps
    assert (dropped.after_segment, dropped.next_segment) == ("live001.ts", "live003.ts")
    assert "timestamps jump ahead" in dropped.reason
    assert dropped.missing_s == pytest.approx(durations["live002.ts"], abs=1e-3)
    # A discontinuity means the timestamps start afresh: how much is missing is unknown, and so is the time after it.
    assert (discontinuity.after_segment, discontinuity.next_segment) == ("live003.ts", "live004.ts")
    assert "#EXT-X-DISCONTINUITY" in discontinuity.reason and discontinuity.missing_s is None
    assert discontinuity.utc is not None and discontinuity.resumes_utc is None
    assert (tagged.after_segment, tagged.next_segment) == ("live004.ts", "live005.ts")
    assert "#EXT-X-GAP" in tagged.reason

    result = tiny_pipeline(str(folder / "edited.m3u8"), return_timestamps=True)
    start = parse_iso("2021-08-25T19:25:00.000Z")
    for window in result["windows"]:
        if window["start"] < dropped.start_s:
            assert parse_iso(window["start_utc"]) == pytest.approx(start + window["start"], abs=1e-3)
        elif window["start"] >= discontinuity.start_s:
            assert window["start_utc"] is None  # never invented
    rows_after = [row for row in result["submission"] if row["start_time_s"] >= discontinuity.start_s]
    assert rows_after and all(row["start_time_utc"] is None for row in rows_after)


@pytest.mark.needs_test_data
def test_a_stream_fed_segment_by_segment_reads_and_times_what_the_finished_input_gives(archive, tmp_path):
    """
    `orcahello live`'s way (one `HLSStream` fed a segment at a time, each window read as soon as its audio is decoded,
    what is scored let go of) against detect's (the finished playlist opened at once): the same samples, UTC times
    and gaps, through a dropped entry, a discontinuity and an #EXT-X-GAP segment.
    """
    _, minute, _ = archive
    playlist, _ = edited_playlist(minute, tmp_path)
    finished = hls_orcahello.open_hls(str(playlist))
    whole = finished.read(0, finished.num_samples)
    segments, _ = hls_playlist_orcahello.parse_playlist(playlist.read_text(), str(playlist), "edited")
    stream = HLSStream("edited", listed_segment_seconds(segments), folder_epoch=None, rewindable=False)
    window, hop, next_window, gaps = 2 * SAMPLE_RATE, SAMPLE_RATE, 0, {}
    for segment in segments:
        if segment.marked_gap:
            stream.add_marked_gap(segment)
        else:
            stream.add_segment(segment, (playlist.parent / segment.name).read_bytes())
        if segment is segments[-1]:
            stream.finish()
        gaps.update({gap.start_s: gap for gap in stream.gaps})
        while next_window * hop + window <= stream.num_samples:
            start = next_window * hop
            np.testing.assert_array_equal(stream.read(start, start + window), whole[:, start : start + window])
            start_s, end_s = start / SAMPLE_RATE, (start + window) / SAMPLE_RATE
            assert utc_at(stream.anchors, start_s) == utc_at(finished.anchors, start_s)
            assert utc_at(stream.anchors, end_s, before=True) == utc_at(finished.anchors, end_s, before=True)
            next_window += 1
            stream.forget_before(next_window * hop)
            assert stream.held_samples() <= window + 2048  # what is scored is let go of
    assert stream.num_samples == finished.num_samples
    assert next_window == (finished.num_samples - window) // hop + 1
    assert list(gaps.values()) == finished.gaps and len(finished.gaps) == 3
    with pytest.raises(hls_playlist_orcahello.HLSInputError, match=r"samples \[0, 10\) asked for"):
        stream.read(0, 10)  # let go of for good


@pytest.mark.needs_test_data
def test_damaged_segment_is_skipped_where_it_does_not_decode_and_reported(archive, tmp_path):
    _, minute, _ = archive
    folder = copy_segments(minute, tmp_path / "damaged")
    (folder / "live001.ts").write_bytes((minute / "live001.ts").read_bytes()[:50000])  # cut short mid-frame
    samples, audio = decode(folder)
    assert any("live001.ts do not decode" in warning for warning in audio.warnings)
    [gap] = audio.gaps  # what the cut removed shows as a timestamp jump before live002.ts
    assert (gap.after_segment, gap.next_segment) == ("live001.ts", "live002.ts")
    assert "timestamps jump ahead" in gap.reason and gap.missing_s > 1.0
    assert samples.shape[1] == audio.num_samples


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one line, never a crash inside a library
# ---------------------------------------------------------------------------------------------------------------


def write_playlist(folder, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "live.m3u8").write_text(text)
    return folder / "live.m3u8"


def broken_segment(folder, minute, content):
    copy_segments(minute, folder)
    (folder / "live001.ts").write_bytes(content)
    return folder


BAD_INPUTS = {
    "empty playlist": (
        lambda folder, minute: write_playlist(folder, "#EXTM3U\n#EXT-X-ENDLIST\n"),
        "the playlist lists no segments",
    ),
    "not a playlist": (lambda folder, minute: write_playlist(folder, "live000.ts\n"), "not an HLS playlist"),
    "master playlist": (
        lambda folder, minute: write_playlist(folder, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=64000\naudio/live.m3u8\n"),
        "a master playlist .* pass one of audio/live.m3u8",
    ),
    "encrypted": (
        lambda folder, minute: write_playlist(
            folder, '#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="key"\n#EXTINF:10,\nlive000.ts\n'
        ),
        "encrypted segments",
    ),
    "missing segment file": (
        lambda folder, minute: write_playlist(folder, "#EXTM3U\n#EXTINF:10,\nlive000.ts\n"),
        "segment live000.ts does not exist",
    ),
    "segment of random bytes": (
        lambda folder, minute: broken_segment(folder, minute, np.random.default_rng(0).bytes(50000)),
        "segment live001.ts is not readable media",
    ),
    "empty segment": (
        lambda folder, minute: broken_segment(folder, minute, b""),
        "segment live001.ts is not readable media",
    ),
    "no such playlist": (lambda folder, minute: folder / "absent.m3u8", "no such playlist"),
}


@pytest.mark.needs_test_data
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_hls_input_gets_a_one_line_error(archive, tiny_pipeline, tmp_path, case):
    _, minute, _ = archive
    build, message = BAD_INPUTS[case]
    source = str(build(tmp_path / "input", minute))
    with pytest.raises(audio_input_error(tiny_pipeline), match=message) as raised:
        tiny_pipeline(source)
    assert str(raised.value).startswith(f"{source}: ") and "\n" not in str(raised.value)


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.needs_test_data
def test_http_failures_get_a_one_line_error(archive, tiny_pipeline, tmp_path):
    root, minute, _ = archive
    with LocalHTTPServer(root) as server:
        missing = server.url("rpi_orcasound_lab/hls/absent/live.m3u8")
        with pytest.raises(audio_input_error(tiny_pipeline), match="HTTP error 404"):
            tiny_pipeline(missing)
        # A playlist whose segment is not on the server.
        served = tmp_path / "served"
        write_playlist(served, "#EXTM3U\n#EXTINF:10,\nlive000.ts\n")
        with LocalHTTPServer(served) as other:
            with pytest.raises(hls_playlist_orcahello.HLSInputError, match=r"live000\.ts: HTTP error 404"):
                hls_orcahello.open_hls(other.url("live.m3u8"))
    with pytest.raises(hls_playlist_orcahello.HLSInputError, match="cannot reach it"):
        hls_orcahello.open_hls(f"http://127.0.0.1:{closed_port()}/live.m3u8")
    # A server that accepts the connection and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/live.m3u8"
        with pytest.raises(hls_playlist_orcahello.HLSInputError, match=r"no answer within 0\.5 s"):
            hls_orcahello.open_hls(url, timeout=0.5)
    # Other URLs are still not fetched.
    with pytest.raises(audio_input_error(tiny_pipeline), match="URLs are not fetched except HLS playlists"):
        tiny_pipeline("https://example.org/minute.wav")


@pytest.mark.needs_test_data
def test_missing_pyav_is_a_clear_error(archive, monkeypatch):
    _, minute, _ = archive
    monkeypatch.setitem(sys.modules, "av", None)  # what `import av` meets when PyAV is not installed
    with pytest.raises(hls_playlist_orcahello.HLSInputError, match="HLS input needs PyAV.*pip install av"):
        hls_orcahello.open_hls(str(minute / "live.m3u8"))


# ---------------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------------


def test_finding_recordings_takes_playlists_and_segment_folders_whole(tmp_path):

    for relative in (
        "node/hls/1600000000/live.m3u8", "node/hls/1600000000/live000.ts", "node/hls/1600000000/live001.ts",
        "node/hls/1600000600/live000.ts", "node/hls/1600000600/live001.ts", "node/clip.wav", "node/notes.txt",
    ):  # fmt: skip
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    files, problems = inputs.find_audio_files([str(tmp_path / "node")], recursive=True)
    assert problems == []
    assert [os.path.relpath(path, tmp_path) for path in files] == [
        "node/clip.wav",
        "node/hls/1600000000/live.m3u8",  # the playlist is the recording; its segments are not scored alone
        "node/hls/1600000600",  # a folder of segments without a playlist is one recording
    ]
    files, _ = inputs.find_audio_files([str(tmp_path / "node" / "hls" / "1600000600")])
    assert files == [str(tmp_path / "node" / "hls" / "1600000600")]
    files, _ = inputs.find_audio_files([str(tmp_path / "node" / "hls" / "*" / "live000.ts")])
    assert files == [str(tmp_path / "node" / "hls" / "1600000000"), str(tmp_path / "node" / "hls" / "1600000600")]

    url = "http://127.0.0.1:8000/bucket/node/hls/1600000000/live.m3u8"
    files, _ = inputs.find_audio_files([url, str(tmp_path / "node" / "clip.wav")])
    assert files == [url, str(tmp_path / "node" / "clip.wav")]
    jobs = inputs.plan_jobs(
        [url, str(tmp_path / "node" / "hls" / "1600000600"), str(tmp_path / "node" / "clip.wav")], "out"
    )
    assert [job.output_stem for job in jobs] == [
        os.path.join("out", "127.0.0.1_8000", "bucket", "node", "hls", "1600000000", "live"),
        os.path.join("out", "hls", "1600000600"),
        os.path.join("out", "clip"),
    ]


@pytest.mark.needs_test_data
def test_cli_scores_playlists_segment_folders_and_urls_as_recordings(archive, tiny_model_folder, tmp_path):
    _, _, stereo = archive  # 6 s in 2-s segments: short streams keep the command's run short
    recordings = tmp_path / "recordings"
    playlist_folder = recordings / "rpi_orcasound_lab" / "hls" / str(EPOCH)
    shutil.copytree(stereo, playlist_folder)  # live.m3u8 and its segments: one recording, the playlist
    segment_folder = copy_segments(stereo, recordings / "segments_only" / str(EPOCH + 600))  # no playlist
    shutil.copyfile(LEGACY / "audio" / "edge_10s_48k.wav", recordings / "clip.wav")
    output_dir = tmp_path / "results"
    with LocalHTTPServer(recordings) as server:
        url = server.url(playlist_folder.relative_to(recordings) / "live.m3u8")
        completed = run_orcahello_cli(
            recordings, url, "--recursive", "--output-dir", output_dir, "--model", tiny_model_folder,
            "--threshold", 0.0, "--plot",
        )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "4 file(s): 4 scored" in completed.stdout

    with open(output_dir / "summary.csv", newline="") as handle:
        summary = {row["file"]: row for row in csv.DictReader(handle)}
    playlist = str(playlist_folder / "live.m3u8")
    assert set(summary) == {playlist, str(segment_folder), str(recordings / "clip.wav"), url}
    assert summary[playlist]["start_time_utc"] == expected_iso(EPOCH) and summary[playlist]["gaps"] == "0"
    assert summary[str(segment_folder)]["start_time_utc"] == expected_iso(EPOCH + 600)
    assert summary[str(recordings / "clip.wav")]["start_time_utc"] == ""
    assert not list(output_dir.rglob("live0*"))  # no segment was scored on its own

    stems = {
        playlist: output_dir / "rpi_orcasound_lab" / "hls" / str(EPOCH) / "live",
        str(segment_folder): output_dir / "segments_only" / str(EPOCH + 600),
        url: output_dir / f"127.0.0.1_{server.port}" / "rpi_orcasound_lab" / "hls" / str(EPOCH) / "live",
    }
    documents = {}
    for path, stem in stems.items():
        documents[path] = json.loads(Path(writers.output_path(stem, "json")).read_text())
        assert Path(writers.output_path(stem, "png")).is_file()
        assert documents[path]["source"]["type"].startswith("hls-") and documents[path]["gaps"] == []
    assert documents[url]["local_confidences"] == pytest.approx(documents[playlist]["local_confidences"], abs=1e-6)

    with open(writers.output_path(stems[playlist], "csv"), newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["wav_filename", "start_time_s", "duration_s", "confidence", "start_time_utc"]
    assert [row[4] for row in rows[1:]] == [expected_iso(EPOCH + int(row[1])) for row in rows[1:]]
    with open(writers.output_path(stems[playlist], "raven"), newline="") as handle:
        table = list(csv.reader(handle, delimiter="\t"))
    assert table[0][-3:] == ["Begin UTC", "End UTC", "Begin Path"]
    detections = documents[playlist]["detections"]
    assert [row[-3:-1] for row in table[1:]] == [[d["start_utc"], d["end_utc"]] for d in detections] and detections
