# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""The model stage of an `orcahello batch` job: `WindowScorer`, the Ray Data actor that scores featurized blocks."""

from typing import Any, cast

from .. import models
from .model_cache import materialize_model_folder


class WindowScorer:
    """
    A Ray Data model actor: loads the OrcaHello pipeline once and scores featurized blocks with the pipeline's own
    `score_features` (the piece its `score_windows` scores each batch with), `batch_size` windows per forward pass.
    One output row per window.
    """

    def __init__(self, model: str | dict[str, Any], device: str, batch_size: int, threads: int) -> None:
        import ray
        import torch

        from process_memory_orcahello import return_large_buffers_to_the_system

        if isinstance(model, dict):  # a local folder, sent through Ray's object store
            model = materialize_model_folder(model["name"], cast(dict[str, bytes], ray.get(model["files"])))
        # A process-wide allocator setting, made by the process that scores (this actor's worker), not by a library.
        return_large_buffers_to_the_system()
        if device == "cpu":
            # Ray caps a CPU actor's thread pools at its reserved CPUs; this says so to PyTorch and ONNX Runtime.
            torch.set_num_threads(threads)
        self.pipe = models.load_pipeline(model, device)
        self.batch_size = batch_size

    def __call__(self, batch):
        import numpy as np
        import torch

        columns: dict[str, list] = {
            name: [] for name in ("source_index", "partition_first_window", "window_index", "score")
        }
        columns.update(silent=[], error=[])
        for row in range(len(batch["source_index"])):
            source_index = int(batch["source_index"][row])
            partition = int(batch["partition_first_window"][row])
            error = str(batch["error"][row])
            features = np.asarray(batch["input_features"][row], dtype=np.float32)
            silent: np.ndarray | list[bool] = np.asarray(batch["silent"][row], dtype=bool)
            if error:
                windows, scores, silent = [-1], [float("nan")], [False]
            else:
                first = int(batch["first_window"][row])
                windows = list(range(first, first + features.shape[0]))
                scores = []
                for start in range(0, features.shape[0], self.batch_size):
                    chunk = torch.from_numpy(np.ascontiguousarray(features[start : start + self.batch_size]))
                    scores.extend(self.pipe.score_features(chunk).probabilities[:, 1].tolist())
            columns["source_index"].extend([source_index] * len(windows))
            columns["partition_first_window"].extend([partition] * len(windows))
            columns["window_index"].extend(windows)
            columns["score"].extend(scores)
            columns["silent"].extend(bool(flag) for flag in silent)
            columns["error"].extend([error] * len(windows))
        return {
            "source_index": np.array(columns["source_index"], dtype=np.int64),
            "partition_first_window": np.array(columns["partition_first_window"], dtype=np.int64),
            "window_index": np.array(columns["window_index"], dtype=np.int64),
            # float32: what the model computes; its float64 value is exactly the JSON's number.
            "score": np.array(columns["score"], dtype=np.float32),
            "silent": np.array(columns["silent"], dtype=bool),
            "error": np.array(columns["error"], dtype=object),
        }
