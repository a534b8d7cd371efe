# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
One run of `orcahello batch` (`BatchJob`, `run_batch`): the driver's side of the stages the package describes,
from the inputs to the run document.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from hls_timeline_orcahello import file_name_timeline, timeline_from_plain
from results_orcahello import DecisionParameters, build_file_result
from vocabulary_orcahello import SYNTHETIC_WEIGHTS_KEY, is_url

from .. import __version__, inputs, models, provenance, run_lock, runs, site_thresholds, writers
from ..progress import RunProgress
from .cluster import connect_ray, quiet_ray_data, worker_runtime_env
from .dataflow import scoring_dataset, work_rows
from .partitions import PartitionAssembly, RecordingState, alignment_batch_size, scores_identity, windows_per_block
from .settings import (
    DEFAULT_OUTPUT_DIR,
    FILES_TABLE,
    JSON_FOLDER,
    PARQUET_METADATA_KEY,
    PARTITION_FILE_PATTERN,
    PARTITION_FORMAT_VERSION,
    PARTITION_NAME_PATTERN,
    RUN_DOCUMENT,
    TABLE_FORMATS,
    WINDOWS_FOLDER,
    BatchError,
    BatchOptions,
    dataset_folder_name,
    require_scale_extra,
)
from .sources import Source, find_sources, plan_outputs, probe_source, start_utc_from_name
from .tables import (
    error_row,
    file_row,
    files_schema,
    partition_metadata,
    read_partition_scores,
    write_table_atomically,
    write_windows_table,
)

if TYPE_CHECKING:
    import numpy as np


@contextlib.contextmanager
def output_folder_lock(output_dir: str) -> Iterator[None]:
    """
    Hold the output folder's run lock (`orcahello.run_lock`, the one `detect` takes) for the job, or refuse at once
    with a clear message: two jobs writing one folder would delete each other's temporary files and partitions. The
    lock is the operating system's: a job that is killed releases it with its process, so nothing stale is left.
    """
    try:
        lock = run_lock.OutputFolderLock(output_dir, "orcahello batch").acquire()
    except run_lock.OutputFolderRefused as error:
        raise BatchError(f"another orcahello run is writing into {output_dir}: {error}") from None
    try:
        yield
    finally:
        lock.release()


class BatchJob:
    """One run of `orcahello batch`; `run()` does it all (see the module's description for the stages)."""

    # Known once the cluster is (`run_locked`, `choose_workers`).
    cluster: dict[str, Any] | None
    num_workers: int | None
    actor_device: str | None

    def __init__(
        self, options: BatchOptions, log: Callable[[str], None] | None = None, command: list[str] | None = None
    ) -> None:
        options.check()
        require_scale_extra()
        self.options = options
        self.command = command
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.started, self.started_at = time.monotonic(), provenance.now_iso()
        self.timing: dict[str, float] = {}
        self.counts = {"partitions_reused": 0, "partitions_scored": 0, "windows_scored": 0}
        self.output_dir = os.fspath(options.output_dir)

        try:
            self.site_table, table_source = runs.load_decision_table(options.site_thresholds, options.hydrophone_config)
        except site_thresholds.SiteThresholdsError as error:
            raise BatchError(str(error)) from None
        self.model = options.model or models.default_model()
        try:
            from feature_extraction_orcahello import OrcaHelloFeatureExtractor

            self.config = models.load_config(self.model)  # a mistyped folder, an unpinned Hub repo: said in one line
            self.feature_extractor = OrcaHelloFeatureExtractor.from_pretrained(
                self.model, **models.hub_options(self.model)
            )
        except models.ModelNotFoundError as error:
            raise BatchError(str(error)) from None
        except Exception as error:  # no Hub access, a broken config
            raise BatchError(f"cannot load the model {self.model!r}: {' '.join(str(error).split())}") from None
        self.model_info = provenance.describe_model_config(self.config, self.model)
        # The decision parameters as detect resolves them (model config < site table < options).
        try:
            self.parameters = provenance.scoring_parameters(options.scoring, self.config)
        except ValueError as error:
            raise BatchError(str(error)) from None
        self.window_seconds, self.hop_seconds = self.parameters["window_seconds"], self.parameters["hop_seconds"]
        # The rest of the inference preset (`configuration_orcahello.INFERENCE_PRESETS`): the parameters hold them
        # when they are not production's; the record every JSON gets holds them all.
        self.inference = provenance.inference_record(self.parameters, self.config)
        self.frontend_settings = {
            "whole_recording_frontend": self.inference["whole_recording_frontend"],
            "strict_segments": self.inference["strict_segments"],
            "model_sampling_rate": self.feature_extractor.sampling_rate,
        }
        self.scores_hash = scores_identity(self.model_info, self.parameters, self.feature_extractor)
        # Blocks and partitions are planned before the actors' device (and so a default batch size) is known.
        self.block_windows = windows_per_block(alignment_batch_size(options.batch_size))
        self.partition_windows = -(-options.partition_windows // self.block_windows) * self.block_windows
        self.batch_size = options.batch_size  # resolved by `choose_workers` when left to the device

        sources, self.input_problems = find_sources(options.inputs, options.manifests, recursive=options.recursive)
        run_identity = dict(self.parameters)
        if self.site_table is not None:  # as detect: the run's hash covers the table
            run_identity["site_thresholds"] = self.site_table
        self.run_settings = runs.RunSettings(
            parameters=self.parameters,
            batch_size=options.batch_size,  # resolved with the actors' device
            device=None,  # the actors' device, known once the cluster is
            formats=("json",),
            plot=False,
            overwrite=options.overwrite,
            model_info=self.model_info,
            run_hash=provenance.run_hash(run_identity, self.model_info),
            **table_source,
        )
        self.states = []
        for source in plan_outputs(sources):
            job = self.audio_job(source)
            settings = runs.settings_for_recording(
                job, self.run_settings, options.scoring, self.config, self.site_table
            )
            self.states.append(RecordingState(source=source, settings=settings))

    # -- paths ------------------------------------------------------------------------------------------------

    @staticmethod
    def audio_job(source: Source) -> inputs.AudioJob:
        return inputs.AudioJob(path=source.source, relative_path=source.relative_path, output_stem=source.output_stem)

    def inside_output_dir(self, path: str) -> str:
        """`path`, once checked to lie under the output folder (links resolved): no source's name can make the job
        write or delete anything elsewhere."""
        root = os.path.realpath(self.output_dir)
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            raise BatchError(f"refusing to write {path}: it is outside the output folder {self.output_dir}")
        return path

    def partition_folder(self, state: RecordingState) -> str:
        parts = [dataset_folder_name(part) for part in state.source.output_stem.split("/")]
        folder = os.path.join(self.output_dir, WINDOWS_FOLDER, *parts)
        return self.inside_output_dir(folder)

    def partition_path(self, state: RecordingState, first_window: int) -> str:
        return os.path.join(self.partition_folder(state), PARTITION_FILE_PATTERN.format(first_window=first_window))

    def json_path(self, state: RecordingState) -> str:
        stem = os.path.join(self.output_dir, JSON_FOLDER, *state.source.output_stem.split("/"))
        return self.inside_output_dir(writers.output_path(stem, "json"))

    def remove_partial_files(self) -> None:
        """What a killed run of this job was writing (never complete, never read): the temporary files beside this
        job's own outputs, and nothing else (a user's `x.tmp1` stays)."""
        outputs = [os.path.join(self.output_dir, name) for name in (FILES_TABLE, RUN_DOCUMENT)]
        outputs.append(os.path.join(self.output_dir, writers.COMBINED_RAVEN_TABLE))
        for state in self.states:
            stem = self.json_path(state)[: -len(writers.OUTPUT_SUFFIXES["json"])]
            outputs += [writers.output_path(stem, kind) for kind in ("json", *TABLE_FORMATS)]
        partial = [path for output in outputs for path in writers.partial_files_of(output)]
        for state in self.states:  # every partition size's files, as `finalize` removes those of other sizes
            partial += writers.partial_files_of(self.partition_path(state, 0), PARTITION_NAME_PATTERN)
        for path in partial:
            os.remove(path)

    def partition_files(self, state: RecordingState) -> list[str]:
        return glob.glob(os.path.join(glob.escape(self.partition_folder(state)), "part-*.parquet"))

    # -- the stages -------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run the job; returns its run document (also written to `orcahello_batch_run.json`)."""
        for given, reason in self.input_problems:
            self.log(f"ERROR {given}: {reason}")
        note = runs.standin_note(self.model, self.model_info)
        if note:
            self.log(note)
        os.makedirs(self.output_dir, exist_ok=True)
        with output_folder_lock(self.output_dir):
            self.remove_partial_files()
            return self.run_locked()

    def run_locked(self) -> dict[str, Any]:
        import ray

        to_probe = [state for state in self.states if not self.resume_without_probing(state)]
        if not to_probe and all(self.finished_before(state) for state in self.states):
            # Nothing to score, no JSON to rewrite: no Ray instance to start (tens of seconds) for nothing.
            self.cluster, self.num_workers, self.actor_device = None, 0, None
            self.finalize_finished()
            return self.write_run_outputs()
        connected = connect_ray(self.options.address, self.options.num_cpus)
        try:
            self.timing["ray_ready_s"] = round(time.monotonic() - self.started, 3)
            quiet_ray_data()
            self.choose_workers(ray.cluster_resources())
            self.probe(to_probe)
            self.finalize_finished()
            self.score()
        finally:
            if connected:
                ray.shutdown()
        return self.write_run_outputs()

    def finished_before(self, state: RecordingState) -> bool:
        """Every partition and the JSON of this recording were written by earlier runs, with these parameters."""
        if self.options.overwrite or not state.partitions or state.reused != set(state.partitions):
            return False
        return runs.load_finished_document(self.json_path(state), state.settings.run_hash) is not None

    def finalize_finished(self) -> None:
        for state in self.states:
            self.counts["partitions_reused"] += len(state.reused)
            if state.error is None and state.partitions and state.done == set(state.partitions):
                self.finalize(state)

    def choose_workers(self, resources: dict[str, float]) -> None:
        options = self.options
        self.cluster = {"cpus": float(resources.get("CPU", 0)), "gpus": int(resources.get("GPU", 0))}
        self.cluster["local_instance"] = not options.address
        if options.device == "cuda" and not self.cluster["gpus"]:
            raise BatchError("--device cuda was asked for but the Ray cluster has no GPU")
        gpu_actors = options.device == "cuda" or (options.device == "auto" and self.cluster["gpus"] > 0)
        self.actor_device = "cuda" if gpu_actors else "cpu"
        self.num_workers = options.num_workers
        if self.num_workers is None:
            if gpu_actors:
                self.num_workers = self.cluster["gpus"]
            else:
                self.num_workers = max(1, int(self.cluster["cpus"] // options.cpus_per_worker))
        unit = "GPU" if gpu_actors else "CPU"
        needed = self.num_workers * (1 if gpu_actors else options.cpus_per_worker)
        have = self.cluster["gpus"] if gpu_actors else self.cluster["cpus"]
        if needed > have and not options.address:
            # A fixed pool of actors that cannot all start would wait for them forever. (A cluster joined with
            # --address may be autoscaling: it gets the request and may grow.)
            raise BatchError(
                f"{self.num_workers} model actor(s) need {needed:g} {unit}(s); the Ray cluster has {have:g}"
            )
        if self.batch_size is None:
            self.batch_size = models.default_batch_size(self.actor_device)
        for settings in [self.run_settings] + [state.settings for state in self.states]:
            settings.device, settings.batch_size = self.actor_device, self.batch_size

    def previous_partitions(self, state: RecordingState) -> dict[int, dict[str, Any]]:
        """first window -> metadata of the partition files an earlier run wrote for this source with this model,
        frontend and windowing."""
        found: dict[int, dict[str, Any]] = {}
        if self.options.overwrite:
            return found
        for path in sorted(self.partition_files(state)):
            metadata = partition_metadata(path)
            if (
                metadata
                and metadata.get("format") == PARTITION_FORMAT_VERSION
                and metadata.get("scores_hash") == self.scores_hash
                and metadata.get("source") == state.source.source
                and path == self.partition_path(state, metadata["first_window"])
            ):
                found[metadata["first_window"]] = metadata
        return found

    def plan_partitions(self, state: RecordingState) -> None:
        assert state.info is not None  # probed
        total = state.info["num_windows"]
        state.partitions = {
            first: min(self.partition_windows, total - first) for first in range(0, total, self.partition_windows)
        }

    def reuse_partitions(self, state: RecordingState, previous: dict[int, dict[str, Any]]) -> None:
        for first, count in state.partitions.items():
            metadata = previous.get(first)
            if metadata and metadata["num_windows"] == count and metadata["recording"] == state.info:
                state.done.add(first)
                state.reused.add(first)

    def resume_without_probing(self, state: RecordingState) -> bool:
        """True when earlier runs wrote every partition of this recording: what they recorded about it is enough,
        and it is not opened at all."""
        from hls_playlist_orcahello import is_hls_input

        previous = self.previous_partitions(state)
        recordings = {json.dumps(metadata["recording"], sort_keys=True) for metadata in previous.values()}
        if len(recordings) != 1:
            return False
        state.info = next(iter(previous.values()))["recording"]
        if "timeline" not in state.info and is_hls_input(state.source.source):
            # Written before partitions kept an HLS stream's time line: probed again (and so scored again, its
            # recorded description being different), so that its JSON gets the gaps and times `detect` reports.
            state.info = None
            return False
        self.plan_partitions(state)
        self.reuse_partitions(state, previous)
        if state.done == set(state.partitions):
            return True
        state.info, state.partitions, state.done, state.reused = None, {}, set(), set()
        return False

    def probe(self, states: Sequence[RecordingState]) -> None:
        """Open each recording for its length: local files in driver threads (a header read each: faster than
        starting worker processes for it), URLs on the cluster (they must be downloaded to be read)."""
        import ray.data

        started = time.monotonic()
        rows = [{"source_index": state.source.index, "source": state.source.source} for state in states]
        local_rows = [row for row in rows if not is_url(row["source"])]
        remote_rows = [row for row in rows if is_url(row["source"])]
        windowing = {"window_seconds": self.window_seconds, "hop_seconds": self.hop_seconds, **self.frontend_settings}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="orcahello-probe") as executor:
            probed = list(executor.map(lambda row: probe_source(row, **windowing), local_rows))
        if remote_rows:
            probed += (
                ray.data.from_items(remote_rows, override_num_blocks=len(remote_rows))
                .map(probe_source, fn_kwargs=windowing, num_cpus=0.5, runtime_env=worker_runtime_env())  # type: ignore[arg-type]  # Ray's annotation leaves out fn_kwargs
                .take_all()
            )
        for row in probed:
            state = self.states[int(row["source_index"])]
            if row["error"]:
                self.fail(state, str(row["error"]))
                continue
            state.info = {key: int(row[key]) for key in ("sampling_rate", "num_samples", "num_channels", "num_windows")}
            start_utc = str(row["start_utc"]) or _isoformat(start_utc_from_name(state.source.source))
            state.info.update(window_seconds=self.window_seconds, hop_seconds=self.hop_seconds, start_utc=start_utc)
            if row["timeline"]:  # HLS: kept in every partition's metadata, so that a resumed job has it unprobed
                state.info["timeline"] = json.loads(str(row["timeline"]))
            self.plan_partitions(state)
            self.reuse_partitions(state, self.previous_partitions(state))
        self.timing["probe_s"] = round(time.monotonic() - started, 3)

    def fail(self, state: RecordingState, reason: str) -> None:
        if state.error is None:
            state.error = reason
            self.log(f"ERROR {state.source.source}: {reason}")

    def score(self) -> None:
        """Featurize and score every partition not done yet; write each partition as soon as all its windows are
        in, and each recording's JSON as soon as all its partitions are."""
        work = work_rows(self.states)
        if not work:
            return
        # Ray's core worker logs this, as an error, when Ray Data starts actors whose arguments (here the model
        # folder's files) sit in the object store: said once here so that nobody takes it for a failure.
        if os.path.isdir(self.model):
            self.log(
                'NOTE: Ray may log "Actor ... MapWorker(MapBatches(WindowScorer)) ... has constructor arguments in '
                "the object store and max_restarts > 0\": harmless, the job keeps the model's files there until it "
                "ends, so a restarted model actor finds them"
            )
        assembly = PartitionAssembly()
        # A bar on a terminal, a line every half minute in a job's log: the recordings' lengths are known here.
        progress_bar = RunProgress("OrcaHello batch", {"run": sum(sum(row["window_counts"]) for row in work)})
        started = time.monotonic()
        try:
            featurize_options = {
                "feature_extractor": self.feature_extractor,
                "block_windows": self.block_windows,
                "window_seconds": self.window_seconds,
                "hop_seconds": self.hop_seconds,
                "peak_normalize": self.inference["peak_normalize"],
                **self.frontend_settings,
            }
            # Chosen with the cluster (`choose_workers`) before anything is scored.
            assert self.actor_device is not None and self.num_workers is not None and self.batch_size is not None
            dataset = scoring_dataset(
                work, self.model, self.actor_device, self.num_workers, self.options.cpus_per_worker, self.batch_size,
                featurize_options,
            )  # fmt: skip
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                self.timing.setdefault("first_scores_s", round(time.monotonic() - started, 3))
                rows = zip(
                    batch["source_index"], batch["partition_first_window"], batch["window_index"],
                    batch["score"], batch["silent"], batch["error"],
                )  # fmt: skip
                for source_index, first, window_index, score, silent, error in rows:
                    state, first = self.states[int(source_index)], int(first)
                    if error:
                        self.fail(state, str(error))
                        continue
                    if first in state.done:
                        continue  # a retried task's copy of a partition already written
                    is_new, complete = assembly.add(
                        (state.source.index, first), state.partitions[first], int(window_index) - first, score, silent
                    )
                    if is_new:
                        self.counts["windows_scored"] += 1
                        progress_bar.update(1)
                    if complete is not None:
                        self.write_partition(state, first, *complete)
        except BatchError:
            raise
        except Exception as error:  # an actor that cannot load the model, a lost node...
            raise BatchError(f"the Ray job failed: {' '.join(str(error).split())[:2000]}") from None
        finally:
            progress_bar.close()
        finished = time.monotonic()
        self.timing["scoring_s"] = round(finished - started, 3)
        # The whole stage, the actors' start included. (A rate from the first result on would overstate: Ray Data
        # hands results over in bundles, the first one late; benchmarks/batch_throughput.py measures steady rates.)
        self.timing["windows_per_s"] = round(self.counts["windows_scored"] / (finished - started), 2)
        for state in self.states:
            if state.error is None and state.done != set(state.partitions):
                self.fail(state, "some of its windows were never scored (the job lost them)")

    def write_partition(self, state: RecordingState, first: int, scores: np.ndarray, silent: np.ndarray) -> None:
        assert state.info is not None  # probed before it was scored
        metadata = {
            "format": PARTITION_FORMAT_VERSION,
            "scores_hash": self.scores_hash,
            "source": state.source.source,
            "first_window": first,
            "num_windows": len(scores),
            "partition_windows": self.partition_windows,
            "recording": state.info,
            "model": self.model_info,
            "version": __version__,
        }  # no wall-clock time: a job killed and run again writes the same bytes (the run document has the times)
        write_windows_table(
            self.partition_path(state, first), state.source.source, first, scores, silent, state.info, metadata
        )
        self.counts["partitions_scored"] += 1
        state.done.add(first)
        if state.error is None and state.done == set(state.partitions):
            self.finalize(state)

    def finalize(self, state: RecordingState) -> None:
        """All partitions of `state` are on disk: remove those of other partition sizes, and write its JSON (or keep
        the one an earlier run wrote, when nothing was scored again and the decision parameters are the same)."""
        import numpy as np

        planned = {self.partition_path(state, first) for first in state.partitions}
        for path in self.partition_files(state):
            if path not in planned:
                os.remove(path)
        score_parts, silent_parts = [], []
        for first in sorted(state.partitions):
            partition_scores, partition_silent = read_partition_scores(self.partition_path(state, first))
            score_parts.append(partition_scores)
            silent_parts.append(partition_silent)
        scores, silent = np.concatenate(score_parts), np.concatenate(silent_parts)
        state.silent_windows = int(silent.sum())
        previous = None
        if not self.options.overwrite:
            previous = runs.load_finished_document(self.json_path(state), state.settings.run_hash)
        if previous is not None and state.reused == set(state.partitions):
            state.document = previous
            self.write_tables(state, only_missing=True)
            return
        assert state.info is not None  # probed before its partitions were written
        info = {key: state.info[key] for key in ("sampling_rate", "num_samples", "num_channels", "num_windows")}
        info.update(name=state.source.source, window_seconds=self.window_seconds, hop_seconds=self.hop_seconds)
        # An HLS stream's time line (start, UTC anchors, gaps, their warnings), as the pipeline hands it to
        # `build_file_result` in `orcahello detect`; None for other recordings.
        info["timeline"] = timeline_from_plain(state.info.get("timeline")) or file_name_timeline(state.source.source)
        inference = provenance.inference_record(state.settings.parameters, self.config)
        # The decision as detect makes it: the preset's smoothing, the recording's (site's) parameters and floor.
        decision = DecisionParameters.from_mapping({**inference, **state.settings.parameters})
        result = build_file_result(
            info, scores, state.silent_windows, decision=decision, return_timestamps=True, inference=inference
        )
        assert isinstance(result, dict)  # with return_timestamps, the full result
        state.document = runs.build_document(self.audio_job(state.source), result, state.settings)
        # The one field of `orcahello detect`'s document that changes from run to run: left out, so that a job
        # killed and run again writes the same bytes as one that was not (the run document has the times).
        state.document.pop("created_at", None)
        writers.write_json(self.json_path(state), state.document)
        self.write_tables(state)
        for warning in state.document["warnings"]:
            self.log(f"WARNING {state.source.source}: {warning}")

    def write_tables(self, state: RecordingState, only_missing: bool = False) -> None:
        """The recording's scoring CSV and Raven selection table beside its JSON, as `orcahello detect` writes them."""
        stem = self.json_path(state)[: -len(writers.OUTPUT_SUFFIXES["json"])]
        assert state.document is not None  # scored, or resumed from its JSON, before its tables are written
        writers.write_recording_tables(stem, state.document, TABLE_FORMATS, state.source.source, only_missing)

    def write_run_outputs(self) -> dict[str, Any]:
        import pyarrow as pa

        rows = [file_row(state) for state in self.states]
        rows += [error_row(given, reason) for given, reason in self.input_problems]
        files_table = pa.Table.from_pylist(rows, schema=files_schema())
        # The model (with `synthetic_weights` for the stand-in) in the table itself, as in every partition file.
        files_table = files_table.replace_schema_metadata(
            {PARQUET_METADATA_KEY: json.dumps({"model": self.model_info}, sort_keys=True)}
        )
        write_table_atomically(os.path.join(self.output_dir, FILES_TABLE), files_table)
        # One Raven table over every recording scored, in the order given, as `orcahello detect` writes it.
        scored = [
            (state, state.document) for state in self.states if state.error is None and state.document is not None
        ]
        writers.write_combined_raven_table(
            os.path.join(self.output_dir, writers.COMBINED_RAVEN_TABLE),
            [
                (state.source.relative_path, document["duration_s"], document["detections"],
                 writers.begin_path(state.source.source))
                for state, document in scored
            ],
            synthetic_weights=bool(self.model_info.get(SYNTHETIC_WEIGHTS_KEY)),
        )  # fmt: skip
        failed = sum(state.error is not None for state in self.states)
        options = self.options.record()
        options.update(output_dir=os.path.abspath(self.output_dir), model=self.model, num_workers=self.num_workers,
                       resolved_device=self.actor_device, partition_windows=self.partition_windows,
                       batch_size=self.batch_size)  # fmt: skip
        run_document = {
            "version": __version__,
            "model": self.model_info,
            "scores_hash": self.scores_hash,
            "run_hash": self.run_settings.run_hash,
            "parameters": self.parameters,
            "inference": self.inference,  # the preset and every field it resolves to
            **runs.table_records(self.run_settings, self.site_table),
            "options": options,
            "cluster": self.cluster,
            "command": self.command,
            "started_at": self.started_at,
            "finished_at": provenance.now_iso(),
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "timing": self.timing,
            "files": {
                "found": len(self.states),
                "ok": len(self.states) - failed,
                "failed": failed,
                "inputs_without_audio": len(self.input_problems),
            },
            "partitions": {"reused": self.counts["partitions_reused"], "scored": self.counts["partitions_scored"]},
            "windows_scored": self.counts["windows_scored"],
        }
        writers.write_json(os.path.join(self.output_dir, RUN_DOCUMENT), run_document)
        return run_document


def run_batch(
    inputs: Sequence[str] = (),
    output_dir: str = DEFAULT_OUTPUT_DIR,
    log: Callable[[str], None] | None = None,
    command: list[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """
    Run `orcahello batch` from Python: `inputs` (paths, folders, globs, URLs) into `output_dir`, with the command's
    options as keyword arguments by their command-line names (`BatchOptions.from_keywords`: `manifests`,
    `recursive`, `model`, `address`, `num_cpus`, `num_workers`, `cpus_per_worker`, `device`, `batch_size`,
    `partition_windows`, `site_thresholds`, `overwrite`, and the preset and decision options, `preset`, `threshold`,
    ...). Returns the run document (`orcahello_batch_run.json`); `run_job` does the same with a `BatchOptions`.
    """
    batch_options = BatchOptions.from_keywords(inputs=tuple(inputs), output_dir=os.fspath(output_dir), **options)
    return run_job(batch_options, log=log, command=command)


def run_job(
    options: BatchOptions, log: Callable[[str], None] | None = None, command: list[str] | None = None
) -> dict[str, Any]:
    """
    Run the job `options` describe; returns its run document (`orcahello_batch_run.json`).

    Uses the calling process's Ray connection when there is one, else joins `options.address` or starts a local
    instance of `options.num_cpus` CPUs (and stops what it started). Raises `BatchError` when nothing can run; a
    recording that cannot be scored is reported through `log` (default: a line on stderr), counted as failed, and
    never stops the job. `command` is recorded in the run document.
    """
    return BatchJob(options, log=log, command=command).run()


def _isoformat(moment):
    return moment.isoformat() if moment is not None else ""
