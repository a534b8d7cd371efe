"""
The container's start script (scripts/container_start.sh, the image's CMD) run outside a container: the nodes and
options it reads from the environment, end to end against a local node served by its own HTTP server process, and
SIGTERM reaching the detector through its `exec`.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import REAL_AUDIO, REPO_ROOT, make_orcanode_hls
from live_helpers import GrowingNode, file_server, free_port, read_jsonl, wait_until

START_SCRIPT = REPO_ROOT / "scripts" / "container_start.sh"
EPOCH = 1600000000


def container_environment(**variables):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ORCAHELLO_")}
    environment.update({key: str(value) for key, value in variables.items()})
    environment["ORCAHELLO_PYTHON"] = sys.executable
    return environment


@pytest.mark.needs_test_data
def test_start_script_follows_the_nodes_named_in_its_environment(tmp_path, tiny_model_folder):
    encoded = make_orcanode_hls(REAL_AUDIO / "pos_kw_onc_folger_NRKW_Gclan_20120206T084546Z.wav", tmp_path / "enc")
    root = tmp_path / "bucket"
    nodes = [GrowingNode(root, name, {EPOCH: encoded}) for name in ("rpi_node_a", "rpi_node_b")]
    for node in nodes:
        for number in range(node.segment_count(EPOCH)):
            node.publish(EPOCH, number)
        node.end(EPOCH)
    port = free_port()
    server = file_server(root, port).start()
    output_dir = tmp_path / "data"
    try:
        process = subprocess.Popen(
            [str(START_SCRIPT)],
            env=container_environment(
                ORCAHELLO_NODES=f"http://127.0.0.1:{port}/rpi_node_a, http://127.0.0.1:{port}/rpi_node_b",
                ORCAHELLO_MODEL=tiny_model_folder,
                ORCAHELLO_OUTPUT_DIR=output_dir,
                ORCAHELLO_POLL_SECONDS=0.3,
                ORCAHELLO_BACKLOG_SECONDS=3600,
            ),
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "log.txt", "w"),
        )

        def both_finished():
            states = [output_dir / name / "state.json" for name in ("rpi_node_a", "rpi_node_b")]
            return all(path.exists() and json.loads(path.read_text())["finished"] for path in states)

        try:
            wait_until(both_finished, 240, what="both nodes' recordings scored")
        finally:
            process.send_signal(signal.SIGTERM)  # the script exec'd the detector: it gets the signal itself
            returncode = process.wait(timeout=120)
    finally:
        server.stop()
    log = (tmp_path / "log.txt").read_text()
    assert returncode == 0, log[-3000:]
    assert "stopped: rpi_node_a" in log
    for name in ("rpi_node_a", "rpi_node_b"):
        windows = read_jsonl(output_dir / name / "windows.jsonl")
        # 30 s of audio in 10.005-s segments (30.02 s decoded): windows 0..28.
        assert [entry["index"] for entry in windows] == list(range(29)), name
        assert windows[0]["start_utc"] == "2020-09-13T12:26:40.000Z"


def test_start_script_without_nodes_says_what_is_missing(tmp_path):
    completed = subprocess.run(
        [str(START_SCRIPT)],
        env=container_environment(ORCAHELLO_NODES=" , "),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith("ERROR: ORCAHELLO_NODES is empty")


def test_start_script_never_expands_a_node_as_a_glob_pattern(tmp_path):
    # N14: `$NODES` was expanded unquoted, so a node `*` became every file of the checkout.
    printer = tmp_path / "print_arguments"
    printer.write_text('#!/bin/sh\nfor argument in "$@"; do echo "$argument"; done\n')
    printer.chmod(0o755)
    environment = container_environment(ORCAHELLO_NODES="* http://127.0.0.1:9/rpi_x,pyproject.tom?")
    environment["ORCAHELLO_PYTHON"] = str(printer)
    completed = subprocess.run([str(START_SCRIPT)], env=environment, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    arguments = completed.stdout.splitlines()
    assert arguments[:6] == ["-m", "orcahello.cli", "live", "*", "http://127.0.0.1:9/rpi_x", "pyproject.tom?"]


def test_start_script_passes_its_options_on(tmp_path, tiny_model_folder):
    """A bad option value from the environment reaches `orcahello live`, which refuses it by name."""
    completed = subprocess.run(
        [str(START_SCRIPT)],
        env=container_environment(ORCAHELLO_NODES="http://127.0.0.1:9/rpi_x", ORCAHELLO_STOP_AFTER="-5"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert "--stop-after: must be more than 0, got -5" in completed.stderr


def test_start_script_passes_the_hydrophone_config_and_the_metrics_server_on(tmp_path):
    """
    With a hydrophone config, no node list is needed (the config's hls_hydrophone_id names the node); a metrics port
    comes with the address a pod's probes and Prometheus reach (0.0.0.0). A bad port reaches `orcahello live`, which
    refuses it by name.
    """
    completed = subprocess.run(
        [str(START_SCRIPT)],
        env=container_environment(ORCAHELLO_HYDROPHONE_CONFIG="/config/config.yml", ORCAHELLO_METRICS_PORT="x"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    announced = completed.stderr.splitlines()[0]
    assert "--hydrophone-config /config/config.yml" in announced
    assert "--metrics-port x --metrics-host 0.0.0.0" in announced
    assert "--metrics-port: invalid int value: 'x'" in completed.stderr


def test_install_script_installs_the_pinned_cpu_torch_pair_and_this_checkout():
    """The install step's plan (what the image's build runs): the torch pair of uv.lock."""
    import tomllib

    completed = subprocess.run(
        [str(REPO_ROOT / "scripts" / "container_install.sh"), "--print-plan", "/opt/venv"],
        env={key: value for key, value in os.environ.items() if key != "TORCH_INDEX_URL"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    pins = sorted(
        f"{package['name']}=={package['version']}"
        for package in tomllib.loads((REPO_ROOT / "uv.lock").read_text())["package"]
        if package["name"] in ("torch", "torchaudio")
    )
    assert completed.stdout.splitlines() == [
        "venv: /opt/venv",
        f"torch: {' '.join(pins)}",
        "torch index: https://download.pytorch.org/whl/cpu",
        f"package: {REPO_ROOT}[plot]",
    ]
