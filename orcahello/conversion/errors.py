# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License.
"""The error every conversion problem other than an unsafe pickle raises, and how its messages list offenders."""

from collections.abc import Iterable

# How many offending keys an error message lists before summarizing the rest.
MAX_KEYS_IN_MESSAGE = 12


class ConversionError(ValueError):
    """The input cannot be converted: unreadable, not an OrcaHello checkpoint, or not matching the model."""


def short_list(items: Iterable[str]) -> str:
    """`items` joined with commas, the first [`MAX_KEYS_IN_MESSAGE`] of them, then how many more there are."""
    items = list(items)
    shown = ", ".join(items[:MAX_KEYS_IN_MESSAGE])
    return shown + (f", ... and {len(items) - MAX_KEYS_IN_MESSAGE} more" if len(items) > MAX_KEYS_IN_MESSAGE else "")
