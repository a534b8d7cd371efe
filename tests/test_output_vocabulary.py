# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""One scale and one vocabulary across the outputs (issue 29): the names every table gives the same things, results
saved on production's 0-100 scale read on the 0-1 one, and 0-100 values refused where 0-1 is expected."""

import json
from pathlib import Path

import pytest

from orcahello import runs, saved_results, writers
from orcahello.batch.tables import files_schema, windows_schema
from orcahello.embed import embeddings_schema
from results_orcahello import DecisionParameters, aggregate_windows, build_file_result
from vocabulary_orcahello import GLOBAL_CONFIDENCE_PERCENT, OUTPUT_VOCABULARY, check_setting

REPO_ROOT = Path(__file__).resolve().parents[1]
# What each table names that another table names too: the same things, so the same names.
SHARED_WINDOW_COLUMNS = ("file", "window_index", "start", "end", "start_utc", "score")


def test_batch_and_embed_tables_name_windows_as_detects_json():
    window_names = windows_schema().names
    embed_names = embeddings_schema(4).names
    for name in SHARED_WINDOW_COLUMNS:
        assert name in window_names and name in embed_names, name
    # detect's JSON windows: start, end, score, start_utc (with a known start)
    info = {
        "name": "a.wav", "sampling_rate": 20000, "num_samples": 80000, "num_channels": 1, "num_windows": 3,
        "window_seconds": 2.0, "hop_seconds": 1.0, "timeline": None,
    }  # fmt: skip
    document = build_file_result(info, [0.9, 0.9, 0.9])
    assert {"start", "end", "score"} <= set(document["windows"][0])
    files = files_schema().names
    assert {"file", "global_prediction", "global_confidence", "positive_seconds", "duration_s"} <= set(files)
    assert "start_time_utc" in files and "recording" not in files and "start_utc" not in files
    assert writers.SUMMARY_HEADER[0] == "file" and "start_time_utc" in writers.SUMMARY_HEADER
    for name in set(window_names) | set(embed_names) | set(files) | set(writers.SUMMARY_HEADER):
        assert name not in ("recording", "path", "start_s", "end_s", "p_positive"), name


def test_the_manual_lists_the_vocabulary():
    page = (REPO_ROOT / "docs" / "outputs.md").read_text()
    for name in OUTPUT_VOCABULARY:
        assert f"`{name}`" in page, name
    assert f"`{GLOBAL_CONFIDENCE_PERCENT}`" in page


def test_global_confidence_is_0_to_1_under_every_rule_and_production_s_value_is_named():
    windows = [0.9, 0.7, 0.8, 0.2]
    for decision in (
        DecisionParameters(),
        DecisionParameters(smoothing=False),
        DecisionParameters(aggregation="mean_thresholded"),
        DecisionParameters(aggregation="mean_top_k", top_k_windows=2),
    ):
        assert 0.5 < aggregate_windows(windows, decision)["global_confidence"] <= 1.0, decision
    info = {
        "name": "a.wav", "sampling_rate": 20000, "num_samples": 100000, "num_channels": 1, "num_windows": 4,
        "window_seconds": 2.0, "hop_seconds": 1.0, "timeline": None,
    }  # fmt: skip
    result = build_file_result(info, windows)
    # Rows 0.9 0.8 0.75 0.5 0.2: positive 0.9 0.8 0.75, production's 81.67 on its 0-100 scale.
    assert result["global_confidence"] == pytest.approx((0.9 + 0.8 + 0.75) / 3)
    assert result[GLOBAL_CONFIDENCE_PERCENT] == pytest.approx(100 * (0.9 + 0.8 + 0.75) / 3)
    assert runs.RESULT_KEYS[:3] == ("global_prediction", "global_confidence", GLOBAL_CONFIDENCE_PERCENT)


@pytest.mark.parametrize(
    "value, hint",
    [(60, "production's 60 on its 0-100 scale is 0.6"), (90.5, "production's 90.5 on its 0-100 scale is 0.905")],
)
def test_a_0_to_100_value_for_a_0_to_1_setting_is_refused_with_its_0_to_1_form(value, hint):
    with pytest.raises(ValueError, match="must be a number from 0 to 1") as error:
        check_setting("min_global_confidence", value, "--min-global-confidence")
    assert hint in str(error.value) and "\n" not in str(error.value)
    for beyond in (250, 1.5):  # no scale this is a value on
        with pytest.raises(ValueError) as error:
            check_setting("local_threshold", beyond)
        assert str(error.value) == f"local_threshold must be a number from 0 to 1, got {beyond}"


def old_document(global_confidence, aggregation="orcahello"):
    """A result as versions before the one scale saved it: production's 0-100 value, no percent field."""
    return {
        "file": "a.wav",
        "global_prediction": 1,
        "global_confidence": global_confidence,
        "parameters": {"aggregation": aggregation},
        "run_hash": "0123456789abcdef",
    }


def test_results_saved_before_the_one_scale_are_read_on_it():
    converted = saved_results.on_unit_scale(old_document(81.5), "a.orcahello.json")
    assert converted["global_confidence"] == pytest.approx(0.815)
    assert converted[GLOBAL_CONFIDENCE_PERCENT] == pytest.approx(81.5)
    # The port's mean rules were 0-1 already.
    port = saved_results.on_unit_scale(old_document(0.815, "mean_top_k"), "b.orcahello.json")
    assert port["global_confidence"] == 0.815 and port[GLOBAL_CONFIDENCE_PERCENT] == pytest.approx(81.5)
    today = {**old_document(0.815), GLOBAL_CONFIDENCE_PERCENT: 81.5}
    assert saved_results.on_unit_scale(today, "c.orcahello.json") is today
    with pytest.raises(
        saved_results.SavedResultError, match=r"^d.orcahello.json: global_confidence 150 is outside 0-100"
    ):
        saved_results.on_unit_scale(old_document(150), "d.orcahello.json")
    with pytest.raises(
        saved_results.SavedResultError, match=r"^e.orcahello.json: global_confidence must be from 0 to 1"
    ):
        saved_results.on_unit_scale({**today, "global_confidence": 81.5}, "e.orcahello.json")


def test_an_old_format_result_is_scored_again_rather_than_resumed(tmp_path):
    path = tmp_path / "a.orcahello.json"
    path.write_text(json.dumps(old_document(81.5)))
    assert runs.load_finished_document(str(path), "0123456789abcdef") is None
    path.write_text(json.dumps({**old_document(0.815), GLOBAL_CONFIDENCE_PERCENT: 81.5}))
    assert runs.load_finished_document(str(path), "0123456789abcdef")["global_confidence"] == 0.815


def test_reaggregate_reads_a_result_saved_on_production_s_scale(tmp_path):
    """A result saved before the one scale (production's 0-100 `global_confidence`, no percent field): reaggregate
    decides it again from its windows and writes today's 0-1 confidence, with production's value named."""
    from orcahello import cli

    info = {"name": "clip.wav", "sampling_rate": 20000, "num_samples": 200000, "num_channels": 1, "num_windows": 9,
            "window_seconds": 2.0, "hop_seconds": 1.0, "timeline": None}  # fmt: skip
    result = build_file_result(info, [0.1, 0.2, 0.9, 0.95, 0.97, 0.8, 0.3, 0.2, 0.1], return_timestamps=True)
    saved = {"file": "clip.wav", **result, "preset": "fastai", "model": {"name_or_path": "gone"}, "run_hash": "x"}
    saved["parameters"] = {
        name: value for name, value in result["parameters"].items() if name != "min_positive_seconds"
    } | {"preset": "fastai", "batch_size": 8, "device": "cpu"}
    saved["global_confidence"] = 100 * result["global_confidence"]  # as versions before the one scale wrote it
    del saved[GLOBAL_CONFIDENCE_PERCENT]
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "clip.orcahello.json").write_text(json.dumps(saved))
    assert cli.main(["reaggregate", str(tmp_path / "saved"), "--output-dir", str(tmp_path / "out")]) == 0
    redecided = json.loads((tmp_path / "out" / "clip.orcahello.json").read_text())
    assert redecided["global_confidence"] == pytest.approx(result["global_confidence"])
    # Rows 0.55 0.925 0.96 0.885 0.55 positive: their mean, 0-1.
    assert redecided["global_confidence"] == pytest.approx((0.55 + 0.925 + 0.96 + 0.885 + 0.55) / 5)
    assert redecided[GLOBAL_CONFIDENCE_PERCENT] == pytest.approx(saved["global_confidence"])
    summary = (tmp_path / "out" / writers.SUMMARY_CSV).read_text().splitlines()
    assert summary[0].startswith("file,status,global_prediction,global_confidence,")
    assert float(summary[1].split(",")[3]) == pytest.approx(result["global_confidence"])
