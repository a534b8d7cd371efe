# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""What an `orcahello batch` job can be told (`BatchOptions`), its one-line error, and the names of its outputs."""

import dataclasses
from typing import Any

from ..provenance import DECISION_OPTIONS, ScoringOptions
from ..upstream_config import HydrophoneConfig

SCALE_EXTRA_HINT = 'pip install "orcahello-srkw-detector[scale]"'
DEFAULT_OUTPUT_DIR = "orcahello_batch_results"
# About ten minutes of audio at the default 1-second hop: the unit of resuming, so a killed job loses at most that
# much work per running task; big enough that a one-minute recording is one partition (one file to write).
DEFAULT_PARTITION_WINDOWS = 640
WINDOWS_FOLDER = "windows"
# pyarrow.dataset and pandas skip every path part that starts with "." or "_" (hidden and metadata files): the
# windows folder's parts, which copy the recordings' paths, have such a first character percent-encoded instead, so
# that `pyarrow.dataset.dataset("results/windows")` reads every recording's windows.
DATASET_IGNORED_PREFIXES = (".", "_")


def dataset_folder_name(part: str) -> str:
    """`part` of a recording's path as a folder of the windows table: `.x` -> `%2Ex`, `_x` -> `%5Fx`, `%` -> `%25`
    (so that no two parts meet), anything else as it is."""
    part = part.replace("%", "%25")
    if part.startswith(DATASET_IGNORED_PREFIXES):
        return f"%{ord(part[0]):02X}{part[1:]}"
    return part


JSON_FOLDER = "json"
# The tables written beside each recording's JSON, as `orcahello detect` writes them (bioacoustics tools read these).
TABLE_FORMATS = ("csv", "raven")
FILES_TABLE = "files.parquet"
RUN_DOCUMENT = "orcahello_batch_run.json"
PARTITION_FILE_PATTERN = "part-{first_window:09d}.parquet"
PARTITION_NAME_PATTERN = r"part-[0-9]{9}\.parquet"
PARQUET_METADATA_KEY = b"orcahello"
# 2: the windows' columns in the outputs' vocabulary (`file`, `start`, `end`, `score`; 1 had `recording`, `start_s`,
# `end_s`, `p_positive`): a partition of format 1 is scored again rather than read.
PARTITION_FORMAT_VERSION = 2


class BatchError(RuntimeError):
    """The job cannot run at all (Ray missing, the model does not load, a bad option); one line for the user."""


def require_scale_extra() -> None:
    """Import Ray (with Ray Data) and pyarrow, or say in one line how to install them."""
    try:
        import pyarrow  # noqa: F401
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as error:
        raise BatchError(
            f"orcahello batch needs Ray Data and pyarrow ({error.name or error} is missing): {SCALE_EXTRA_HINT}"
        ) from None


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """
    Everything `orcahello batch` can be told (see `run_batch`).

    Args:
        inputs (`tuple[str, ...]`): paths, folders, glob patterns or http(s) URLs of recordings.
        output_dir (`str`): where the Parquet tables and JSONs go, on the driver's machine.
        manifests (`tuple[str, ...]`): text files listing one recording (path or URL) per line.
        recursive (`bool`): also search the subfolders of folders, and let `**` in patterns cross folders.
        model (`str`, *optional*): a model folder or Hub id; None: `models.default_model()`.
        address (`str`, *optional*): the Ray cluster to join (`auto`, or its head's HOST:PORT); None: a local one.
        num_cpus (`int`, *optional*): CPUs of the local Ray instance; None: this machine's.
        num_workers (`int`, *optional*): model actors; None: one per GPU, else one per `cpus_per_worker` CPUs.
        cpus_per_worker (`int`): CPUs (and threads) each CPU model actor reserves.
        device (`str`): `auto`, `cpu` or `cuda`: where the model actors run (auto: GPUs when the cluster has any).
        batch_size (`int`, *optional*): windows per forward pass; None: `models.default_batch_size` of the actors'
            device (8 on CPU, 32 on GPU).
        partition_windows (`int`): windows per partition, the unit of work and of resuming.
        scoring (`provenance.ScoringOptions`): the preset and the decision fields set for the whole job.
        site_thresholds (`str`, *optional*): a per-site table of decision parameters (`orcahello.site_thresholds`).
        hydrophone_config (`upstream_config.HydrophoneConfig`, *optional*): upstream's hydrophone config, used as
            a site table is (`orcahello.upstream_config`; not with `site_thresholds`).
        overwrite (`bool`): ignore what earlier runs wrote.
    """

    inputs: tuple[str, ...] = ()
    output_dir: str = DEFAULT_OUTPUT_DIR
    manifests: tuple[str, ...] = ()
    recursive: bool = False
    model: str | None = None
    address: str | None = None
    num_cpus: int | None = None
    num_workers: int | None = None
    cpus_per_worker: int = 1
    device: str = "auto"
    batch_size: int | None = None
    partition_windows: int = DEFAULT_PARTITION_WINDOWS
    scoring: ScoringOptions = dataclasses.field(default_factory=ScoringOptions)
    site_thresholds: str | None = None
    hydrophone_config: HydrophoneConfig | None = None
    overwrite: bool = False

    @classmethod
    def from_keywords(cls, **options: Any) -> "BatchOptions":
        """
        The options as `run_batch` takes them: this class's fields, with the scoring options by their command-line
        names (`preset`, `threshold`, `min_positive_seconds`, ...: `provenance.DECISION_OPTIONS`) rather than as
        `scoring`. Raises `BatchError` naming an unknown or out-of-range one.
        """
        scoring_names = {"preset", *DECISION_OPTIONS}
        fields = {field.name for field in dataclasses.fields(cls)} - {"scoring"}
        unknown = sorted(set(options) - fields - scoring_names)
        if unknown:
            raise BatchError(f"unknown option(s) {', '.join(unknown)}")
        scoring = {name: options.pop(name) for name in scoring_names & set(options)}
        for name in ("inputs", "manifests"):
            if name in options:
                options[name] = tuple(options[name])
        try:
            return cls(scoring=ScoringOptions.from_options(**scoring), **options)
        except ValueError as error:
            raise BatchError(str(error)) from None

    def record(self) -> dict[str, Any]:
        """The options as the run document records them: by their command-line names, the scoring ones included."""
        fields = [
            field.name for field in dataclasses.fields(self) if field.name not in ("scoring", "hydrophone_config")
        ]
        hydrophone_config = None if self.hydrophone_config is None else self.hydrophone_config.path
        return {
            **{name: getattr(self, name) for name in fields},
            "hydrophone_config": hydrophone_config,
            **self.scoring.record(),
        }

    def check(self) -> None:
        """Raise `BatchError` naming the first option that is out of range."""
        if self.address and self.num_cpus:
            raise BatchError("--num-cpus sizes a local Ray instance; a cluster given with --address has its own CPUs")
        if self.device not in ("auto", "cpu", "cuda"):
            raise BatchError(f"device must be auto, cpu or cuda, got {self.device!r}")
        for name in ("batch_size", "partition_windows", "cpus_per_worker", "num_workers", "num_cpus"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise BatchError(f"{name} must be a whole number of at least 1, got {value!r}")
