# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The command-line options shared by the commands: their value types (argparse `type=` callables), and the options
that several commands take with one meaning (`--model`, `--device`, `--batch-size`, the decision options, ...),
each defined once in `SHARED_OPTIONS` and handed to a command's parser by `shared_options` (argparse `parents=`).
Only the command line (`orcahello.cli`) imports this module: below it, options are typed dataclasses.
"""

import argparse
from typing import Any

from vocabulary_orcahello import (
    AGGREGATION_STRATEGIES,
    DEFAULT_BATCH_SIZE,
    ENGINES,
    HUB_MODEL_ID,
    INFERENCE_PRESETS,
)

from . import models, writers
from .provenance import DECISION_OPTIONS


def parse_formats(text: str) -> tuple[str, ...]:
    """`--format`'s value: comma-separated output kinds of `writers.OUTPUT_FORMATS`, each once, in the order given."""
    formats = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in formats if name not in writers.OUTPUT_FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown format(s) {', '.join(unknown)}; choose from {','.join(writers.OUTPUT_FORMATS)}"
        )
    return formats


def probability(text: str) -> float:
    """A threshold on confidences: a number from 0 to 1 (`nan` and `1.5` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text}")
    return value


def non_negative_integer(text: str) -> int:
    """A count that may be 0 (`--min-positive-seconds`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {value}")
    return value


def positive_integer(text: str) -> int:
    """A count of at least 1 (`--batch-size`)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A length of time above 0 (`--poll-seconds`)."""
    value = float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def unit_fraction(text: str) -> float:
    """A global-confidence floor on the 0-1 scale (production's 0-100 value / 100)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1 (global confidence / 100), got {text}")
    return value


def preset_name(value: str) -> str:
    """argparse type of `--preset`: a name of `vocabulary_orcahello.INFERENCE_PRESETS`."""
    names = tuple(INFERENCE_PRESETS)
    if value not in names:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(names)}, got {value!r}")
    return value


# The options several commands take, each with one meaning wherever it is given: a command's parser gets those it
# takes from `shared_options`. (`orcahello batch` has its own --device, for a Ray cluster, and --batch-size.)
SHARED_OPTIONS: dict[str, dict[str, Any]] = {
    "--model": dict(
        metavar="DIR_OR_REPO",
        default=None,
        help=f"model folder or Hub id (default: ${models.MODEL_ENVIRONMENT_VARIABLE}, else models/ from "
        f"scripts/fetch_model.py, else {HUB_MODEL_ID})",
    ),
    "--device": dict(choices=models.DEVICES, default="auto", help="default: auto"),
    "--batch-size": dict(
        metavar="N",
        type=positive_integer,
        default=None,  # models.default_batch_size of the device the model runs on
        help=f"windows per forward pass (default: {DEFAULT_BATCH_SIZE['cpu']} on CPU, "
        f"{DEFAULT_BATCH_SIZE['other']} on a GPU)",
    ),
    "--engine": dict(
        choices=ENGINES,
        default="auto",
        help="what computes the model (default: auto, i.e. OpenVINO on CPU when installed, PyTorch on GPUs); the "
        "engines agree to ~1e-5",
    ),
    "--preset": dict(
        type=preset_name,
        default=None,
        help="inference behaviour: fastai (production 2020-2026: 2-s windows every second, smoothed) or v1 "
        "(upstream's port: 3-s windows every 2 s, whole-recording peak normalisation, raw segments); default: the "
        "model folder's. --threshold, --min-positive-seconds and --aggregation apply on top of it",
    ),
    "--threshold": dict(
        metavar="T",
        type=probability,
        default=None,
        help="a one-second row is positive when its confidence is above this (default: the model's, 0.5)",
    ),
    "--min-positive-seconds": dict(
        metavar="N",
        type=non_negative_integer,
        default=None,
        help="a recording is positive when at least this many rows are (default: the model's, 3)",
    ),
    "--aggregation": dict(
        choices=AGGREGATION_STRATEGIES,
        default=None,
        help="file-level decision: production's (orcahello, default) or the upstream port's",
    ),
    "--min-global-confidence": dict(
        metavar="F",
        type=unit_fraction,
        default=None,
        help="a recording is positive only when its global confidence / 100 also reaches this (0-1; default: the "
        "model's, 0, i.e. production's decision); orcahello calibrate fits one per hydrophone",
    ),
    "--site-thresholds": dict(
        metavar="FILE",
        default=None,
        help="JSON (or YAML) table of decision parameters per hydrophone, matched by name or glob pattern against "
        "each recording's path; options given on the command line override it (see orcahello/site_thresholds.py)",
    ),
    "--recursive": dict(
        action="store_true",
        help="also search the subfolders of folders, and let ** in patterns cross folders",
    ),
    "--overwrite": dict(
        action="store_true",
        help="redo every recording, even those a previous run into the same output folder finished with the same "
        "model and parameters",
    ),
}


def option_flag(name: str) -> str:
    """The command-line flag of the option `name` (`min_positive_seconds`: `--min-positive-seconds`)."""
    return "--" + name.replace("_", "-")


# The decision options (provenance.DECISION_OPTIONS), in that order: every command that decides takes them all.
DECISION_FLAGS = tuple(option_flag(name) for name in DECISION_OPTIONS)


def shared_options(*flags: str) -> argparse.ArgumentParser:
    """A parent parser (argparse `parents=[...]`) holding the `SHARED_OPTIONS` named by `flags`, in that order."""
    parent = argparse.ArgumentParser(add_help=False)
    for flag in flags:
        parent.add_argument(flag, **SHARED_OPTIONS[flag])
    return parent
