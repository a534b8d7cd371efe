"""
`min_global_confidence`, the floor on a recording's global confidence: the file-level rule with it (pipeline),
its validation and sources (call, config, site table, command line), and that 0 keeps production's decision.
"""

import json
import shutil

import pytest
from conftest import LEGACY, run_orcahello_cli

from configuration_orcahello import OrcaHelloConfig
from orcahello.site_thresholds import SiteThresholdsError, check_site_thresholds, parameters_for
from results_orcahello import DecisionParameters, build_file_result


def info(num_windows):
    return {
        "name": "clip.wav",
        "sampling_rate": 20000,
        "num_samples": 20000 * (num_windows + 1),
        "num_channels": 1,
        "num_windows": num_windows,
        "window_seconds": 2.0,
        "hop_seconds": 1.0,
        "timeline": None,
    }


def test_floor_on_production_rule_compares_the_0_to_1_global_confidence():
    windows = [0.8, 0.8, 0.8, 0.8]  # five rows of 0.8: flagged by production's rule, global confidence 0.8 (80 in
    # production's legacy 0-100 field)
    unchanged = build_file_result(info(4), windows)
    assert unchanged["global_prediction"] == 1 and unchanged["global_confidence"] == pytest.approx(0.8)
    assert unchanged["global_confidence_percent"] == pytest.approx(80.0)
    assert unchanged["parameters"]["min_global_confidence"] == 0.0
    # 0.8 reaches 0.8
    reached = build_file_result(info(4), windows, decision=DecisionParameters(min_global_confidence=0.8))
    assert reached["global_prediction"] == 1 and reached["label"] == "positive"
    above = build_file_result(info(4), windows, decision=DecisionParameters(min_global_confidence=0.81))
    assert above["global_prediction"] == 0 and above["label"] == "negative"
    assert above["parameters"]["min_global_confidence"] == 0.81
    # The floor only vetoes the file-level decision: the seconds, the confidence and the detections stay.
    assert above["local_predictions"] == unchanged["local_predictions"]
    assert above["global_confidence"] == unchanged["global_confidence"]
    assert above["detections"] == unchanged["detections"]


def test_floor_never_flags_what_the_rule_does_not():
    windows = [0.95, 0.1, 0.1, 0.1]  # rows 0.95, 0.525, 0.1...: two positive rows, fewer than 3
    result = build_file_result(info(4), windows, decision=DecisionParameters(min_global_confidence=0.0))
    assert result["global_prediction"] == 0 and result["global_confidence"] > 0.5


def test_floor_with_the_port_aggregation_uses_its_0_to_1_confidence():
    windows = [0.9, 0.7, 0.2]
    top_k = {"aggregation": "mean_top_k", "top_k_windows": 2, "global_threshold": 0.6}

    def decision(**floor):
        return DecisionParameters(**top_k, **floor)

    assert build_file_result(info(3), windows, decision=decision())["global_prediction"] == 1  # mean of top 2: 0.8
    assert build_file_result(info(3), windows, decision=decision(min_global_confidence=0.8))["global_prediction"] == 1
    assert build_file_result(info(3), windows, decision=decision(min_global_confidence=0.85))["global_prediction"] == 0


@pytest.mark.needs_test_data
def test_config_and_call_validate_the_floor(tiny_pipeline):
    assert OrcaHelloConfig().min_global_confidence == 0.0
    with pytest.raises(
        ValueError,
        match=r"min_global_confidence must be a number from 0 to 1, got 90 \(every confidence is 0-1: production's 90 on its 0-100 scale is 0.9\)",
    ):
        OrcaHelloConfig(min_global_confidence=90)
    audio = str(LEGACY / "audio" / "edge_20k_6s.wav")
    with pytest.raises(ValueError, match="min_global_confidence must be a number from 0 to 1"):
        tiny_pipeline(audio, min_global_confidence=1.5)
    everything = tiny_pipeline(audio, return_timestamps=True, local_threshold=0.0)
    assert everything["global_prediction"] == 1
    floor = everything["global_confidence"]
    kept = tiny_pipeline(audio, return_timestamps=True, local_threshold=0.0, min_global_confidence=floor)
    assert kept["global_prediction"] == 1
    vetoed = tiny_pipeline(audio, return_timestamps=True, local_threshold=0.0, min_global_confidence=floor + 1e-6)
    assert vetoed["global_prediction"] == 0 and vetoed["parameters"]["min_global_confidence"] == floor + 1e-6


def test_site_table_sets_the_floor_and_keeps_its_fit_record_out_of_the_parameters():
    table = check_site_thresholds(
        {"sites": {"rpi_bush_point": {"min_global_confidence": 0.9, "fit": {"precision": 0.5}}}}
    )
    assert parameters_for("/archive/rpi_bush_point/hls/1700000000/live.m3u8", table) == {"min_global_confidence": 0.9}
    assert table["sites"]["rpi_bush_point"]["fit"] == {"precision": 0.5}
    with pytest.raises(
        SiteThresholdsError, match="min_global_confidence must be a number from 0 to 1, got 90 .every confidence is 0-1"
    ):
        check_site_thresholds({"sites": {"x": {"min_global_confidence": 90}}})
    with pytest.raises(SiteThresholdsError, match="fit must be a mapping"):
        check_site_thresholds({"sites": {"x": {"fit": 3}}})


@pytest.mark.needs_test_data
def test_cli_floor_from_the_site_table_and_the_command_line(tiny_model_folder, tmp_path):
    recordings = tmp_path / "recordings"
    for site in ("rpi_orcasound_lab", "rpi_bush_point"):
        (recordings / site / "hls" / "1700000000").mkdir(parents=True)
        shutil.copyfile(LEGACY / "audio" / "edge_20k_6s.wav", recordings / site / "hls" / "1700000000" / "clip.wav")
    # Every row of the tiny model is above 0: with local_threshold 0 both files pass production's rule; a floor of
    # 1 (no mean of the tiny model's probabilities reaches 1) vetoes Bush Point's.
    table = {
        "default": {"local_threshold": 0.0},
        "sites": {"rpi_bush_point": {"min_global_confidence": 1.0, "fit": {"flags_nothing": True}}},
    }
    table_path = tmp_path / "sites.json"
    table_path.write_text(json.dumps(table))
    output_dir = tmp_path / "results"
    arguments = [recordings, "--recursive", "--output-dir", output_dir, "--model", tiny_model_folder]
    arguments += ["--format", "json"]
    completed = run_orcahello_cli(*arguments, "--site-thresholds", table_path)
    assert completed.returncode == 0, completed.stderr

    def document(site):
        return json.loads((output_dir / site / "hls" / "1700000000" / "clip.orcahello.json").read_text())

    lab, bush = document("rpi_orcasound_lab"), document("rpi_bush_point")
    assert lab["global_prediction"] == 1 and lab["parameters"]["min_global_confidence"] == 0.0
    assert bush["global_prediction"] == 0 and bush["parameters"]["min_global_confidence"] == 1.0
    assert bush["global_confidence"] == lab["global_confidence"] > 0
    run = json.loads((output_dir / "orcahello_run.json").read_text())
    assert run["parameters"]["min_global_confidence"] == 0.0 and run["options"]["min_global_confidence"] is None

    # The command line's floor applies to every recording.
    completed = run_orcahello_cli(*arguments, "--site-thresholds", table_path, "--min-global-confidence", "0")
    assert completed.returncode == 0, completed.stderr
    assert document("rpi_bush_point")["global_prediction"] == 1
    completed = run_orcahello_cli(*arguments, "--min-global-confidence", "90")
    assert completed.returncode == 2 and "must be a number from 0 to 1" in completed.stderr
