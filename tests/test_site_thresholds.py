"""
Per-site thresholds: the table's validation and lookup rules (`orcahello.site_thresholds`), and `orcahello detect
--site-thresholds` giving two recordings different decisions, recording them, and resuming per recording.
"""

import json
import shutil

import pytest
from conftest import LEGACY, run_orcahello_cli

from orcahello.site_thresholds import (
    SiteThresholdsError,
    check_site_thresholds,
    load_site_thresholds,
    match_site,
    parameters_for,
)

TABLE = {
    "description": "test sites",
    "default": {"local_threshold": 0.5, "global_count_threshold": 3},
    "sites": {
        "orcasound_lab": {"local_threshold": 0.7},
        "bush_point*": {"global_count_threshold": 5},
        "*/archive/20??-*/*.flac": {"aggregation": "mean_top_k", "top_k_windows": 4},
        "*": {"local_threshold": 0.9},
    },
}


@pytest.fixture
def table():
    return check_site_thresholds(json.loads(json.dumps(TABLE)))


# ---------------------------------------------------------------------------------------------------------------
# Lookup rules
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, site",
    [
        ("/data/orcasound_lab/2021-08-25/clip.wav", "orcasound_lab"),  # a folder of the path
        ("orcasound_lab", "orcasound_lab"),  # a hydrophone's name
        ("recordings/Orcasound_Lab.wav", "orcasound_lab"),  # the file's stem, case-insensitively
        ("recordings/bush_point_20210825T1925.flac", "bush_point*"),  # a pattern on the file name
        ("D:\\hydrophones\\bush_point\\clip.wav", "bush_point*"),  # Windows separators
        ("/mnt/archive/2019-07/clip.flac", "*/archive/20??-*/*.flac"),  # a pattern with / on the whole path
        ("/mnt/archive/2019-07/clip.wav", "*"),  # ... which that one does not match
        ("/data/orcasound_lab/bush_point_0825.wav", "orcasound_lab"),  # the first matching pattern wins
    ],
)
def test_first_matching_pattern_wins(table, path, site):
    assert match_site(path, table) == site


def test_parameters_are_the_default_overridden_by_the_site(table):
    assert parameters_for("/data/orcasound_lab/clip.wav", table) == {
        "local_threshold": 0.7,
        "global_count_threshold": 3,
    }
    assert parameters_for("bush_point_1.wav", table) == {"local_threshold": 0.5, "global_count_threshold": 5}
    assert parameters_for("/mnt/archive/2019-07/a.flac", table) == {
        "local_threshold": 0.5,
        "global_count_threshold": 3,
        "aggregation": "mean_top_k",
        "top_k_windows": 4,
    }
    without_catch_all = check_site_thresholds({"default": {"local_threshold": 0.4}, "sites": {"x": {}}})
    assert match_site("elsewhere/clip.wav", without_catch_all) is None
    assert parameters_for("elsewhere/clip.wav", without_catch_all) == {"local_threshold": 0.4}
    assert parameters_for("clip.wav", check_site_thresholds({})) == {}


@pytest.mark.parametrize(
    "bad_table, message",
    [
        ([], "expected a mapping"),
        ({"site": {}}, "unknown key(s) site"),
        ({"sites": [["orcasound_lab", {}]]}, "'sites' must map"),
        ({"sites": {"lab": {"treshold": 0.7}}}, "unknown parameter(s) treshold"),
        ({"sites": {"lab": {"local_threshold": 1.5}}}, "from 0 to 1"),
        ({"sites": {"lab": {"local_threshold": "0.7"}}}, "from 0 to 1"),
        ({"sites": {"lab": {"global_count_threshold": 2.5}}}, "whole number"),
        ({"sites": {"lab": {"global_count_threshold": True}}}, "whole number"),
        ({"default": {"aggregation": "max"}}, "aggregation must be one of"),
        ({"sites": {"": {}}}, "non-empty"),
    ],
)
def test_bad_tables_are_refused_with_the_entry_named(bad_table, message):
    with pytest.raises(SiteThresholdsError) as error:
        check_site_thresholds(bad_table, source="sites.json")
    assert message in str(error.value) and str(error.value).startswith("sites.json")


def test_load_json_and_yaml_in_file_order(tmp_path):
    json_path = tmp_path / "sites.json"
    json_path.write_text(json.dumps(TABLE))
    loaded = load_site_thresholds(json_path)
    assert list(loaded["sites"]) == list(TABLE["sites"])
    assert loaded["default"] == TABLE["default"]

    yaml = pytest.importorskip("yaml")
    yaml_path = tmp_path / "sites.yaml"
    yaml_path.write_text(yaml.safe_dump(TABLE, sort_keys=False))
    assert load_site_thresholds(yaml_path) == loaded

    (tmp_path / "broken.json").write_text('{"sites": {"lab": {"local_threshold": 0.7}')
    with pytest.raises(SiteThresholdsError, match="not valid JSON"):
        load_site_thresholds(tmp_path / "broken.json")
    with pytest.raises(SiteThresholdsError, match="cannot read"):
        load_site_thresholds(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------------------------
# orcahello detect --site-thresholds
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
def test_cli_gives_each_site_its_thresholds_and_records_them(tiny_model_folder, tmp_path):
    recordings = tmp_path / "recordings"
    for site in ("orcasound_lab", "bush_point"):
        (recordings / site).mkdir(parents=True)
        shutil.copyfile(LEGACY / "audio" / "edge_20k_6s.wav", recordings / site / "clip.wav")
    # Every one-second row of the tiny model is above 0 and below 1: orcasound_lab's files must come out
    # positive, bush_point's negative, whatever the scores.
    table = {
        "default": {"global_count_threshold": 2},
        "sites": {"orcasound_lab": {"local_threshold": 0.0}, "bush_point": {"local_threshold": 1.0}},
    }
    table_path = tmp_path / "sites.json"
    table_path.write_text(json.dumps(table))
    output_dir = tmp_path / "results"
    arguments = [recordings, "--recursive", "--output-dir", output_dir, "--model", tiny_model_folder]
    arguments += ["--site-thresholds", table_path, "--format", "json"]

    completed = run_orcahello_cli(*arguments)
    assert completed.returncode == 0, completed.stderr
    documents = {
        site: json.loads((output_dir / site / "clip.orcahello.json").read_text())
        for site in ("orcasound_lab", "bush_point")
    }
    lab, bush = documents["orcasound_lab"], documents["bush_point"]
    assert lab["parameters"]["local_threshold"] == 0.0 and bush["parameters"]["local_threshold"] == 1.0
    assert lab["parameters"]["global_count_threshold"] == bush["parameters"]["global_count_threshold"] == 2
    assert lab["global_prediction"] == 1 and all(lab["local_predictions"])
    assert bush["global_prediction"] == 0 and not any(bush["local_predictions"])
    assert lab["windows"] == bush["windows"]  # the same audio, scored the same: only the decision differs
    assert lab["site_thresholds"] == {"file": str(table_path), "site": "orcasound_lab"}
    assert bush["site_thresholds"] == {"file": str(table_path), "site": "bush_point"}
    assert lab["run_hash"] != bush["run_hash"]
    run = json.loads((output_dir / "orcahello_run.json").read_text())
    assert run["site_thresholds"]["file"] == str(table_path)
    assert run["site_thresholds"]["table"]["sites"] == table["sites"]
    assert run["options"]["site_thresholds"] == str(table_path)

    # One site's entry changes: only its recording is scored again. A command-line option overrides the table.
    table["sites"]["bush_point"]["local_threshold"] = 0.0
    table_path.write_text(json.dumps(table))
    completed = run_orcahello_cli(*arguments)
    assert completed.returncode == 0, completed.stderr
    assert "1 scored, 1 skipped" in completed.stdout
    assert json.loads((output_dir / "bush_point" / "clip.orcahello.json").read_text())["global_prediction"] == 1

    completed = run_orcahello_cli(*arguments, "--threshold", "1.0")
    assert completed.returncode == 0 and "2 scored" in completed.stdout, completed.stderr
    for site in ("orcasound_lab", "bush_point"):
        document = json.loads((output_dir / site / "clip.orcahello.json").read_text())
        assert document["parameters"]["local_threshold"] == 1.0 and document["global_prediction"] == 0


@pytest.mark.needs_test_data
def test_cli_refuses_a_bad_table_before_scoring(tiny_model_folder, tmp_path):
    table_path = tmp_path / "sites.json"
    table_path.write_text(json.dumps({"sites": {"lab": {"local_threshold": 7}}}))
    completed = run_orcahello_cli(
        LEGACY / "audio" / "edge_20k_6s.wav",
        "--model",
        tiny_model_folder,
        "--output-dir",
        tmp_path / "out",
        "--site-thresholds",
        table_path,
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith(f"ERROR: {table_path}: site 'lab': local_threshold must be a number from 0 to 1")
    assert not (tmp_path / "out").exists()
