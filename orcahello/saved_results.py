# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Results saved by earlier versions, read on today's scale: every confidence 0-1.

Until `global_confidence_percent` was added, a result's `global_confidence` was production's 0-100 value under the
count rule (aggregation `"orcahello"`) and 0-1 under the upstream port's mean rules. `on_unit_scale` tells the two
formats apart by that field and gives the commands that read saved JSON (`evaluate`, `reaggregate`) today's;
`is_current` is the resume check's test (a result in the old format is scored again rather than resumed).
"""

import math
from typing import Any

from vocabulary_orcahello import GLOBAL_CONFIDENCE_PERCENT


class SavedResultError(ValueError):
    """A saved result whose global confidence cannot be read on the 0-1 scale."""


def is_current(document: dict[str, Any]) -> bool:
    """Whether `document` (a saved OrcaHello result) is in today's format: its global confidence 0-1."""
    return GLOBAL_CONFIDENCE_PERCENT in document


def on_unit_scale(document: dict[str, Any], path: str) -> dict[str, Any]:
    """
    `document` (a result `path` holds) with `global_confidence` on the 0-1 scale and production's 0-100 value as
    `global_confidence_percent`: a result in today's format as it is, one saved by an earlier version converted (its
    count rule's 0-100 value divided by 100). A `SavedResultError` naming `path` when the value is not a number on
    the scale its format says.
    """
    confidence = document.get("global_confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not math.isfinite(confidence):
        raise SavedResultError(f"{path}: global_confidence must be a number, got {confidence!r}")
    if is_current(document):
        if not 0.0 <= confidence <= 1.0:
            raise SavedResultError(f"{path}: global_confidence must be from 0 to 1, got {confidence!r}")
        return document
    aggregation = (document.get("parameters") or {}).get("aggregation", "orcahello")
    scale = 100.0 if aggregation == "orcahello" else 1.0
    if not 0.0 <= confidence <= scale:
        raise SavedResultError(
            f"{path}: global_confidence {confidence!r} is outside 0-{scale:g}, the scale of a result saved before "
            f"{GLOBAL_CONFIDENCE_PERCENT} (aggregation {aggregation})"
        )
    unit = confidence / scale
    return {**document, "global_confidence": unit, GLOBAL_CONFIDENCE_PERCENT: 100.0 * unit}
