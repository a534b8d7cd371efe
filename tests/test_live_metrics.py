"""
`orcahello live --metrics-port`: `/metrics` read from a running `live` over a local stream agrees with its files
(`windows.jsonl`, `detections.jsonl`, `status.json`), and `/readyz` goes unready while the stream stalls and ready
again when it resumes. The stream is a real HTTP server process on 127.0.0.1 (`live_helpers`).
"""

import json
import urllib.error
import urllib.request

import pytest
from live_helpers import (
    FIRST_EPOCH,
    NODE,
    GrowingNode,
    encode_test_streams,
    file_server,
    free_port,
    read_jsonl,
    start_live,
    stop_live,
    wait_until,
)

prometheus_parser = pytest.importorskip("prometheus_client.parser")


def get(url):
    """`(status, body text)` of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None, ""


def samples(text):
    """`{(sample name, frozenset of labels): value}` of a /metrics page."""
    found = {}
    for family in prometheus_parser.text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


@pytest.mark.needs_test_data
def test_metrics_agree_with_the_files_and_readiness_follows_the_stream(tmp_path, tiny_model_folder):
    encoded = encode_test_streams(tmp_path / "encoded")
    root, output_dir = tmp_path / "bucket", tmp_path / "live"
    node = GrowingNode(root, NODE, encoded)
    port, metrics_port = free_port(), free_port()
    server = file_server(root, port)
    for number in range(3):
        node.publish(FIRST_EPOCH, number)
    server.start()
    base = f"http://127.0.0.1:{metrics_port}"
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
        "--threshold",
        0.0,
        "--min-positive-seconds",
        1,
        "--no-plot",
        "--metrics-port",
        metrics_port,
        "--ready-seconds",
        15,
    )
    windows_path = output_dir / NODE / "windows.jsonl"
    try:
        wait_until(lambda: get(f"{base}/healthz")[0] == 200, 120, what="/healthz")
        # Three segments (30 s): windows 0-28 once their audio is decoded.
        wait_until(lambda: windows_path.exists() and len(read_jsonl(windows_path)) == 29, 120, what="29 windows")
        status, body = get(f"{base}/readyz")
        assert status == 200, body
        # The stream stalls: nothing new for longer than --ready-seconds.
        wait_until(lambda: get(f"{base}/readyz")[0] == 503, 30, what="unready while the stream stalls")
        status, body = get(f"{base}/readyz")
        assert json.loads(body)["sources"][NODE].startswith("no window written for")
        assert get(f"{base}/healthz")[0] == 200  # the process itself is fine
        # At rest: the metrics and the files say the same.
        page = samples(get(f"{base}/metrics")[1])
        windows = read_jsonl(windows_path)
        status_json = json.loads((output_dir / "status.json").read_text())["sources"][0]
        source = frozenset({("source", NODE)})
        assert page[("orcahello_live_windows_scored_total", source)] == len(windows) == 29
        assert page[("orcahello_live_positive_windows_total", source)] == sum(w["score"] > 0.0 for w in windows)
        assert page[("orcahello_live_lag_seconds", source)] == pytest.approx(status_json["lag_seconds"], abs=1e-6)
        assert status_json["windows_written_this_run"] == 29
        assert page[("orcahello_live_failures_total", frozenset({("source", NODE), ("kind", "poll")}))] == 0
        assert page[("orcahello_live_gaps_total", source)] == 0
        assert page[("orcahello_live_decode_seconds_total", source)] > 0
        assert page[("orcahello_live_score_seconds_total", source)] > 0
        [info] = [labels for name, labels in page if name == "orcahello_live_model_info"]
        info = dict(info)
        assert info["run_hash"] == json.loads((output_dir / NODE / "state.json").read_text())["run_hash"]
        assert len(info["model_config_sha256"]) == 64 and len(info["parameters_sha256"]) == 64
        assert len(info["weights_sha256"]) == 64

        # The stream resumes (and ends): ready again, and the first minute written is counted as its files say.
        for number in range(3, node.segment_count(FIRST_EPOCH)):
            node.publish(FIRST_EPOCH, number)
        wait_until(lambda: get(f"{base}/readyz")[0] == 200, 60, what="ready once the stream resumes")
        node.end(FIRST_EPOCH)

        def finished():
            state = json.loads((output_dir / NODE / "state.json").read_text())
            return state["finished"]

        wait_until(finished, 120, what="the recording's end")
        page = samples(get(f"{base}/metrics")[1])
        windows = read_jsonl(windows_path)
        detections = read_jsonl(output_dir / NODE / "detections.jsonl")
        minutes = list((output_dir / NODE / "minutes" / str(FIRST_EPOCH)).glob("*.orcahello.json"))
        assert page[("orcahello_live_windows_scored_total", source)] == len(windows) == 62
        assert page[("orcahello_live_minutes_total", source)] == len(minutes) == 2
        assert page[("orcahello_live_positive_minutes_total", source)] == len(detections) == 2
        assert page[("orcahello_live_polls_total", source)] > 0
    finally:
        returncode, log = stop_live(live, tmp_path / "live.log")
        server.stop()
    assert returncode == 0, log
    assert get(f"{base}/healthz")[0] is None  # the server went with the process
