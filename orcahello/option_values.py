# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The value types of the `orcahello` commands' options: argparse `type=` callables that turn an option's text into
its value or refuse it with `argparse.ArgumentTypeError` (one line, naming the range). Part of the command line:
only `orcahello.options` imports it.
"""

import argparse
from typing import TYPE_CHECKING

from vocabulary_orcahello import INFERENCE_PRESETS, MAX_BATCH_SIZE, unit_scale_error

from . import writers

if TYPE_CHECKING:
    from .search import WindowQuery


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
        raise argparse.ArgumentTypeError(unit_scale_error("it", value).removeprefix("it "))
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


def batch_size(text: str) -> int:
    """Windows per forward pass (`--batch-size`): from 1 to `MAX_BATCH_SIZE`, whose memory grows with it."""
    value = positive_integer(text)
    if value > MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH_SIZE} (memory grows with it), got {value}")
    return value


def positive_float(text: str) -> float:
    """A length of time above 0 (`--poll-seconds`)."""
    value = float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def unit_fraction(text: str) -> float:
    """A floor on the global confidence, 0-1 as every confidence (a 0-100 value is refused, its 0-1 form named)."""
    return probability(text)


def preset_name(value: str) -> str:
    """argparse type of `--preset`: a name of `vocabulary_orcahello.INFERENCE_PRESETS`."""
    names = tuple(INFERENCE_PRESETS)
    if value not in names:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(names)}, got {value!r}")
    return value


def window_query(text: str) -> "WindowQuery":
    """`--query`'s value: `FILE@SECONDS`, a window of embed's tables (`orcahello.search.WindowQuery`)."""
    from .search import WindowQuery

    try:
        return WindowQuery.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
