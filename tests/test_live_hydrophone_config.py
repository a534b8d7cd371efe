"""
`orcahello live --hydrophone-config` with upstream's multi-location form (tests/upstream_configs/two_sites.yml: one
site at 0.6, one raised to 0.95): one process follows every location's node
(found as `<--node-base-url>/<hls_hydrophone_id>`, Orcasound's bucket layout) on a real local HTTP server, each
source decided with its own location's overrides.
"""

import json

import pytest
from conftest import REAL_AUDIO, make_orcanode_hls
from live_helpers import GrowingNode, file_server, free_port, wait_until
from test_live import start_live, stop_live
from test_upstream_config import BETWEEN_THRESHOLDS, CONFIGS

EPOCH = 1600000000


def minute_documents(folder):
    return [json.loads(path.read_text()) for path in sorted((folder / "minutes").rglob("*.json"))]


@pytest.mark.needs_test_data
@pytest.mark.timeout(2400)  # several model runs on a shared 2-core machine
def test_one_live_process_follows_every_location_with_its_own_threshold(tmp_path, resnet50_folder):
    encoded = {EPOCH: make_orcanode_hls(REAL_AUDIO / BETWEEN_THRESHOLDS, tmp_path / "encoded")}
    root, output_dir = tmp_path / "bucket", tmp_path / "live"
    nodes = {name: GrowingNode(root, name, encoded) for name in ("rpi_quiet_site", "rpi_squeaky_site")}
    for node in nodes.values():
        for number in range(node.segment_count(EPOCH)):
            node.publish(EPOCH, number)
        node.end(EPOCH)  # the stream ends: its last, partial minute is decided
    port = free_port()
    server = file_server(root, port).start()
    try:
        live = start_live(
            tmp_path / "live.log", "--hydrophone-config", CONFIGS / "two_sites.yml", "--node-base-url",
            f"http://127.0.0.1:{port}/", "--model", resnet50_folder, "--output-dir", output_dir,
            "--backlog-seconds", 3600, "--no-plot",
        )  # fmt: skip
        # A node's stream may start again (a new epoch): live keeps following it until it is stopped.
        wait_until(
            lambda: all(minute_documents(output_dir / name) for name in nodes), 600, what="a minute of each node"
        )
        returncode, log = stop_live(live, tmp_path / "live.log")
    finally:
        server.stop()
    assert returncode == 0, log
    quiet, squeaky = (minute_documents(output_dir / name) for name in ("rpi_quiet_site", "rpi_squeaky_site"))
    assert len(quiet) == len(squeaky) == 1, log
    quiet, squeaky = quiet[0], squeaky[0]
    assert [w["score"] for w in quiet["windows"]] == [w["score"] for w in squeaky["windows"]]
    assert quiet["global_confidence"] == squeaky["global_confidence"]
    assert 0.6 <= quiet["global_confidence"] < 0.95, quiet["global_confidence"]  # the two sites' thresholds
    assert (quiet["global_prediction"], squeaky["global_prediction"]) == (1, 0)
    assert quiet["hydrophone_config"]["location"] == "rpi_quiet_site"
    assert squeaky["hydrophone_config"]["overrides"] == {"global_threshold": 0.95}
    assert quiet["parameters"]["aggregation"] == "mean_top_k"
