# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""`min_positive_seconds` (`--min-positive-seconds`) is seconds under every rule (issue 29): the positive rows' time,
merged, whatever the rows' length."""

import pytest

from orcahello import cli
from results_orcahello import DecisionParameters, aggregate_windows, build_file_result

V1_COUNT_RULE = {"smoothing": False, "aggregation": "orcahello"}
V1_MEAN_TOP_K = {"smoothing": False, "aggregation": "mean_top_k", "top_k_windows": 2, "global_threshold": 0.6}


def v1_info(num_windows):
    """A recording cut as the v1 preset cuts it: 3-s segments every 2 s."""
    return {
        "name": "v1.wav", "sampling_rate": 20000, "num_samples": 20000 * (2 * num_windows + 1), "num_channels": 1,
        "num_windows": num_windows, "window_seconds": 3.0, "hop_seconds": 2.0, "timeline": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    "windows",
    [[0.9, 0.9], [0.9, 0.1, 0.9, 0.1], [0.6, 0.6, 0.6, 0.2, 0.8], [0.1, 0.2], [0.55, 0.45, 0.55, 0.45, 0.9, 0.9]],
)
@pytest.mark.parametrize("seconds", [1, 2, 3, 4, 5])
def test_under_production_s_one_second_rows_seconds_are_the_count_of_rows(windows, seconds):
    by_rows = aggregate_windows(windows, DecisionParameters(global_count_threshold=seconds))
    by_seconds = aggregate_windows(windows, DecisionParameters(min_positive_seconds=seconds))
    assert by_seconds["global_prediction"] == by_rows["global_prediction"]
    assert by_seconds["positive_seconds"] == sum(by_rows["local_predictions"])


def test_under_the_v1_count_rule_two_positive_segments_are_five_seconds():
    # Segments [0, 3) and [2, 5) positive: 5 seconds, 2 segments. Counted as rows, 5 was never reached.
    windows = [0.9, 0.8, 0.1, 0.2]
    by_rows = build_file_result(
        v1_info(4), windows, decision=DecisionParameters(**V1_COUNT_RULE, global_count_threshold=5)
    )
    assert by_rows["global_prediction"] == 0
    five = build_file_result(v1_info(4), windows, decision=DecisionParameters(**V1_COUNT_RULE, min_positive_seconds=5))
    assert five["global_prediction"] == 1 and five["label"] == "positive"
    assert five["parameters"]["min_positive_seconds"] == 5
    assert [(d["start"], d["end"]) for d in five["detections"]] == [(0.0, 5.0)]
    six = build_file_result(v1_info(4), windows, decision=DecisionParameters(**V1_COUNT_RULE, min_positive_seconds=6))
    assert six["global_prediction"] == 0
    # Negative by the seconds: its positive score is half of how far it got (5 of 6 seconds).
    assert six["labels"][1] == {"label": "positive", "score": pytest.approx(0.5 * 5 / 6)}
    # Apart, two segments cover 6 seconds.
    apart = build_file_result(
        v1_info(4), [0.9, 0.1, 0.8, 0.1], decision=DecisionParameters(**V1_COUNT_RULE, min_positive_seconds=6)
    )
    assert apart["global_prediction"] == 1


def test_under_the_mean_rules_the_seconds_are_asked_as_well_as_the_mean():
    windows = [0.9, 0.8, 0.1, 0.2]  # top-2 mean 0.85 >= 0.6; 5 positive seconds
    assert (
        build_file_result(v1_info(4), windows, decision=DecisionParameters(**V1_MEAN_TOP_K))["global_prediction"] == 1
    )
    five = DecisionParameters(**V1_MEAN_TOP_K, min_positive_seconds=5)
    assert build_file_result(v1_info(4), windows, decision=five)["global_prediction"] == 1
    six = DecisionParameters(**V1_MEAN_TOP_K, min_positive_seconds=6)
    assert build_file_result(v1_info(4), windows, decision=six)["global_prediction"] == 0
    # The seconds never make positive what the mean does not.
    low = [0.55, 0.55, 0.55, 0.1]  # top-2 mean 0.55 < 0.6, 7 positive seconds
    assert (
        build_file_result(v1_info(4), low, decision=DecisionParameters(**V1_MEAN_TOP_K, min_positive_seconds=1))[
            "global_prediction"
        ]
        == 0
    )


def test_the_option_sets_the_seconds_and_the_count_stays_the_preset_s():
    arguments = ["detect", "a.wav", "--min-positive-seconds", "5"]
    typed = cli.command_options(cli.build_parser().parse_args(arguments))
    assert typed.scoring.decision == {"min_positive_seconds": 5}
    assert typed.scoring.record()["min_positive_seconds"] == 5
