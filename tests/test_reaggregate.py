"""
`orcahello reaggregate`: saved results decided again without the model give exactly what a fresh `orcahello detect`
with the same options writes (every output, byte for byte but for the wall-clock `created_at`); options that change
the windows are refused with one line. (That it never imports torch: tests/test_architecture.py.)
"""

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, legacy_wavs
from test_upstream_config import CONFIGS

from orcahello import writers

RUN_FILE = writers.RUN_PARAMETERS_JSON


def without_wall_clock(path):
    """The file's bytes, less the JSON's `created_at` line (when it was written)."""
    lines = path.read_bytes().splitlines(keepends=True)
    return b"".join(line for line in lines if not line.lstrip().startswith(b'"created_at"'))


def assert_same_outputs(redecided, fresh):
    names = sorted(path.relative_to(fresh) for path in fresh.rglob("*") if path.is_file() and path.name != RUN_FILE)
    assert names == sorted(
        path.relative_to(redecided) for path in redecided.rglob("*") if path.is_file() and path.name != RUN_FILE
    )
    assert len(names) > 4
    for name in names:
        assert without_wall_clock(redecided / name) == without_wall_clock(fresh / name), name
    runs = [json.loads((folder / RUN_FILE).read_text()) for folder in (redecided, fresh)]
    for key in ("parameters", "inference", "run_hash", "site_thresholds", "hydrophone_config", "model"):
        assert runs[0][key] == runs[1][key], key


def orcahello(*arguments):
    """`orcahello ARGUMENTS` in a subprocess, as a user runs it (eleven recordings take minutes on a loaded machine)."""
    return subprocess.run([sys.executable, "-m", "orcahello.cli", *map(str, arguments)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=1200)  # fmt: skip


def detect(wavs, model, output_dir, *options):
    completed = orcahello("detect", *wavs, "--model", model, "--output-dir", output_dir, *options)
    assert completed.returncode == 0, completed.stderr
    return output_dir


def reaggregate(saved, output_dir, *options):
    """`orcahello reaggregate SAVED --output-dir OUTPUT_DIR OPTIONS`."""
    return orcahello("reaggregate", saved, "--output-dir", output_dir, *options)


@pytest.mark.needs_test_data
@pytest.mark.timeout(2400)  # several model runs on a shared 2-core machine
def test_reaggregate_equals_a_fresh_detect_on_every_fixture(resnet50_folder, tmp_path):
    wavs = legacy_wavs()
    saved = detect(wavs, resnet50_folder, tmp_path / "saved")
    options = ("--threshold", "0.9", "--min-positive-seconds", "5", "--min-global-confidence", "0.95")
    completed = reaggregate(saved, tmp_path / "redecided", *options)
    assert completed.returncode == 0, completed.stderr
    assert_same_outputs(tmp_path / "redecided", detect(wavs, resnet50_folder, tmp_path / "fresh", *options))
    saved_summary = (saved / writers.SUMMARY_CSV).read_text()
    assert saved_summary != (tmp_path / "redecided" / writers.SUMMARY_CSV).read_text()  # the options changed things

    # Windows cut otherwise need the recordings: refused in one line, nothing written.
    refused = reaggregate(saved, tmp_path / "refused", "--preset", "v1")
    assert refused.returncode == 2
    assert "window_seconds 2.0 -> 3.0 changes the windows or rows: score the recordings again" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "refused" / RUN_FILE).exists()


@pytest.mark.needs_test_data
@pytest.mark.timeout(2400)  # several model runs on a shared 2-core machine
def test_reaggregate_with_a_hydrophone_config_equals_a_fresh_detect_with_it(resnet50_folder, tmp_path):
    wavs = [wav for wav in legacy_wavs() if wav.name != "edge_2p5s_48k.wav"]  # shorter than a v1 window
    saved = detect(wavs, resnet50_folder, tmp_path / "saved", "--preset", "v1", "--aggregation", "orcahello")
    config = ("--hydrophone-config", CONFIGS / "squeaky_site_configmap.yaml")
    completed = reaggregate(saved, tmp_path / "redecided", *config)
    assert completed.returncode == 0, completed.stderr
    assert_same_outputs(tmp_path / "redecided", detect(wavs, resnet50_folder, tmp_path / "fresh", *config))
    document = json.loads(next((tmp_path / "redecided").glob("*.orcahello.json")).read_text())
    assert document["parameters"]["aggregation"] == "mean_top_k" and document["parameters"]["global_threshold"] == 0.9
