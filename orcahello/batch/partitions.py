# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Partitions of an `orcahello batch` job: how many windows make a block and a partition, the identity of the window
scores that decides whether an earlier run's partition is reused, and the assembly of scores as they arrive.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

from vocabulary_orcahello import DEFAULT_BATCH_SIZE

from .. import runs
from .sources import Source

if TYPE_CHECKING:
    import numpy as np

    from feature_extraction_orcahello import OrcaHelloFeatureExtractor


def windows_per_block(batch_size: int, frontend_block_windows: int = 32) -> int:
    """Windows featurized together and sent to an actor as one block: `frontend_block_windows` (32: larger than the
    pipeline's own frontend block of `audio_orcahello.FRONTEND_BLOCK_WINDOWS`, since each block is one Ray object)
    rounded up to a multiple of the batch size, so that blocks (and partitions, made of blocks) start where
    `orcahello detect`'s batches do."""
    return batch_size * max(1, -(-frontend_block_windows // batch_size))


def scores_identity(
    model_info: dict[str, Any], parameters: dict[str, Any], feature_extractor: OrcaHelloFeatureExtractor
) -> str:
    """
    The key of the partition resume check: what the window scores depend on (the model's weights or revision, the
    frontend's configuration, the windowing), and nothing they do not (thresholds, aggregation, batch size).
    """
    identity = model_info.get("weights_sha256") or model_info.get("revision") or model_info["name_or_path"]
    payload: dict[str, Any] = {
        "model": identity,
        "feature_extractor": feature_extractor.to_dict(),
        "window_seconds": parameters["window_seconds"],
        "hop_seconds": parameters["hop_seconds"],
        # the v1 preset's frontend (absent for production's, so that earlier runs' partitions are still reused)
        **{
            name: parameters[name]
            for name in ("whole_recording_frontend", "peak_normalize", "strict_segments")
            if name in parameters
        },
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


class PartitionAssembly:
    """
    The window scores of the partitions in flight, gathered as they arrive, in any order. A window that arrives
    twice (Ray runs a task again when its worker died) is kept once: partitions are complete when every window is
    in, never by counting arrivals.
    """

    def __init__(self) -> None:
        self._partitions: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def add(
        self, key: tuple[int, int], num_windows: int, offset: int, score: float, silent: bool
    ) -> tuple[bool, tuple[np.ndarray, np.ndarray] | None]:
        """Record window `offset` of partition `key`. Returns `(is_new, complete)`: whether the window was not in yet,
        and `(scores, silent flags)` once the partition is complete (it is then forgotten), else None."""
        import numpy as np

        scores, flags, arrived = self._partitions.setdefault(
            key, (np.zeros(num_windows, np.float32), np.zeros(num_windows, bool), np.zeros(num_windows, bool))
        )
        is_new = not arrived[offset]
        scores[offset], flags[offset], arrived[offset] = score, silent, True
        if not arrived.all():
            return is_new, None
        del self._partitions[key]
        return is_new, (scores, flags)


@dataclasses.dataclass
class RecordingState:
    """What the driver knows about one recording during the job."""

    source: Source
    settings: runs.RunSettings  # its decision parameters (per site with a site table) and run hash
    # sampling_rate, num_samples, num_channels, num_windows, window/hop seconds, start_utc; an HLS stream's timeline
    info: dict[str, Any] | None = None
    partitions: dict[int, int] = dataclasses.field(default_factory=dict)  # first window -> number of windows
    done: set[int] = dataclasses.field(default_factory=set)  # first windows whose partition file is written or reused
    reused: set[int] = dataclasses.field(default_factory=set)  # ... of which an earlier run wrote
    error: str | None = None
    document: dict[str, Any] | None = None  # its OrcaHello JSON, once written
    silent_windows: int | None = None


def alignment_batch_size(batch_size: int | None) -> int:
    """
    The batch size blocks and partitions are aligned to: the one asked for; when the actors' device decides it
    (None), the least common multiple of the devices' defaults, so that partitions are the same whichever device
    the actors get (a resumed job reuses them) and blocks start where `orcahello detect`'s batches do on either.
    """
    return batch_size or math.lcm(*DEFAULT_BATCH_SIZE.values())
