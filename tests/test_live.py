"""
`orcahello live` against a real local hydrophone: a node served by its own HTTP server process, its stream grown
segment by segment (faster than real time) from the real recordings of the test data (audio/real), encoded as an
Orcasound node encodes them; with a SIGTERM and a restart, a server outage, a node restart (new epoch in
latest.txt) and a lost segment. What live wrote must be, window for window, what `orcahello detect` gives for the
finished playlists.
"""

import json
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from conftest import REPO_ROOT, run_orcahello_cli
from live_helpers import (
    FIRST_EPOCH,
    NODE,
    SECOND_EPOCH,
    GrowingNode,
    encode_test_streams,
    file_server,
    free_port,
    read_jsonl,
    start_live,
    stop_live,
    wait_until,
    webhook_receiver,
)


@pytest.fixture(scope="module")
def encoded_streams(tmp_path_factory):
    """Two recordings of one node, encoded once: 63.6 s (7 segments) and 43.8 s (5 segments)."""
    return encode_test_streams(tmp_path_factory.mktemp("encoded"))


@pytest.mark.needs_test_data
def test_live_over_a_growing_stream_writes_every_window_once_as_detect_scores_the_finished_playlist(
    tmp_path, tiny_model_folder, encoded_streams
):
    root, output_dir, received = tmp_path / "bucket", tmp_path / "live", tmp_path / "received"
    node = GrowingNode(root, NODE, encoded_streams)
    port, receiver_port = free_port(), free_port()
    server = file_server(root, port)
    receiver = webhook_receiver(receiver_port, received).start()
    node_url = f"http://127.0.0.1:{port}/{NODE}"
    # Every minute positive (threshold 0): each gets its clip, picture, detection line and POST.
    live_arguments = [
        node_url,
        "--model",
        tiny_model_folder,
        "--output-dir",
        output_dir,
        "--poll-seconds",
        0.3,
        "--backlog-seconds",
        3600,
        "--threshold",
        0.0,
        "--min-positive-seconds",
        1,
        "--post",
        f"http://127.0.0.1:{receiver_port}/detections",
    ]
    windows_path = output_dir / NODE / "windows.jsonl"
    live = None
    try:
        for number in range(3):
            node.publish(FIRST_EPOCH, number)
        server.start()
        live = start_live(tmp_path / "first.log", *live_arguments)
        for number in (3, 4):
            time.sleep(0.5)
            node.publish(FIRST_EPOCH, number)
        # Stopped mid-recording, once some windows are written.
        wait_until(lambda: windows_path.exists() and len(read_jsonl(windows_path)) >= 25, 180, what="25 windows")
        returncode, first_log = stop_live(live, tmp_path / "first.log")
        assert returncode == 0, first_log
        written_before_restart = len(read_jsonl(windows_path))

        # The server goes away; meanwhile the node streams on, restarts (a new epoch), and one segment is lost.
        server.stop()
        for number in (5, 6):
            node.publish(FIRST_EPOCH, number)
        node.publish(SECOND_EPOCH, 0)
        node.publish(SECOND_EPOCH, 1)
        node.lose(SECOND_EPOCH, 2)
        live = start_live(tmp_path / "second.log", *live_arguments)

        def failing():
            status = json.loads((output_dir / NODE / "status.json").read_text())
            return status["failures_in_a_row"] >= 2

        wait_until(failing, 180, what="two failed polls during the outage")
        server.start()
        for number in range(3, node.segment_count(SECOND_EPOCH)):
            time.sleep(0.5)
            node.publish(SECOND_EPOCH, number)
        node.end(SECOND_EPOCH)

        def second_recording_finished():
            state = json.loads((output_dir / NODE / "state.json").read_text())
            return state["recording"] == str(SECOND_EPOCH) and state["finished"]

        wait_until(second_recording_finished, 240, what="the second recording's end")
        returncode, second_log = stop_live(live, tmp_path / "second.log")
        live = None
        assert returncode == 0, second_log
    finally:
        if live is not None:
            live.kill()
            live.wait()
        server.stop()
        receiver.stop()

    # The outage was noticed, and survived.
    # (The failure's own words are hls_playlist_orcahello.fetch's; the warning around them is live's.)
    warnings = [line for line in second_log.splitlines() if "WARNING" in line and f"127.0.0.1:{port}" in line]
    assert any("(failure 2 in a row; next try in" in line for line in warnings), second_log[-3000:]
    assert "resuming recording 1600000000" in second_log

    # What detect gives for the finished playlists (the lost segment is not in the second).
    detect_dir = tmp_path / "detect"
    completed = run_orcahello_cli(
        node.playlist_path(FIRST_EPOCH),
        node.playlist_path(SECOND_EPOCH),
        "--model",
        tiny_model_folder,
        "--output-dir",
        detect_dir,
        "--format",
        "json",
    )
    assert completed.returncode == 0, completed.stderr
    windows = read_jsonl(windows_path)
    assert written_before_restart < len(windows)
    for epoch in (FIRST_EPOCH, SECOND_EPOCH):
        [json_path] = (detect_dir).rglob(f"{epoch}/live.orcahello.json")
        expected = json.loads(json_path.read_text())
        live_windows = [entry for entry in windows if entry["recording"] == str(epoch)]
        # Every window exactly once, in order, none missing.
        assert [entry["index"] for entry in live_windows] == list(range(len(expected["windows"]))), epoch
        for got, want in zip(live_windows, expected["windows"]):
            assert (got["start_utc"], got["end_utc"], got["spans_gap"]) == (
                want["start_utc"],
                want["end_utc"],
                want["spans_gap"],
            ), (epoch, got["index"])
        np.testing.assert_allclose(
            [entry["score"] for entry in live_windows],
            [entry["score"] for entry in expected["windows"]],
            rtol=0,
            atol=1e-4,
            err_msg=str(epoch),
        )
    # The lost segment is a gap, reported as detect reports it, and windows across it are flagged.
    second = json.loads(next(detect_dir.rglob(f"{SECOND_EPOCH}/live.orcahello.json")).read_text())
    assert len(second["gaps"]) == 1 and second["gaps"][0]["missing_s"] == pytest.approx(10.0, abs=0.1)
    # The gap falls at 20.011 s (after two 10.005-s segments): inside [19, 21) and [20, 22).
    assert [entry["index"] for entry in windows if entry["recording"] == str(SECOND_EPOCH) and entry["spans_gap"]] == [
        19,
        20,
    ]

    # Per-minute results: production's rows from the windows starting in the minute.
    source_folder = output_dir / NODE
    first_minute = json.loads(
        next((source_folder / "minutes" / str(FIRST_EPOCH)).glob("00000_*.orcahello.json")).read_text()
    )
    scores = np.array([entry["score"] for entry in windows if entry["recording"] == str(FIRST_EPOCH)][:60])
    rows = np.concatenate([[scores[0]], (scores[:-1] + scores[1:]) / 2, [scores[-1]]])
    np.testing.assert_allclose(first_minute["local_confidences"], rows, rtol=0, atol=1e-9)
    assert first_minute["start_time_utc"] == "2020-09-13T12:26:40.000Z"
    assert first_minute["submission"][5]["start_time_utc"] == "2020-09-13T12:26:45.000Z"

    # Each positive minute: clip, picture, one detection line, one POST.
    detections = read_jsonl(source_folder / "detections.jsonl")
    minutes = sorted((entry["recording"], entry["minute"]) for entry in detections)
    assert minutes == [(str(FIRST_EPOCH), 0), (str(FIRST_EPOCH), 1), (str(SECOND_EPOCH), 0)]
    for detection in detections:
        assert (source_folder / detection["clip"]).stat().st_size > 44
        assert (source_folder / detection["spectrogram"]).stat().st_size > 0
    posted = sorted(
        (document["recording"], document["minute"])
        for document in (json.loads(path.read_text()) for path in received.glob("*.json"))
    )
    assert posted == minutes
    status = json.loads((output_dir / "status.json").read_text())["sources"][0]
    assert status["lag_seconds"] is not None and status["lag_seconds"] >= 0
    assert status["failures_in_a_row"] == 0


def test_webhook_spools_while_the_endpoint_is_down_and_delivers_everything_in_order(tmp_path):
    from orcahello.live_webhook import WebhookSpool

    port = free_port()
    spool = WebhookSpool(f"http://127.0.0.1:{port}/hook", tmp_path / "spool").start()
    receiver = webhook_receiver(port, tmp_path / "received", fail_first=2)
    try:
        for minute in range(3):
            spool.enqueue({"minute": minute}, f"1600000000_node_{minute:05d}")
        time.sleep(1.5)  # nobody listens: each try fails, everything stays spooled
        assert len(spool.pending()) == 3 and spool.failures >= 1
        receiver.start()  # and it answers 503 twice before accepting
        wait_until(lambda: not spool.pending(), 60, what="an empty spool")
    finally:
        spool.stop(drain_seconds=0)
        receiver.stop()
    received = [json.loads(path.read_text()) for path in sorted((tmp_path / "received").glob("*.json"))]
    assert received == [{"minute": 0}, {"minute": 1}, {"minute": 2}]


def test_a_line_cut_short_by_a_crash_is_dropped_on_restart(tmp_path):
    from orcahello.live_outputs import SourceOutputs

    folder = tmp_path / "node"
    folder.mkdir()
    (folder / "windows.jsonl").write_text('{"recording": "1", "index": 0}\n{"recording": "1", "ind')
    outputs = SourceOutputs(str(folder))
    assert (folder / "windows.jsonl").read_text() == '{"recording": "1", "index": 0}\n'
    assert outputs.last_window() == {"recording": "1", "index": 0}


def test_a_positive_minutes_clip_is_written_whole_or_not_at_all(tmp_path):
    import soundfile

    from orcahello.live_outputs import write_wav

    audio = np.array([[0, 1000, -1000, 32767], [5, 6, 7, -32768]], dtype=np.int16)
    write_wav(str(tmp_path / "minute.wav"), audio, 16000)
    samples, rate = soundfile.read(tmp_path / "minute.wav", dtype="int16", always_2d=True)
    assert rate == 16000 and samples.T.tolist() == audio.tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["minute.wav"]  # no temporary file left beside it

    # Samples that cannot be made 16-bit PCM fail with the WAV open (closing it writes a header): nothing is left.
    with pytest.raises(TypeError):
        write_wav(str(tmp_path / "other.wav"), np.array([[None, None]], dtype=object), 16000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["minute.wav"]


@pytest.mark.parametrize(
    "source, name",
    [
        ("http://127.0.0.1:8000/rpi_orcasound_lab", "rpi_orcasound_lab"),
        ("http://127.0.0.1:8000/rpi_orcasound_lab/", "rpi_orcasound_lab"),
        ("http://127.0.0.1:8000/rpi_bush_point/hls/1600000000/live.m3u8", "rpi_bush_point"),
        ("http://127.0.0.1:8000/streams/today/live.m3u8", "streams_today"),
    ],
)
def test_source_names(source, name):
    from orcahello.live_stream import LiveSource

    assert LiveSource(source).name == name


def test_bad_sources_are_refused_with_one_line(tmp_path, tiny_model_folder):
    empty = tmp_path / "not_a_node"
    empty.mkdir()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "orcahello.cli",
            "live",
            str(empty),
            "--model",
            str(tiny_model_folder),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1] == (
        f"ERROR: {empty}: a local node folder needs a latest.txt naming its stream folder"
    )


@pytest.mark.needs_test_data
def test_a_listed_segment_that_never_downloads_is_declared_lost_and_the_rest_matches_detect(
    tmp_path, tiny_model_folder, encoded_streams
):
    root, output_dir = tmp_path / "bucket", tmp_path / "live"
    node = GrowingNode(root, NODE, encoded_streams)
    node.publish(FIRST_EPOCH, 0)
    node.list_without_uploading(FIRST_EPOCH, 1)  # 404, on every try
    for number in range(2, node.segment_count(FIRST_EPOCH)):
        node.publish(FIRST_EPOCH, number)
    node.end(FIRST_EPOCH)
    port, metrics_port = free_port(), free_port()
    server = file_server(root, port).start()
    try:
        live = start_live(
            tmp_path / "live.log",
            f"http://127.0.0.1:{port}/{NODE}",
            "--model",
            tiny_model_folder,
            "--output-dir",
            output_dir,
            "--poll-seconds",
            0.2,
            "--backlog-seconds",
            3600,
            "--no-plot",
            "--metrics-port",
            metrics_port,
        )

        def finished():
            state_path = output_dir / NODE / "state.json"
            return state_path.exists() and json.loads(state_path.read_text())["finished"]

        try:
            wait_until(finished, 240, what="the recording's end")
            # The gap is counted once, also after the minute holding it was written and let go of.
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
                page = response.read().decode()
        finally:
            returncode, log = stop_live(live, tmp_path / "live.log")
    finally:
        server.stop()
    assert returncode == 0, log[-3000:]
    assert "live001.ts failed 3 times and the stream went on without it: lost" in log
    assert any("live001.ts" in line and "404" in line for line in log.splitlines() if "WARNING" in line)
    assert json.loads((output_dir / NODE / "state.json").read_text())["lost_segments"] == [1]
    assert "unexpected error" not in log
    assert f'orcahello_live_gaps_total{{source="{NODE}"}} 1.0' in page
    assert f'orcahello_live_failures_total{{kind="segment_lost",source="{NODE}"}} 1.0' in page

    # detect on the same stream with the lost segment left out of the playlist
    playlist = node.playlist_path(FIRST_EPOCH)
    lines = playlist.read_text().splitlines()
    missing = lines.index("live001.ts")
    playlist.write_text("\n".join(lines[: missing - 1] + lines[missing + 1 :]) + "\n")
    completed = run_orcahello_cli(
        playlist, "--model", tiny_model_folder, "--output-dir", tmp_path / "detect", "--format", "json"
    )
    assert completed.returncode == 0, completed.stderr
    expected = json.loads(next((tmp_path / "detect").rglob("live.orcahello.json")).read_text())
    windows = read_jsonl(output_dir / NODE / "windows.jsonl")
    assert [entry["index"] for entry in windows] == list(range(len(expected["windows"])))
    assert [(entry["start_utc"], entry["end_utc"], entry["spans_gap"]) for entry in windows] == [
        (entry["start_utc"], entry["end_utc"], entry["spans_gap"]) for entry in expected["windows"]
    ]
    np.testing.assert_allclose(
        [entry["score"] for entry in windows], [entry["score"] for entry in expected["windows"]], rtol=0, atol=1e-4
    )
    assert any(entry["spans_gap"] for entry in windows)


@pytest.mark.needs_test_data
def test_memory_held_by_a_recording_stays_bounded(encoded_streams):
    """Decoding a long recording while letting go of what is scored holds about one segment, not the stream."""
    from hls_playlist_orcahello import parse_playlist
    from orcahello.live_stream import LiveSource

    folder = encoded_streams[FIRST_EPOCH]
    segments, info = parse_playlist((folder / "live.m3u8").read_text(), str(folder / "live.m3u8"), "test")
    recording = LiveSource(str(folder / "live.m3u8")).new_recording(str(FIRST_EPOCH), str(folder), segments, info)
    held = []
    for _repeat in range(4):  # the same segments again and again: a 4-times longer stream
        for segment in segments[:-1]:
            recording.add_segment(segment, (folder / segment.name).read_bytes())
            recording.forget_before(recording.num_samples - 48000)
            held.append(recording.held_samples())
    assert recording.num_samples > 4 * 60 * 48000
    assert max(held) < 12 * 48000  # one 10-s segment and the second kept


@pytest.mark.needs_test_data
def test_time_line_and_gaps_follow_detects_rules_segment_by_segment(tmp_path, encoded_streams):
    """
    A playlist with every kind of time evidence (program date-times, a clock jump, a discontinuity, an #EXT-X-GAP
    segment, a segment left out), decoded segment by segment as live does, gives HLSAudio's samples, UTC anchors
    and gaps exactly.
    """
    from hls_orcahello import open_hls
    from hls_playlist_orcahello import parse_playlist
    from hls_timeline_orcahello import iso_utc
    from orcahello.live_stream import LiveSource

    folder = tmp_path / str(FIRST_EPOCH)
    folder.mkdir()
    source = encoded_streams[FIRST_EPOCH]
    entries = GrowingNode(tmp_path, "unused", encoded_streams).entries(FIRST_EPOCH)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-TARGETDURATION:11"]
    clock = 1700000000.25
    for number, (extinf, name) in enumerate(entries):
        (folder / name).write_bytes((source / name).read_bytes())
        if number == 2:
            continue  # left out: the timestamps jump
        if number == 3:
            clock += 5.0  # the clock jumps too
        if number == 4:
            lines += ["#EXTINF:10.0,", "missing_gap.ts"]
            lines.insert(-2, "#EXT-X-GAP")
        if number == 5:
            lines.append("#EXT-X-DISCONTINUITY")
        if number != 6:  # the last segment has no date-time of its own
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso_utc(clock)}")
        lines += [extinf, name]
        clock += float(extinf.split(":")[1].rstrip(","))
    lines.append("#EXT-X-ENDLIST")
    playlist = folder / "live.m3u8"
    playlist.write_text("\n".join(lines) + "\n")

    expected = open_hls(str(playlist))
    segments, info = parse_playlist(playlist.read_text(), str(playlist), str(playlist))
    recording = LiveSource(str(playlist)).new_recording(str(FIRST_EPOCH), str(playlist), segments, info)
    for segment in segments:
        if segment.marked_gap:
            recording.add_marked_gap(segment)
        else:
            recording.add_segment(segment, (folder / segment.name).read_bytes())
    recording.finish()

    assert recording.num_samples == expected.num_samples
    assert np.array_equal(recording.read(0, recording.num_samples), expected.read(0, expected.num_samples))
    assert recording.start_time_utc == expected.start_time_utc
    assert recording.anchors == expected.anchors
    assert recording.gaps == expected.gaps
    assert len(expected.gaps) == 3  # the left-out segment, the marked one, the discontinuity


@pytest.mark.needs_test_data
def test_killed_outright_and_started_again_every_window_is_written_once(tmp_path, tiny_model_folder, encoded_streams):
    """SIGKILL (no chance to flush anything): the next run still writes each window exactly once."""
    from hls_orcahello import open_hls

    root, output_dir = tmp_path / "bucket", tmp_path / "live"
    node = GrowingNode(root, NODE, encoded_streams)
    for number in range(node.segment_count(FIRST_EPOCH)):
        node.publish(FIRST_EPOCH, number)
    node.end(FIRST_EPOCH)
    port = free_port()
    server = file_server(root, port).start()
    windows_path = output_dir / NODE / "windows.jsonl"
    arguments = [
        f"http://127.0.0.1:{port}/{NODE}",
        "--model",
        tiny_model_folder,
        "--output-dir",
        output_dir,
        "--poll-seconds",
        0.2,
        "--backlog-seconds",
        3600,
        "--no-plot",
        "--batch-size",
        2,
    ]
    try:
        live = start_live(tmp_path / "first.log", *arguments)
        try:
            wait_until(
                lambda: windows_path.exists() and len(read_jsonl(windows_path)) >= 12, 180, 0.05, what="12 windows"
            )
        finally:
            live.kill()
            live.wait()
        written_at_kill = len(read_jsonl(windows_path))
        live = start_live(tmp_path / "second.log", *arguments)

        def finished():
            state = json.loads((output_dir / NODE / "state.json").read_text())
            return state["finished"]

        try:
            wait_until(finished, 240, what="the recording's end")
        finally:
            returncode, log = stop_live(live, tmp_path / "second.log")
    finally:
        server.stop()
    assert returncode == 0, log[-3000:]
    decoded = open_hls(str(node.playlist_path(FIRST_EPOCH)))
    expected_windows = (decoded.num_samples - 2 * 48000) // 48000 + 1
    assert written_at_kill < expected_windows and "resuming recording 1600000000" in log
    assert [entry["index"] for entry in read_jsonl(windows_path)] == list(range(expected_windows))
    minutes = sorted(path.name[:5] for path in (output_dir / NODE / "minutes").rglob("*.orcahello.json"))
    assert minutes == ["00000", "00001"]
