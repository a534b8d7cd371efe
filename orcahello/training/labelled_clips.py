# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Labelled clips for fine-tuning, as `Trainer` inputs: find them ([`find_clips`]: a `positive/`/`negative/` folder
tree or a saved `datasets.Dataset`), featurize the first 2-second window of each with the model's own feature
extractor ([`featurize_clips`]), and serve the spectrograms with fastai_audio's frequency masking on the training
split ([`FrequencyMask`], [`SpectrogramDataset`]). `finetune.py`'s docstring says why each choice was made.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from audio_orcahello import AudioInputError, open_recording
from vocabulary_orcahello import is_audio_file_name

from . import FASTAI_AUDIO_FREQUENCY_MASK_ROWS

if TYPE_CHECKING:
    import numpy as np

    from feature_extraction_orcahello import OrcaHelloFeatureExtractor

# A labelled clip: its name in messages, its source (a path, or a dataset row's `{"bytes", "path"}`), its label.
Clip = tuple[str, Any, int]

LABELS = {"negative": 0, "positive": 1}
# Windows featurized together: vectorizes resampling and STFTs without holding a whole data set of audio at once.
FEATURIZE_BLOCK_SIZE = 64
MAX_LISTED_PROBLEMS = 10


class TrainingDataError(ValueError):
    """Training or evaluation data that cannot be used: wrong layout, unreadable or too short clips, one class."""


def is_audio_file(name: str) -> bool:
    """Whether a file name is a clip to train on: an audio suffix, and not a hidden file."""
    return is_audio_file_name(name)


def is_saved_dataset(path: str) -> bool:
    """Whether `path` is a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    return any(
        os.path.isfile(os.path.join(path, name)) for name in ("state.json", "dataset_info.json", "dataset_dict.json")
    )


def clips_from_folder(root: str) -> list[Clip]:
    """`[(name, path, label)]` for every audio file under `root/positive` and `root/negative`, sorted."""
    clips = []
    for class_name, label in LABELS.items():
        class_folder = os.path.join(root, class_name)
        for directory, subdirectories, names in os.walk(class_folder):
            subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
            for name in sorted(names):
                if is_audio_file(name):
                    path = os.path.join(directory, name)
                    clips.append((path, path, label))
    return clips


def clips_from_saved_dataset(path: str) -> list[Clip]:
    """`[(name, {"bytes", "path"}, label)]` for the rows of a `datasets.Dataset` saved with `save_to_disk`."""
    import datasets

    dataset = datasets.load_from_disk(path)
    if isinstance(dataset, datasets.DatasetDict):
        raise TrainingDataError(
            f"{path} holds a DatasetDict with splits {sorted(dataset)}: pass one split's folder, e.g. "
            f"{os.path.join(path, min(dataset))}"
        )
    audio_columns = [name for name, feature in dataset.features.items() if isinstance(feature, datasets.Audio)]
    if not audio_columns:
        raise TrainingDataError(f"{path}: the dataset has no Audio column (columns: {dataset.column_names})")
    if "label" not in dataset.column_names:
        raise TrainingDataError(f"{path}: the dataset has no 'label' column (columns: {dataset.column_names})")
    audio_column = audio_columns[0]
    # decode=False: the rows' {"bytes", "path"} as stored. Decoding through datasets needs torchcodec; the pipeline's
    # reader (soundfile) decodes them exactly as it decodes files at inference.
    dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))

    label_feature = dataset.features["label"]
    remap = None
    if isinstance(label_feature, datasets.ClassLabel):
        names = [name.lower() for name in label_feature.names]
        if set(LABELS) <= set(names):
            remap = {names.index(name): label for name, label in LABELS.items()}
    clips = []
    for index, row in enumerate(dataset.select_columns([audio_column, "label"])):
        audio, label = row[audio_column], row["label"]
        label = remap.get(label, label) if remap is not None else label
        if isinstance(label, bool) or label not in (0, 1):
            raise TrainingDataError(f"{path}: row {index} has label {row['label']!r}; labels must be 0 or 1")
        name = f"{path}[{index}]" + (f" ({audio['path']})" if audio.get("path") else "")
        clips.append((name, audio, int(label)))
    return clips


def find_clips(path: str) -> list[Clip]:
    """The labelled clips of a `--train`/`--eval` argument: a positive/negative folder tree or a saved dataset."""
    if not os.path.isdir(path):
        raise TrainingDataError(f"{path}: no such folder")
    if is_saved_dataset(path):
        clips = clips_from_saved_dataset(path)
    elif os.path.isdir(os.path.join(path, "positive")) or os.path.isdir(os.path.join(path, "negative")):
        clips = clips_from_folder(path)
    else:
        raise TrainingDataError(
            f"{path}: expected a folder with positive/ and negative/ subfolders of clips, or a datasets.Dataset "
            f"saved with save_to_disk"
        )
    counts = {name: sum(1 for clip in clips if clip[2] == label) for name, label in LABELS.items()}
    missing = [name for name, count in counts.items() if count == 0]
    if missing:
        raise TrainingDataError(
            f"{path}: no {' and no '.join(missing)} clips ({counts['positive']} positive, {counts['negative']} "
            f"negative); both classes are needed"
        )
    return clips


def read_first_window(source: Any, window_seconds: float) -> tuple[np.ndarray, int, bool]:
    """
    The first `window_seconds` of a clip, read as the pipeline reads recordings: `(samples (channels, n),
    sampling_rate, whether the clip is longer than the window)`.
    """
    recording = open_recording(source)
    try:
        window_samples = int(round(window_seconds * recording.sampling_rate))
        if recording.num_samples < window_samples:
            raise AudioInputError(
                f"{recording.duration_seconds:.3f} s is shorter than the model's {window_seconds:g}-second window "
                f"(the pipeline never scores partial windows: cut or drop this clip)"
            )
        return recording.read(0, window_samples), recording.sampling_rate, recording.num_samples > window_samples
    finally:
        recording.close()


def featurize_clips(
    clips: Sequence[Clip], feature_extractor: OrcaHelloFeatureExtractor, window_seconds: float
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """
    Spectrograms `(num_clips, 1, 256, 312)` (float32) and labels `(num_clips,)` (int64) of `clips`, plus the number
    of clips longer than the window (only their first window is used). Every unusable clip is reported in one
    `TrainingDataError`.
    """
    features: list[Any] = [None] * len(clips)  # every slot is filled below, or the clip reported as a problem
    problems, longer = [], 0
    pending: dict[
        int, list[tuple[int, np.ndarray]]
    ] = {}  # sampling rate -> [(clip index, window)]: windows of one rate are featurized together

    def flush(rate):
        indices, windows = zip(*pending.pop(rate))
        batch = feature_extractor(list(windows), sampling_rate=rate, return_tensors="pt")["input_features"]
        for index, spectrogram in zip(indices, batch):
            features[index] = spectrogram

    for index, (name, source, _) in enumerate(clips):
        try:
            window, rate, is_longer = read_first_window(source, window_seconds)
        except AudioInputError as error:
            # The reader's messages start with the file's path; rows of a dataset are named by their index.
            message = str(error)
            problems.append(message if message.startswith(str(name)) else f"{name}: {message}")
            continue
        longer += is_longer
        pending.setdefault(rate, []).append((index, window))
        if len(pending[rate]) >= FEATURIZE_BLOCK_SIZE:
            flush(rate)
    for rate in list(pending):
        flush(rate)
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED_PROBLEMS])
        more = f"\n  ... and {len(problems) - MAX_LISTED_PROBLEMS} more" if len(problems) > MAX_LISTED_PROBLEMS else ""
        raise TrainingDataError(f"{len(problems)} of {len(clips)} clips cannot be used:\n  {listed}{more}")
    labels = torch.tensor([label for _, _, label in clips], dtype=torch.long)
    return torch.stack(features), labels, longer


class FrequencyMask:
    """
    fastai_audio's frequency masking (`tfm_mask_frequency`, SpecAugment): one band of `width` mel rows at a uniformly
    random position is set to the spectrogram's mean. `width` is drawn uniformly from `[min_bins, max_bins]`;
    fastai_audio 0.1 always used 30 (`min_bins == max_bins == 30`).
    """

    def __init__(self, max_bins: int = FASTAI_AUDIO_FREQUENCY_MASK_ROWS, min_bins: int | None = None) -> None:
        min_bins = max_bins if min_bins is None else min_bins
        if not 0 <= min_bins <= max_bins:
            raise ValueError(f"frequency mask widths need 0 <= min_bins <= max_bins, got {min_bins} and {max_bins}")
        self.max_bins = max_bins
        self.min_bins = min_bins

    def __call__(self, spectrogram):
        """`spectrogram`: `(channels, n_mels, frames)`; returns a masked copy (the input is never changed)."""
        num_rows = spectrogram.shape[-2]
        width = int(torch.randint(self.min_bins, min(self.max_bins, num_rows) + 1, ()).item())
        if width == 0:
            return spectrogram
        start = int(torch.randint(0, num_rows - width + 1, ()).item())
        masked = spectrogram.clone()
        masked[..., start : start + width, :] = spectrogram.mean()
        return masked

    def __repr__(self):
        return f"FrequencyMask(min_bins={self.min_bins}, max_bins={self.max_bins})"


class SpectrogramDataset(torch.utils.data.Dataset):
    """Precomputed spectrograms and labels as `Trainer` inputs, with an optional augmentation of the spectrograms."""

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.features = features
        self.labels = labels
        self.augment = augment

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        spectrogram = self.features[index]
        if self.augment is not None:
            spectrogram = self.augment(spectrogram)
        return {"input_features": spectrogram, "labels": self.labels[index]}
