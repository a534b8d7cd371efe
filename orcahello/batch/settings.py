# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""What an `orcahello batch` job can be told (`BatchOptions`), its one-line error, and the names of its outputs."""

import dataclasses

SCALE_EXTRA_HINT = 'pip install "orcahello-srkw-detector[scale]"'
DEFAULT_OUTPUT_DIR = "orcahello_batch_results"
# About ten minutes of audio at the default 1-second hop: the unit of resuming, so a killed job loses at most that
# much work per running task; big enough that a one-minute recording is one partition (one file to write).
DEFAULT_PARTITION_WINDOWS = 640
WINDOWS_FOLDER = "windows"
JSON_FOLDER = "json"
FILES_TABLE = "files.parquet"
RUN_DOCUMENT = "orcahello_batch_run.json"
PARTITION_FILE_PATTERN = "part-{first_window:09d}.parquet"
PARTITION_NAME_PATTERN = r"part-[0-9]{9}\.parquet"
PARQUET_METADATA_KEY = b"orcahello"
PARTITION_FORMAT_VERSION = 1


class BatchError(RuntimeError):
    """The job cannot run at all (Ray missing, the model does not load, a bad option); one line for the user."""


def require_scale_extra():
    """Import Ray (with Ray Data) and pyarrow, or say in one line how to install them."""
    try:
        import pyarrow  # noqa: F401
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as error:
        raise BatchError(
            f"orcahello batch needs Ray Data and pyarrow ({error.name or error} is missing): {SCALE_EXTRA_HINT}"
        ) from None


@dataclasses.dataclass
class BatchOptions:
    """Everything `orcahello batch` can be told (see `run_batch`)."""

    inputs: tuple = ()
    output_dir: str = DEFAULT_OUTPUT_DIR
    manifests: tuple = ()
    recursive: bool = False
    model: str = None
    address: str = None
    num_cpus: int = None
    num_workers: int = None
    cpus_per_worker: int = 1
    device: str = "auto"
    # Windows per forward pass; None: `models.default_batch_size` of the model actors' device (8 on CPU, 32 on GPU).
    batch_size: int = None
    partition_windows: int = DEFAULT_PARTITION_WINDOWS
    threshold: float = None
    min_positive_seconds: int = None
    aggregation: str = None
    min_global_confidence: float = None
    preset: str = None
    site_thresholds: str = None
    overwrite: bool = False

    def check(self):
        """Raise `BatchError` naming the first option that is out of range."""
        if self.address and self.num_cpus:
            raise BatchError("--num-cpus sizes a local Ray instance; a cluster given with --address has its own CPUs")
        if self.device not in ("auto", "cpu", "cuda"):
            raise BatchError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.threshold is not None and not (isinstance(self.threshold, (int, float)) and 0 <= self.threshold <= 1):
            raise BatchError(f"threshold must be a number from 0 to 1, got {self.threshold!r}")
        if self.min_positive_seconds is not None and (
            not isinstance(self.min_positive_seconds, int) or isinstance(self.min_positive_seconds, bool)
            or self.min_positive_seconds < 0
        ):  # fmt: skip
            raise BatchError(
                f"min_positive_seconds must be a whole number of at least 0, got {self.min_positive_seconds!r}"
            )
        for name in ("batch_size", "partition_windows", "cpus_per_worker", "num_workers", "num_cpus"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise BatchError(f"{name} must be a whole number of at least 1, got {value!r}")
