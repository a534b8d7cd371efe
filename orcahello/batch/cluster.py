# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""The Ray side of an `orcahello batch` job: joining or starting a cluster, quietening Ray Data, the workers' imports."""

import logging
import os
from typing import Any

import vocabulary_orcahello

from .settings import BatchError


def available_cores() -> int:
    """The CPUs this process may run on (a local Ray instance's default size)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_runtime_env() -> dict[str, Any]:
    """
    Workers import this package's modules (orcahello, and the flat audio_orcahello, pipeline_orcahello...) to run
    the stages. Where the package is
    not installed but imported from a checkout, they find it through PYTHONPATH; on a cluster whose machines do not
    share this folder, install the package on every machine instead.
    """
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds orcahello/
    folders = [package_parent, os.path.dirname(os.path.abspath(vocabulary_orcahello.__file__))]
    existing = os.environ.get("PYTHONPATH", "")
    paths = list(dict.fromkeys(folders + ([existing] if existing else [])))
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}


def connect_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at `address`, or start a local Ray instance on `num_cpus` CPUs (default: this machine's
    cores); nothing when this process is connected already. Returns True when this call connected (and so the job
    should disconnect, which also stops a local instance it started)."""
    import ray

    if ray.is_initialized():
        return False
    # Ray reports usage statistics to its developers unless told not to; a detector must not phone home unasked.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    # Ray says on every start that token authentication is on (its default for local instances): it stays on, and
    # the line is left out.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(address="local", num_cpus=num_cpus or available_cores(), include_dashboard=False, **options)
    except Exception as error:  # no cluster at that address, a version mismatch...
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise BatchError(f"cannot start or join {where}: {' '.join(str(error).split())}") from None
    return True


def quiet_ray_data() -> None:
    """Ray Data's progress bars and execution logs would drown the job's own lines (one per failed recording)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray").setLevel(logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # ...which says, as a warning, that its progress bars are off: this job has its own.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
