# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The CPU stage of an `orcahello batch` job (Ray tasks): read the windows of the partitions to score and featurize
them with the pipeline's own frontend, block by block, for the model actors (`orcahello.batch.scoring`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import runs
from .sources import open_source

if TYPE_CHECKING:
    from feature_extraction_orcahello import OrcaHelloFeatureExtractor


def _block_row(source_index, partition_first_window, first_window, features, silent, error=""):
    import numpy as np

    return {
        "source_index": np.array([source_index], dtype=np.int64),
        "partition_first_window": np.array([partition_first_window], dtype=np.int64),
        "first_window": np.array([first_window], dtype=np.int64),
        "input_features": features[None],
        "silent": np.asarray(silent, dtype=bool)[None],
        "error": np.array([error], dtype=object),
    }


def featurize_partitions(
    batch: dict[str, Any],
    feature_extractor: OrcaHelloFeatureExtractor,
    block_windows: int,
    window_seconds: float,
    hop_seconds: float,
    whole_recording_frontend: bool = False,
    strict_segments: bool = True,
    peak_normalize: bool = False,
    model_sampling_rate: int = 20000,
) -> Iterator[dict[str, Any]]:
    """
    Ray Data `map_batches` (a generator, so a long partition never sits in memory whole): each input row is one
    recording and some of its partitions (`first_windows`, `window_counts`, in window order); the recording is opened
    once and those partitions' windows read and featurized `block_windows` at a time, one output row per block. An
    HLS stream decodes forward as it is read, so the driver gives all of a stream's partitions to one row: the
    stream is decoded once, never again from its start for each partition. A recording that fails to read gives one
    row with its `error` instead, and its remaining blocks are not produced.
    """
    import numpy as np

    from audio_orcahello import AudioInputError, featurize_windows, scoring_windows
    from whole_recording_orcahello import whole_recording_audio

    rows = zip(
        batch["source_index"], batch["source"], batch["first_windows"], batch["window_counts"], batch["num_samples"]
    )
    for source_index, source, first_windows, window_counts, expected_samples in rows:
        source_index = int(source_index)
        partitions = [(int(first), int(count)) for first, count in zip(first_windows, window_counts)]
        first = partitions[0][0]
        recording = None
        try:
            recording = open_source(str(source))
            if recording.num_samples != int(expected_samples):
                raise AudioInputError(
                    f"{source}: it changed during the job ({expected_samples} samples when probed, "
                    f"{recording.num_samples} now)"
                )
            bounds = scoring_windows(
                recording, window_seconds, hop_seconds, whole_recording_frontend, strict_segments, model_sampling_rate
            )
            if whole_recording_frontend:  # the v1 preset: windows are cut from the whole recording, prepared once
                recording = whole_recording_audio(recording, feature_extractor, peak_normalize=peak_normalize)
            for first, count in partitions:
                partition_bounds = bounds[first : first + count]
                for offset in range(0, count, block_windows):
                    features, silent = featurize_windows(
                        recording, partition_bounds[offset : offset + block_windows], feature_extractor
                    )
                    yield _block_row(source_index, first, first + offset, features.numpy(), silent)
        except Exception as error:  # reported on this recording's row; the job goes on with the others
            empty = np.zeros((0, 1, 1, 1), dtype=np.float32)
            yield _block_row(source_index, first, first, empty, [], error=runs.failure_reason(error, str(source)))
        finally:
            if recording is not None:
                recording.close()
