"""
`orcahello live` against a hostile or flapping node or webhook (issue 30): every server is a real process on
127.0.0.1 that the test starts and stops (`live_helpers`).
"""

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT
from live_helpers import (
    FIRST_EPOCH,
    NODE,
    SECOND_EPOCH,
    GrowingNode,
    encode_test_streams,
    free_port,
    hostile_server,
    logged_paths,
    read_jsonl,
    start_live,
    stop_live,
    wait_until,
    webhook_receiver,
)


@pytest.fixture(scope="module")
def encoded_streams(tmp_path_factory):
    return encode_test_streams(tmp_path_factory.mktemp("encoded"))


def received_documents(folder):
    return [json.loads(path.read_text()) for path in sorted(folder.glob("0*.json"))]


# -- the webhook ----------------------------------------------------------------------------------------------------


def test_a_redirecting_webhook_is_not_a_delivery_and_each_detection_arrives_once(tmp_path):
    from orcahello.live_webhook import WebhookSpool

    port = free_port()
    receiver = webhook_receiver(port, tmp_path / "received", fail_first=3, status=302).start()
    spool = WebhookSpool(f"http://127.0.0.1:{port}/hook", tmp_path / "spool").start()
    try:
        for minute in range(3):
            spool.enqueue({"minute": minute}, f"1600000000_node_{minute:05d}")
        wait_until(lambda: not spool.pending(), 60, what="an empty spool")
    finally:
        spool.stop(drain_seconds=0)
        receiver.stop()
    assert received_documents(tmp_path / "received") == [{"minute": 0}, {"minute": 1}, {"minute": 2}]
    assert spool.failures >= 3  # each 302 was a failure, tried again
    # Every request carries an idempotency key: the spool name, the same on each try of one detection.
    requests = read_jsonl(tmp_path / "received" / "requests.jsonl")
    keys = {request["idempotency_key"] for request in requests if json.loads(request["body"]) == {"minute": 0}}
    assert keys == {"1600000000_node_00000"}


def test_a_slow_webhook_gets_each_detection_once(tmp_path):
    from orcahello.live_webhook import WebhookSpool

    port = free_port()
    # An endpoint that stores the detection, then takes 12 s to answer.
    receiver = webhook_receiver(port, tmp_path / "received", delay=12.0).start()
    spool = WebhookSpool(f"http://127.0.0.1:{port}/hook", tmp_path / "spool").start()
    try:
        spool.enqueue({"minute": 0}, "1600000000_node_00000")
        wait_until(lambda: not spool.pending(), 60, what="an empty spool")
    finally:
        spool.stop(drain_seconds=0)
        receiver.stop()
    assert len(read_jsonl(tmp_path / "received" / "requests.jsonl")) == 1
    assert received_documents(tmp_path / "received") == [{"minute": 0}]


def test_a_stray_folder_in_the_spool_is_skipped_with_a_warning(tmp_path, caplog):
    from orcahello.live_webhook import WebhookSpool

    port = free_port()
    receiver = webhook_receiver(port, tmp_path / "received").start()
    (tmp_path / "spool" / "0_stray.json").mkdir(parents=True)
    spool = WebhookSpool(f"http://127.0.0.1:{port}/hook", tmp_path / "spool").start()
    try:
        spool.enqueue({"minute": 7}, "1600000000_node_00007")
        wait_until(lambda: received_documents(tmp_path / "received"), 30, what="a delivery")
    finally:
        spool.stop(drain_seconds=0)
        receiver.stop()
    assert received_documents(tmp_path / "received") == [{"minute": 7}]
    assert any("0_stray.json" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "127.0.0.1:8080/hook"])
def test_post_to_anything_but_http_is_refused_with_one_line(tmp_path, url):
    node = tmp_path / "node"
    node.mkdir()
    (node / "latest.txt").write_text("1600000000\n")
    completed = subprocess.run(
        [sys.executable, "-m", "orcahello.cli", "live", str(node), "--post", url, "--output-dir", str(tmp_path / "o")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1] == f"ERROR: --post {url}: not an http(s) URL"


# -- sources --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "http://127.0.0.1:8000/nodes/..",
        "http://127.0.0.1:8000/nodes/%2e%2e",
        "http://127.0.0.1:8000/webhook_spool",
        "http://127.0.0.1:8000/status.json",
        "http://127.0.0.1:8000/.orcahello.lock",
        "http://127.0.0.1:8000/.hidden",
    ],
)
def test_a_source_named_like_a_parent_or_an_internal_file_is_refused(source):
    from orcahello.live_stream import LiveSource, LiveSourceError

    with pytest.raises(LiveSourceError, match="cannot name its output folder"):
        LiveSource(source)


@pytest.mark.needs_test_data
def test_segments_and_redirects_to_another_host_are_never_fetched(tmp_path, tiny_model_folder, encoded_streams):
    # The node's playlist names a segment on another host, and its segments redirect to that host too.
    root, elsewhere = tmp_path / "bucket", tmp_path / "elsewhere"
    node = GrowingNode(root, NODE, encoded_streams)
    for number in range(3):
        node.publish(FIRST_EPOCH, number)
    port, other_port = free_port(), free_port()
    playlist = node.playlist_path(FIRST_EPOCH)
    text = playlist.read_text().replace("live002.ts", f"http://127.0.0.1:{other_port}/secret.ts")
    playlist.write_text(text)
    elsewhere.mkdir()
    server = hostile_server(
        port,
        root,
        tmp_path / "node.log",
        redirect=[(f"/{NODE}/hls/{FIRST_EPOCH}/live001.ts", f"http://127.0.0.1:{other_port}/moved")],
    ).start()
    other = hostile_server(other_port, elsewhere, tmp_path / "other.log").start()
    output_dir = tmp_path / "live"
    try:
        live = start_live(
            tmp_path / "live.log",
            f"http://127.0.0.1:{port}/{NODE}",
            "--model",
            tiny_model_folder,
            "--output-dir",
            output_dir,
            "--poll-seconds",
            0.3,
            "--backlog-seconds",
            3600,
        )
        wait_until(lambda: any(f"{other_port}" in line for line in _log(tmp_path)), 120, what="a refusal")
        returncode, log = stop_live(live, tmp_path / "live.log")
    finally:
        server.stop()
        other.stop()
    assert returncode == 0, log
    assert logged_paths(tmp_path / "other.log") == []
    assert "refused" in log


def _log(tmp_path):
    path = tmp_path / "live.log"
    return path.read_text().splitlines() if path.exists() else []


def test_a_second_live_run_into_the_same_folder_is_refused(tmp_path, tiny_model_folder):
    from orcahello.run_lock import OutputFolderLock

    node = tmp_path / "node"
    node.mkdir()
    (node / "latest.txt").write_text("1600000000\n")
    output_dir = tmp_path / "out"
    with OutputFolderLock(output_dir, "orcahello live"):
        completed = subprocess.run(
            [sys.executable, "-m", "orcahello.cli", "live", str(node), "--model", str(tiny_model_folder),
             "--output-dir", str(output_dir), "--stop-after", "5"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert completed.returncode == 2, completed.stderr
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("ERROR: ") and "orcahello live" in last and str(os.getpid()) in last


@pytest.mark.needs_test_data
def test_latest_flipping_back_to_a_finished_recording_never_scores_it_again(
    tmp_path, tiny_model_folder, encoded_streams
):
    root, output_dir = tmp_path / "bucket", tmp_path / "live"
    node = GrowingNode(root, NODE, encoded_streams)
    for number in range(node.segment_count(FIRST_EPOCH)):
        node.publish(FIRST_EPOCH, number)
    node.end(FIRST_EPOCH)
    for number in range(2):
        node.publish(SECOND_EPOCH, number)
    arguments = [node.node_folder, "--model", tiny_model_folder, "--output-dir", output_dir, "--poll-seconds", 0.3]
    # The first recording is scored from its start (a backlog of an hour), then the node moves on to the second.
    (node.node_folder / "latest.txt").write_text(f"{FIRST_EPOCH}\n")
    live = start_live(tmp_path / "live.log", *arguments, "--backlog-seconds", 3600)
    try:
        state_path = output_dir / NODE / "state.json"

        def on(recording, finished):
            state = json.loads(state_path.read_text()) if state_path.exists() else {}
            return state.get("recording") == str(recording) and state.get("finished") == finished

        wait_until(lambda: on(FIRST_EPOCH, True), 180, what="the first recording's end")
        (node.node_folder / "latest.txt").write_text(f"{SECOND_EPOCH}\n")
        wait_until(lambda: on(SECOND_EPOCH, False), 60, what="the second recording")
        (node.node_folder / "latest.txt").write_text(f"{FIRST_EPOCH}\n")  # back to the old folder
        time.sleep(3.0)
        node.publish(SECOND_EPOCH, 2)
        (node.node_folder / "latest.txt").write_text(f"{SECOND_EPOCH}\n")
        time.sleep(2.0)
    finally:
        returncode, log = stop_live(live, tmp_path / "live.log")
    assert returncode == 0, log
    windows = read_jsonl(output_dir / NODE / "windows.jsonl")
    keys = [(entry["recording"], entry["index"]) for entry in windows]
    assert len(keys) == len(set(keys)), "a window written twice"
    assert sum(1 for recording, _ in keys if recording == str(FIRST_EPOCH)) == 62  # 63.6 s: windows 0-61


@pytest.mark.needs_test_data
def test_a_media_sequence_jump_is_a_gap_not_an_allocation(tmp_path, tiny_model_folder, encoded_streams):
    root, output_dir = tmp_path / "bucket", tmp_path / "live"
    node = GrowingNode(root, NODE, encoded_streams)
    for number in range(3):
        node.publish(FIRST_EPOCH, number)
    live = start_live(
        tmp_path / "live.log",
        node.node_folder,
        "--model",
        tiny_model_folder,
        "--output-dir",
        output_dir,
        "--poll-seconds",
        0.3,
        "--backlog-seconds",
        3600,
    )
    try:
        windows_path = output_dir / NODE / "windows.jsonl"
        wait_until(lambda: windows_path.exists() and len(read_jsonl(windows_path)) >= 20, 120, what="20 windows")
        # The playlist now starts ten million segments later, listing the next segments.
        playlist = node.playlist_path(FIRST_EPOCH)
        entries = node.entries(FIRST_EPOCH)[3:6]
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-MEDIA-SEQUENCE:10000003", "#EXT-X-TARGETDURATION:11"]
        for extinf, name in entries:
            (playlist.parent / name).write_bytes((encoded_streams[FIRST_EPOCH] / name).read_bytes())
            lines += [extinf, name]
        playlist.write_text("\n".join(lines) + "\n")
        wait_until(lambda: len(read_jsonl(windows_path)) >= 40, 120, what="windows after the jump")
    finally:
        returncode, log = stop_live(live, tmp_path / "live.log")
    assert returncode == 0, log
    # What is remembered of the skipped numbers stays small, and the run said what happened.
    assert (output_dir / NODE / "state.json").stat().st_size < 10_000
    assert "left the playlist before they were fetched" in log


@pytest.mark.needs_test_data
def test_a_trickling_source_holds_up_only_itself_and_sigterm_stops_within_seconds(
    tmp_path, tiny_model_folder, encoded_streams
):
    # Two nodes: the first's server sends its segments one byte a second, the second's serves them.
    slow_root, good_root = tmp_path / "slow", tmp_path / "good"
    slow = GrowingNode(slow_root, "rpi_slow", encoded_streams)
    good = GrowingNode(good_root, NODE, encoded_streams)
    for number in range(3):
        slow.publish(FIRST_EPOCH, number)
        good.publish(SECOND_EPOCH, number)
    slow_port, good_port = free_port(), free_port()
    slow_server = hostile_server(
        slow_port, slow_root, tmp_path / "slow.log", trickle=[f"/rpi_slow/hls/{FIRST_EPOCH}/live0"]
    ).start()
    good_server = hostile_server(good_port, good_root, tmp_path / "good.log").start()
    output_dir = tmp_path / "live"
    live = start_live(
        tmp_path / "live.log",
        f"http://127.0.0.1:{slow_port}/rpi_slow",
        f"http://127.0.0.1:{good_port}/{NODE}",
        "--model",
        tiny_model_folder,
        "--output-dir",
        output_dir,
        "--poll-seconds",
        0.3,
        "--backlog-seconds",
        3600,
    )
    try:
        # The slow node's first segment is being trickled.
        wait_until(lambda: any("live000.ts" in path for path in logged_paths(tmp_path / "slow.log")), 120, what="a")
        good_windows = output_dir / NODE / "windows.jsonl"
        wait_until(lambda: good_windows.exists() and len(read_jsonl(good_windows)) == 29, 60, what="the good node")
        stopping = time.monotonic()
        returncode, log = stop_live(live, tmp_path / "live.log", timeout=60)
        stopped_in = time.monotonic() - stopping
    finally:
        if live.poll() is None:
            live.kill()
        slow_server.stop()
        good_server.stop()
    assert returncode == 0, log
    assert stopped_in < 20, log[-2000:]
    assert not (output_dir / "rpi_slow" / "windows.jsonl").exists()


@pytest.mark.needs_test_data
def test_a_local_playlist_source_writes_its_minutes_and_posts_its_detections(
    tmp_path, tiny_model_folder, encoded_streams
):
    node = GrowingNode(tmp_path / "bucket", NODE, encoded_streams)
    for number in range(node.segment_count(FIRST_EPOCH)):
        node.publish(FIRST_EPOCH, number)
    node.end(FIRST_EPOCH)
    port = free_port()
    receiver = webhook_receiver(port, tmp_path / "received").start()
    output_dir = tmp_path / "live"
    try:
        live = start_live(
            tmp_path / "live.log",
            node.playlist_path(FIRST_EPOCH).absolute(),  # an absolute path: it must not become a path of the outputs
            "--model",
            tiny_model_folder,
            "--output-dir",
            output_dir,
            "--backlog-seconds",
            3600,
            "--threshold",
            0.0,
            "--min-positive-seconds",
            1,
            "--no-plot",
            "--post",
            f"http://127.0.0.1:{port}/detections",
        )
        live.wait(timeout=240)  # the playlist has ended: the command stops by itself
    finally:
        if live.poll() is None:
            live.kill()
        receiver.stop()
    log = (tmp_path / "live.log").read_text()
    assert live.returncode == 0, log
    [folder] = [path for path in output_dir.iterdir() if path.is_dir() and path.name != "webhook_spool"]
    minutes = sorted(path.name for path in (folder / "minutes" / str(FIRST_EPOCH)).glob("*.orcahello.json"))
    assert len(minutes) == 2, log[-3000:]
    posted = sorted(document["minute"] for document in received_documents(tmp_path / "received"))
    assert posted == [0, 1]
