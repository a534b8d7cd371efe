# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Scoring a `datasets.Dataset` audio column with the OrcaHello pipeline, with the same numbers as `orcahello detect`.

datasets >= 4 decodes `Audio` columns with torchcodec, which needs FFmpeg's shared libraries. Casting the column
to `Audio(decode=False)` skips decoding: each row is then `{"bytes", "path"}` and the pipeline reads the file
itself (libsndfile: WAV, FLAC, OGG, MP3), exactly as the command line does:

```python
>>> from datasets import Audio, Dataset
>>> from orcahello.datasets_utils import score_dataset
>>> from orcahello.models import load_pipeline
>>> detector = load_pipeline("models/orcahello-srkw-detector-v1", "cpu")
>>> dataset = Dataset.from_dict({"audio": ["clip1.wav", "clip2.flac"]}).cast_column("audio", Audio(decode=False))
>>> scored = score_dataset(dataset, detector)
>>> scored[0]["global_prediction"], scored[0]["global_confidence"]
```

A decoding `Audio()` column (the default) is read the same way: `score_dataset` casts it to `Audio(decode=False)`
first, so torchcodec (and the FFmpeg libraries it needs) is never required, and the numbers are the command line's
(each file's own samples at its own rate, not datasets' float and resampled copy). Already decoded rows work too
(`{"array", "sampling_rate"}` dicts, e.g. a column of arrays), their numbers then within float rounding.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

    from pipeline_orcahello import OrcaHelloAudioClassificationPipeline

# `warnings`: what the pipeline's result says is wrong with a row's audio (digital silence) or with the model (the
# synthetic stand-in weights), as every output of `orcahello detect` says it.
SCORE_COLUMNS = ("global_prediction", "global_confidence", "local_predictions", "local_confidences", "warnings")


def score_dataset(
    dataset: datasets.Dataset,
    pipe: OrcaHelloAudioClassificationPipeline,
    audio_column: str = "audio",
    batch_size: int = 8,
    map_batch_size: int = 8,
    **pipeline_kwargs: Any,
) -> datasets.Dataset:
    """
    Return `dataset` with the columns `global_prediction`, `global_confidence` (0-1, as every confidence),
    `local_predictions`, `local_confidences` (one per one-second row) and `warnings`
    (the result's: digital silence, the synthetic stand-in weights) added.

    Args:
        dataset (`datasets.Dataset`): the rows to score.
        pipe: an OrcaHello audio-classification pipeline (`orcahello.models.load_pipeline`, or the Hub's remote code).
        audio_column (`str`): the column holding the audio: `Audio(decode=False)` rows, decoded rows, or paths.
        batch_size (`int`): 2-second windows per forward pass, as `orcahello detect --batch-size`.
        map_batch_size (`int`): rows per `dataset.map` batch (how often results are written to the Arrow table).
        **pipeline_kwargs: decision parameters (`local_threshold`, `global_count_threshold`, `aggregation`...).

    Each recording is scored on its own, as the command line does, so every forward batch holds windows of one
    recording only and the numbers equal the command line's. A row that cannot be scored raises the pipeline's
    `AudioInputError` naming it.
    """
    pipeline_kwargs = {"batch_size": batch_size, **pipeline_kwargs}
    dataset = undecoded_audio(dataset, audio_column)

    def score_batch(batch):
        results = [pipe(audio, return_timestamps=True, **pipeline_kwargs) for audio in batch[audio_column]]
        return {column: [result[column] for result in results] for column in SCORE_COLUMNS}

    return dataset.map(
        score_batch,
        batched=True,
        batch_size=map_batch_size,
        # datasets fingerprints a map by pickling its function, here the whole model: name the result instead...
        new_fingerprint=_scoring_fingerprint(dataset, pipe, audio_column, pipeline_kwargs),
        # ...and never reuse a cached result: a model folder re-converted in place keeps its name.
        load_from_cache_file=False,
        desc="OrcaHello",
    )


def undecoded_audio(dataset: datasets.Dataset, audio_column: str) -> datasets.Dataset:
    """`dataset` with its `Audio` column (if it decodes) cast to `Audio(decode=False)`: rows become the files'
    `{"bytes", "path"}`, which the pipeline reads itself, and datasets never needs torchcodec to decode them."""
    from datasets import Audio

    feature = dataset.features.get(audio_column) if dataset.features is not None else None
    if isinstance(feature, Audio) and feature.decode:
        return dataset.cast_column(audio_column, Audio(decode=False))
    return dataset


def _scoring_fingerprint(dataset, pipe, audio_column, pipeline_kwargs):
    config = pipe.model.config
    identity = {
        "dataset": getattr(dataset, "_fingerprint", None),
        "model": pipe.model.name_or_path,
        "revision": getattr(config, "_commit_hash", None),
        "audio_column": audio_column,
        "parameters": {name: repr(value) for name, value in sorted(pipeline_kwargs.items())},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:16]
