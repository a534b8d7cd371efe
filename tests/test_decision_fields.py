# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The decision fields are defined once (`vocabulary_orcahello.DECISION_FIELD_TYPES`): every other list of them (the
results' `DecisionParameters`, the endpoint's parameters, the command line's options, the per-site tables, the run
records) is derived from it or checked against it here, so that a field added in one place and not handled in
another fails a test.
"""

import dataclasses

import pytest

from orcahello import cli, options, provenance, site_thresholds
from results_orcahello import DEFAULT_DECISION, DecisionParameters
from vocabulary_orcahello import DECISION_FIELD_TYPES, DECISION_FIELDS, INFERENCE_FIELDS

# The decision fields no command-line option sets: a preset (or the model's config, or a site table) does.
# global_count_threshold counts rows (production's seconds, the port's 3-s segments): --min-positive-seconds sets
# seconds under every rule (min_positive_seconds), which replace the count where given.
SET_BY_THE_PRESET_ONLY = {"smoothing", "global_count_threshold", "global_threshold", "top_k_windows"}


def test_decision_parameters_are_the_vocabulary_fields_with_their_types():
    assert {field.name: field.type for field in dataclasses.fields(DecisionParameters)} == DECISION_FIELD_TYPES
    assert tuple(DECISION_FIELD_TYPES) == DECISION_FIELDS


def test_every_decision_field_is_a_call_parameter_of_the_pipeline_that_reaches_its_decision():
    from call_parameters_orcahello import resolve_call_parameters
    from configuration_orcahello import OrcaHelloConfig

    # None of them production's: each must arrive as given.
    given = {
        "smoothing": False,
        "aggregation": "mean_top_k",
        "local_threshold": 0.7,
        "global_count_threshold": 2,
        "global_threshold": 0.8,
        "top_k_windows": 2,
        "min_global_confidence": 0.4,
        "min_positive_seconds": 5,
    }
    assert tuple(given) == DECISION_FIELDS  # a new field: give it a value that is not production's here
    resolved = resolve_call_parameters(OrcaHelloConfig(), **given)
    assert resolved.postprocess["decision"] == DecisionParameters(**given)
    assert all(value != getattr(DEFAULT_DECISION, name) for name, value in given.items())


def test_every_decision_field_is_a_parameter_of_the_endpoint_with_its_type():
    import handler

    assert {name: handler.PARAMETER_TYPES[name] for name in DECISION_FIELDS} == DECISION_FIELD_TYPES
    assert handler.coerce_parameter("min_global_confidence", "0.25") == 0.25


def test_every_decision_field_is_an_option_or_set_by_the_preset():
    """A new field must either get an option or be added above as one the preset sets."""
    offered = set(provenance.DECISION_OPTIONS.values())
    assert offered | SET_BY_THE_PRESET_ONLY == set(DECISION_FIELDS)
    assert not offered & SET_BY_THE_PRESET_ONLY
    # Each option is defined once for the commands that share it, and every command that decides takes all of them.
    assert options.DECISION_FLAGS == (
        "--threshold",
        "--min-positive-seconds",
        "--aggregation",
        "--min-global-confidence",
    )
    assert set(options.DECISION_FLAGS) <= set(options.SHARED_OPTIONS)
    for shared in (cli.DETECT_SHARED_OPTIONS, cli.BATCH_SHARED_OPTIONS, cli.LIVE_SHARED_OPTIONS):
        assert set(options.DECISION_FLAGS) <= set(shared)


@pytest.mark.parametrize("command, source", [("detect", "a.wav"), ("batch", "a.wav"), ("live", "http://host/node")])
def test_the_command_line_s_decision_options_reach_the_decision_fields(command, source):
    arguments = [command, source, "--threshold", "0.7", "--min-positive-seconds", "2", "--aggregation", "mean_top_k"]
    arguments += ["--min-global-confidence", "0.4"]
    typed = cli.command_options(cli.build_parser().parse_args(arguments))
    assert typed.scoring.decision == {
        "local_threshold": 0.7,
        "min_positive_seconds": 2,
        "aggregation": "mean_top_k",
        "min_global_confidence": 0.4,
    }
    # The run records keep the options under their command-line names.
    assert typed.scoring.record() == {
        "threshold": 0.7,
        "min_positive_seconds": 2,
        "aggregation": "mean_top_k",
        "min_global_confidence": 0.4,
        "preset": None,
    }


def test_the_scoring_parameters_hold_every_decision_field_but_the_preset_s_smoothing():
    """The resume hash covers every decision field (smoothing, a preset field, only where it is not production's)."""
    from configuration_orcahello import OrcaHelloConfig

    config = OrcaHelloConfig(min_global_confidence=0.3)
    parameters = provenance.scoring_parameters(provenance.ScoringOptions(), config)
    assert set(DECISION_FIELDS) - set(parameters) == {"smoothing"}
    assert parameters["min_global_confidence"] == 0.3
    # Every decision field a run can be given is applied over the config's.
    given = {name: getattr(DEFAULT_DECISION, name) for name in DECISION_FIELDS}
    given.update(local_threshold=0.9, global_count_threshold=7, smoothing=False)
    parameters = provenance.scoring_parameters(provenance.ScoringOptions(decision=given), config)
    assert {name: parameters[name] for name in DECISION_FIELDS} == given


@pytest.mark.parametrize("field", DECISION_FIELDS)
def test_every_decision_field_has_a_check_that_takes_its_default_and_refuses_another_type(field):
    default = getattr(DEFAULT_DECISION, field)
    assert provenance.check_decision_value(field, default) == default
    wrong = "yes" if DECISION_FIELD_TYPES[field] is not str else 3
    with pytest.raises(ValueError, match=f"^{field} must be "):
        provenance.check_decision_value(field, wrong)


def test_a_site_may_set_every_decision_field_but_smoothing():
    assert site_thresholds.SITE_PARAMETERS == tuple(name for name in DECISION_FIELDS if name != "smoothing")
    # smoothing is how a preset makes rows of windows: it is an inference field, the others are not all.
    assert "smoothing" in INFERENCE_FIELDS
    entry = {name: getattr(DEFAULT_DECISION, name) for name in site_thresholds.SITE_PARAMETERS}
    assert site_thresholds.check_site_parameters(entry, "sites.json: default") == entry
    with pytest.raises(site_thresholds.SiteThresholdsError, match="unknown parameter.s. smoothing"):
        site_thresholds.check_site_parameters({"smoothing": False}, "sites.json: default")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("local_threshold", 1.5, "local_threshold must be a number from 0 to 1, got 1.5"),
        ("local_threshold", float("nan"), "local_threshold must be a number from 0 to 1, got nan"),
        ("global_threshold", True, "global_threshold must be a number from 0 to 1, got True"),
        ("global_count_threshold", -1, "global_count_threshold must be a whole number of at least 0, got -1"),
        ("global_count_threshold", 2.5, "global_count_threshold must be a whole number of at least 0, got 2.5"),
        ("top_k_windows", 0, "top_k_windows must be a whole number of at least 1, got 0"),
        ("aggregation", "max", "aggregation must be one of orcahello, mean_thresholded, mean_top_k, got 'max'"),
        ("smoothing", 1, "smoothing must be true or false, got 1"),
    ],
)
def test_decision_values_out_of_range_are_refused_in_one_line(field, value, message):
    with pytest.raises(ValueError) as error:
        provenance.ScoringOptions(decision={field: value})
    assert str(error.value) == message


def test_scoring_options_refuse_what_is_not_a_decision_field_and_keep_each_field_s_type():
    with pytest.raises(ValueError, match="not decision fields: window_seconds"):
        provenance.ScoringOptions(decision={"window_seconds": 3.0})
    with pytest.raises(TypeError, match=r"unknown option\(s\) local_threshold"):
        provenance.ScoringOptions.from_options(local_threshold=0.5)  # the option is --threshold
    # A threshold of 1 is the number 1.0, as the run's hash must see it.
    assert provenance.ScoringOptions.from_options(threshold=1).decision == {"local_threshold": 1.0}
    assert isinstance(provenance.ScoringOptions(decision={"local_threshold": 1}).decision["local_threshold"], float)
