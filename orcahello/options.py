# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""Value types of the command-line options, shared by every command (argparse `type=` callables)."""

import argparse

from vocabulary_orcahello import (
    INFERENCE_PRESETS,
)

from . import (
    writers,
)


def parse_formats(text):
    formats = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in formats if name not in writers.OUTPUT_FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown format(s) {', '.join(unknown)}; choose from {','.join(writers.OUTPUT_FORMATS)}"
        )
    return formats


def probability(text):
    """A threshold on confidences: a number from 0 to 1 (`nan` and `1.5` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text}")
    return value


def non_negative_integer(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {value}")
    return value


def positive_integer(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def unit_fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1 (global confidence / 100), got {text}")
    return value


def preset_name(value):
    """argparse type of `--preset`: a name of `vocabulary_orcahello.INFERENCE_PRESETS`."""
    names = tuple(INFERENCE_PRESETS)
    if value not in names:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(names)}, got {value!r}")
    return value
