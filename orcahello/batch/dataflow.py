# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The Ray Data pipeline of an `orcahello batch` job: the work rows (which partitions each featurization task reads)
and the dataset that turns them into window scores (CPU tasks featurize, model actors score).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .cluster import worker_runtime_env
from .featurize import featurize_partitions
from .model_cache import read_model_folder
from .scoring import WindowScorer

if TYPE_CHECKING:
    import ray.data

    from .partitions import RecordingState


def work_rows(states: Iterable[RecordingState]) -> list[dict[str, Any]]:
    """
    One row per featurization task: a recording and the partitions of it still to score (`first_windows`,
    `window_counts`, in window order). A sound file gives a row per partition (read from anywhere, they run in
    parallel). An HLS stream gives one row with all of them: it decodes forward from its first segment, so a task per
    partition would decode it from the start again each time (a long stream's work growing with the square of its
    partitions); one task decodes it once, holding the stream's compressed segments and the decoded block in hand.
    """
    rows: list[dict[str, Any]] = []
    for state in states:
        if state.error is not None:
            continue
        assert state.info is not None  # probed: a recording that could not be is failed above
        pending = [(first, count) for first, count in sorted(state.partitions.items()) if first not in state.done]
        groups = [pending] if "timeline" in state.info else [[partition] for partition in pending]
        for group in groups:
            if group:
                rows.append(
                    {
                        "source_index": state.source.index,
                        "source": state.source.source,
                        "first_windows": [first for first, _ in group],
                        "window_counts": [count for _, count in group],
                        "num_samples": state.info["num_samples"],
                    }
                )
    return rows


def scoring_dataset(
    work: list[dict[str, Any]],
    model: str,
    actor_device: str,
    num_workers: int,
    cpus_per_worker: float,
    batch_size: int,
    featurize_options: dict[str, Any],
) -> ray.data.Dataset:
    """
    The Ray Data pipeline: `work` rows -> featurized blocks (CPU tasks, `featurize_partitions` with
    `featurize_options`) -> window scores (`num_workers` `WindowScorer` actors on `actor_device`, `batch_size`
    windows per forward pass). `model` is a Hub name or a local folder, whose files go through the object store so
    that the workers need no access to the driver's disk.
    """
    import ray
    import ray.data

    actor_model: str | dict[str, Any] = model
    if os.path.isdir(model):
        actor_model = {"name": os.path.basename(os.path.normpath(model)), "files": ray.put(read_model_folder(model))}
    featurize: dict[str, Any]
    actor_resources: dict[str, Any]
    if actor_device == "cuda":
        featurize = {"num_cpus": 1, "compute": ray.data.TaskPoolStrategy()}
        actor_resources = {"num_gpus": 1, "num_cpus": 1}
    else:
        # On CPU the model takes ~95% of the time (about 90 ms a window on one core, against 5 ms to featurize
        # it): the model actors reserve the CPUs and featurization runs beside them, one task per actor at most.
        featurize = {"num_cpus": 0, "compute": ray.data.TaskPoolStrategy(size=num_workers)}
        actor_resources = {"num_cpus": cpus_per_worker}
    runtime_env = worker_runtime_env()
    return (
        ray.data.from_items(work, override_num_blocks=len(work))
        .map_batches(
            featurize_partitions,  # type: ignore[arg-type]  # Ray's annotation leaves out the fn_kwargs it takes
            batch_size=1,
            fn_kwargs=featurize_options,
            runtime_env=runtime_env,
            **featurize,
        )
        .map_batches(
            WindowScorer,
            batch_size=1,
            fn_constructor_kwargs={
                "model": actor_model,
                "device": actor_device,
                "batch_size": batch_size,
                "threads": cpus_per_worker,
            },
            compute=ray.data.ActorPoolStrategy(size=num_workers),
            runtime_env=runtime_env,
            **actor_resources,
        )
    )
