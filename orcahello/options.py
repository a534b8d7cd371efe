# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The options of the `orcahello` commands: their value types (argparse `type=` callables, `orcahello.option_values`); the options that several
commands take with one meaning (`--model`, `--device`, `--batch-size`, the decision options, ...), each defined once
in `SHARED_OPTIONS` and handed to a command's parser by `shared_options` (argparse `parents=`); and each command's
own options (`add_<command>_options`, with the defaults of the command's module; detect's are in `orcahello.cli`,
the only importer of `orcahello.detect`). `orcahello.cli` puts them together into the command line; only it imports
this module: below it, options are typed dataclasses.
"""

import argparse
import os
from typing import Any

from vocabulary_orcahello import (
    AGGREGATION_STRATEGIES,
    DEFAULT_BATCH_SIZE,
    ENGINES,
    HUB_MODEL_ID,
    INFERENCE_PRESETS,
)

from . import adapt, batch, calibrate, embed, evaluate, live, models, search, writers
from .option_values import (
    batch_size,
    non_negative_integer,
    parse_formats,
    positive_float,
    positive_integer,
    preset_name,
    probability,
    unit_fraction,
    window_query,
)
from .provenance import DECISION_OPTIONS
from .training import finetune

# The options several commands take, each with one meaning wherever it is given: a command's parser gets those it
# takes from `shared_options`. (`orcahello batch` has its own --device, for a Ray cluster, and --batch-size.)
SHARED_OPTIONS: dict[str, dict[str, Any]] = {
    "--model": dict(
        metavar="DIR_OR_REPO",
        default=None,
        help=f"model folder or Hub id (default: ${models.MODEL_ENVIRONMENT_VARIABLE}, else models/ from "
        f"scripts/fetch_model.py, else {HUB_MODEL_ID})",
    ),
    "--device": dict(choices=models.DEVICES, default="auto", help="default: auto"),
    "--batch-size": dict(
        metavar="N",
        type=batch_size,
        default=None,  # models.default_batch_size of the device the model runs on
        help=f"windows per forward pass (default: {DEFAULT_BATCH_SIZE['cpu']} on CPU, "
        f"{DEFAULT_BATCH_SIZE['other']} on a GPU)",
    ),
    "--engine": dict(
        choices=ENGINES,
        default="auto",
        help="what computes the model (default: auto, i.e. OpenVINO on CPU when installed, PyTorch on GPUs); the "
        "engines agree to ~1e-5",
    ),
    "--preset": dict(
        type=preset_name,
        default=None,
        help="inference behaviour: fastai (production 2020-2026: 2-s windows every second, smoothed) or v1 "
        "(upstream's port: 3-s windows every 2 s, whole-recording peak normalisation, raw segments); default: the "
        "model folder's. --threshold, --min-positive-seconds and --aggregation apply on top of it",
    ),
    "--threshold": dict(
        metavar="T",
        type=probability,
        default=None,
        help="a one-second row is positive when its confidence is above this (default: the model's, 0.5)",
    ),
    "--min-positive-seconds": dict(
        metavar="N",
        type=non_negative_integer,
        default=None,
        help="a recording is positive when its positive rows cover at least this many seconds, merged, under every "
        "rule: for the count rule in place of its count of rows (3 one-second rows: 3 s under fastai; 3 segments of 3 "
        "s under v1's count rule), for the mean rules as well as the mean (default: 0, the rule's own)",
    ),
    "--aggregation": dict(
        choices=AGGREGATION_STRATEGIES,
        default=None,
        help="file-level decision: production's (orcahello, default) or the upstream port's",
    ),
    "--min-global-confidence": dict(
        metavar="F",
        type=unit_fraction,
        default=None,
        help="a recording is positive only when its global confidence (0-1, as every confidence) also reaches this "
        "(default: the model's, 0, i.e. production's decision); orcahello calibrate fits one per hydrophone",
    ),
    "--site-thresholds": dict(
        metavar="FILE",
        default=None,
        help="JSON (or YAML) table of decision parameters per hydrophone, matched by name or glob pattern against "
        "each recording's path; options given on the command line override it (see orcahello/site_thresholds.py)",
    ),
    "--hydrophone-config": dict(
        metavar="FILE",
        default=None,
        help="upstream's hydrophone config (its Kubernetes ConfigMap, the bare config.yml, or the multi-location "
        "orchestrator_config + location_config form): each location's model_config_overrides decide its "
        "recordings (the v1 preset, or fastai for the FastAI-era form); options given here apply last (see "
        "docs/upstream.md)",
    ),
    "--recursive": dict(
        action="store_true",
        help="also search the subfolders of folders, and let ** in patterns cross folders",
    ),
    "--overwrite": dict(
        action="store_true",
        help="redo every recording, even those a previous run into the same output folder finished with the same "
        "model and parameters",
    ),
}


def option_flag(name: str) -> str:
    """The command-line flag of the option `name` (`min_positive_seconds`: `--min-positive-seconds`)."""
    return "--" + name.replace("_", "-")


# The decision options (provenance.DECISION_OPTIONS), in that order: every command that decides takes them all.
DECISION_FLAGS = tuple(option_flag(name) for name in DECISION_OPTIONS)


def shared_options(*flags: str) -> argparse.ArgumentParser:
    """A parent parser (argparse `parents=[...]`) holding the `SHARED_OPTIONS` named by `flags`, in that order."""
    parent = argparse.ArgumentParser(add_help=False)
    for flag in flags:
        parent.add_argument(flag, **SHARED_OPTIONS[flag])
    return parent


# ----------------------------------------------------------------------------------------------------------------
# Each command's own options
# ----------------------------------------------------------------------------------------------------------------


def add_embed_options(parser: argparse.ArgumentParser) -> None:
    """`orcahello embed`'s own options (the run is `orcahello.embed`)."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="as for detect: files, HLS playlists, folders, globs")
    parser.add_argument(
        "--output-dir",
        metavar="DIR",
        default=embed.DEFAULT_OUTPUT_DIR,
        help=f"where the tables go, mirroring the inputs' folders (default: ./{embed.DEFAULT_OUTPUT_DIR})",
    )
    parser.add_argument(
        "--layer",
        choices=embed.EMBEDDING_LAYERS,
        default=embed.DEFAULT_LAYER,
        help="pooled: the 4096 concat-pooled features (AutoModel's pooler_output, default); head: the 512 features "
        "the head's last layer classifies",
    )


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """`orcahello batch`'s own options (the job is `orcahello.batch`, which needs the `scale` extra)."""
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="SOURCE",
        help="audio files, HLS playlists (.m3u8), folders, glob patterns (quote them) or http(s) URLs",
    )
    parser.add_argument(
        "--manifest",
        metavar="FILE",
        action="append",
        default=[],
        help="a text file listing one recording (path or URL) per line; relative paths are relative to the file; "
        "may be repeated",
    )
    parser.add_argument(
        "--output-dir",
        metavar="DIR",
        default=batch.DEFAULT_OUTPUT_DIR,
        help=f"where the Parquet tables and JSONs go (default: ./{batch.DEFAULT_OUTPUT_DIR}); on the driver's machine",
    )
    parser.add_argument(
        "--address",
        metavar="ADDRESS",
        default=None,
        help="join this Ray cluster (auto: the one this machine belongs to, or its head's HOST:PORT) instead of "
        "starting a local instance",
    )
    parser.add_argument(
        "--num-cpus",
        metavar="N",
        type=positive_integer,
        default=None,
        help="CPUs of the local Ray instance (default: this machine's cores)",
    )
    parser.add_argument(
        "--num-workers",
        metavar="N",
        type=positive_integer,
        default=None,
        help="model actors (default: one per GPU of the cluster, else one per --cpus-per-worker CPUs)",
    )
    parser.add_argument(
        "--cpus-per-worker",
        metavar="N",
        type=positive_integer,
        default=1,
        help="CPUs (and threads) each CPU model actor reserves (default: 1)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="model actors on GPUs (cuda) or CPUs; auto: GPUs when the cluster has any",
    )
    parser.add_argument(
        "--partition-windows",
        metavar="N",
        type=positive_integer,
        default=batch.DEFAULT_PARTITION_WINDOWS,
        help="windows per partition, the unit of work and of resuming (default: "
        f"{batch.DEFAULT_PARTITION_WINDOWS}, rounded up to a multiple of the featurization block)",
    )


def add_calibrate_options(parser: argparse.ArgumentParser) -> None:
    """`orcahello calibrate`'s options (the run is `orcahello.calibrate`)."""
    parser.add_argument("labels", metavar="LABELS.csv", help="one labelled event per row (site, score, class)")
    parser.add_argument(
        "--target-precision",
        metavar="P",
        type=float,
        required=True,
        help="the share of flagged events that must be positive at the fitted floor, in (0, 1]",
    )
    parser.add_argument(
        "--output", metavar="SITES.json", required=True, help="the table to write; the report goes beside it"
    )
    parser.add_argument(
        "--min-flagged",
        metavar="N",
        type=int,
        default=calibrate.DEFAULT_MIN_FLAGGED,
        help=f"flagged events a floor must keep to count (default: {calibrate.DEFAULT_MIN_FLAGGED})",
    )
    for flag, default in (
        ("--site-column", calibrate.DEFAULT_SITE_COLUMN),
        ("--score-column", calibrate.DEFAULT_SCORE_COLUMN),
        ("--label-column", calibrate.DEFAULT_LABEL_COLUMN),
    ):
        parser.add_argument(flag, default=default, help=f"default: {default}")
    parser.add_argument(
        "--positive-label",
        metavar="CLASS",
        action="append",
        default=None,
        help="a class that counts as positive; may be repeated (default: "
        f"{', '.join(calibrate.DEFAULT_POSITIVE_LABELS)})",
    )
    parser.add_argument(
        "--score-scale",
        metavar="MAX",
        type=float,
        default=calibrate.DEFAULT_SCORE_SCALE,
        help="what a score of certainty is in the CSV: 100 for production's confidence (default), 1 for a 0-1 score",
    )
    parser.add_argument(
        "--upstream-overrides",
        metavar="FILE.yml",
        help="also write the floors as upstream's per-hydrophone model_config_overrides (a multi-location hydrophone "
        "config that --hydrophone-config reads; each location's block is what its ConfigMap holds)",
    )


def add_evaluate_options(parser: argparse.ArgumentParser) -> None:
    """`orcahello evaluate`'s options (the run is `orcahello.evaluate`)."""
    parser.add_argument(
        "detections", nargs="+", metavar="DETECTIONS", help="folders of detect results, or their JSON files"
    )
    parser.add_argument(
        "--annotations",
        metavar="ANN.csv",
        action="append",
        required=True,
        help="file,start_s,end_s[,label] CSV or a Raven selection table; may be repeated",
    )
    parser.add_argument("--output", metavar="metrics.json", required=True, help="where the metrics go")
    parser.add_argument(
        "--positive-label",
        metavar="LABEL",
        action="append",
        default=None,
        help="only annotations with this label mark positive seconds; may be repeated (default: every annotation)",
    )
    parser.add_argument(
        "--plot",
        metavar="PNG",
        default=None,
        help="the precision-recall picture (default: beside --output, "
        f"<name>{evaluate.PR_CURVE_SUFFIX}; needs matplotlib)",
    )


def add_live_options(parser: argparse.ArgumentParser) -> None:
    """`orcahello live`'s own options (the run is `orcahello.live`)."""
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="nodes (http(s)://host/<node>, or a local folder holding latest.txt) or live .m3u8 playlists; none: "
        "the nodes of --hydrophone-config's locations (hls_hydrophone_id) under --node-base-url",
    )
    parser.add_argument(
        "--node-base-url",
        metavar="URL",
        default=live.ORCASOUND_BUCKET_URL,
        help="where --hydrophone-config's nodes are, as <URL>/<node>/hls/<epoch>/live.m3u8 (default: Orcasound's "
        f"public bucket, {live.ORCASOUND_BUCKET_URL}, as upstream's orchestrator reads it)",
    )
    parser.add_argument("--output-dir", default=live.DEFAULT_OUTPUT_DIR, help=f"default: ./{live.DEFAULT_OUTPUT_DIR}")
    parser.add_argument(
        "--stop-after",
        metavar="SECONDS",
        type=positive_float,
        default=None,
        help="stop (as on SIGTERM) after this many seconds; default: run until stopped",
    )
    parser.add_argument(
        "--post",
        metavar="URL",
        default=None,
        help="POST each positive minute as JSON to URL (spooled on disk while it is down)",
    )
    parser.add_argument(
        "--poll-seconds",
        metavar="S",
        type=positive_float,
        default=None,
        help=f"how often a source that is caught up is polled (default {live.DEFAULT_POLL_SECONDS:g}, or "
        "--hydrophone-config's hls_polling_interval)",
    )
    parser.add_argument(
        "--backlog-seconds",
        metavar="S",
        type=float,
        default=live.DEFAULT_BACKLOG_SECONDS,
        help="on first contact with a source, how much of its current recording to score "
        f"(default {live.DEFAULT_BACKLOG_SECONDS:g}; a large value scores it from its start)",
    )
    parser.add_argument("--no-plot", action="store_true", help="no spectrogram picture for positive minutes")
    parser.add_argument(
        "--allow-other-hosts",
        action="store_true",
        help="fetch segments (and follow redirects) on hosts other than each source's, which are refused by default",
    )
    parser.add_argument(
        "--metrics-port",
        metavar="PORT",
        type=int,
        default=None,
        help="serve Prometheus metrics on /metrics and health checks on /healthz and /readyz at this port",
    )
    parser.add_argument(
        "--metrics-host",
        metavar="ADDRESS",
        default=live.DEFAULT_METRICS_HOST,
        help=f"the address the metrics server listens on (default {live.DEFAULT_METRICS_HOST}; 0.0.0.0 in a container)",
    )
    parser.add_argument(
        "--ready-seconds",
        metavar="S",
        type=positive_float,
        default=live.DEFAULT_READY_SECONDS,
        help="/readyz: a source is ready while it wrote a window within S seconds and its lag is under S "
        f"(default {live.DEFAULT_READY_SECONDS:g})",
    )


def add_reaggregate_options(parser: argparse.ArgumentParser) -> None:
    """`orcahello reaggregate`'s own options (the run is `orcahello.reaggregate`)."""
    parser.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="saved results: detect's or batch's *.orcahello.json, live's minute JSONs, or folders of them",
    )
    parser.add_argument("--output-dir", metavar="DIR", required=True, help="where the re-decided outputs go")
    parser.add_argument(
        "--format",
        metavar="LIST",
        default=writers.OUTPUT_FORMATS,
        type=parse_formats,
        help=f"comma-separated outputs among {','.join(writers.OUTPUT_FORMATS)} (default: all), as for detect",
    )


def add_finetune_options(parser: argparse.ArgumentParser) -> None:
    """`orcahello finetune`'s options (the run is `orcahello.training.finetune`, which needs the `train` extra)."""
    parser.add_argument("--model", required=True, help="model folder (or Hub id) to start from")
    parser.add_argument("--train", required=True, metavar="DATA", help="positive/negative folder tree or saved dataset")
    parser.add_argument("--eval", required=True, metavar="DATA", help="held-out clips, same forms as --train")
    parser.add_argument("--output-dir", required=True, metavar="OUT", help="where the fine-tuned model folder goes")
    for flag, default in (("--epochs", finetune.DEFAULT_EPOCHS), ("--batch-size", finetune.DEFAULT_BATCH_SIZE)):
        parser.add_argument(flag, type=positive_integer, default=default, help="default: %(default)s")
    parser.add_argument(
        "--learning-rate", type=float, default=finetune.DEFAULT_LEARNING_RATE, help="peak; default: %(default)s"
    )
    parser.add_argument(
        "--weight-decay", type=float, default=finetune.DEFAULT_WEIGHT_DECAY, help="default: %(default)s"
    )
    parser.add_argument(
        "--warmup-ratio",
        type=float,
        default=finetune.DEFAULT_WARMUP_RATIO,
        help="share of steps warming up; default: %(default)s",
    )
    parser.add_argument(
        "--freeze-backbone", action="store_true", help="train the head only (backbone BatchNorm frozen)"
    )
    parser.add_argument(
        "--train-batch-norm",
        action="store_true",
        help="with --freeze-backbone: keep the backbone's BatchNorm layers trainable and updating (fastai's train_bn)",
    )
    parser.add_argument(
        "--freq-mask-max-bins",
        type=non_negative_integer,
        default=finetune.FASTAI_AUDIO_FREQUENCY_MASK_ROWS,
        help="widest frequency mask, in mel rows (0: no masking); default: %(default)s, fastai_audio's",
    )
    parser.add_argument(
        "--freq-mask-min-bins",
        type=non_negative_integer,
        default=None,
        help="narrowest frequency mask (default: the maximum, a fixed width as fastai_audio; 0 for SpecAugment's)",
    )
    parser.add_argument("--seed", type=int, default=42, help="default: %(default)s")
    parser.add_argument("--num-workers", type=non_negative_integer, default=0, help="data loader workers")
    parser.add_argument("--keep-checkpoints", action="store_true", help=f"keep OUT/{finetune.CHECKPOINTS_FOLDER}")


def add_convert_options(parser: argparse.ArgumentParser) -> None:
    """`orcahello convert`'s options (the run is `orcahello.conversion.convert_fastai`, loaded only to run)."""
    parser.add_argument(
        "--input",
        required=True,
        help="model.pkl (learner export), .pt/.pth or .safetensors state_dict, or a folder in upstream's Hub layout "
        "(config.json + config.yaml + model.safetensors or model_v1.pt): converted with preset v1 as its default",
    )
    parser.add_argument("--output-dir", required=True, help="folder to write (created if needed)")
    parser.add_argument("--card", help="model card (README.md) to copy into the folder")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the forward-pass comparison (the key and shape checks still run)",
    )


def add_upload_options(parser: argparse.ArgumentParser) -> None:
    """`orcahello upload`'s options (the run is `orcahello.conversion.upload`, loaded only to run)."""
    parser.add_argument("folder", help="model folder written by orcahello convert")
    parser.add_argument("--repo-id", required=True, help="Hub model repo to push to (no default: name it)")
    parser.add_argument("--token", default=os.environ.get("HF_TOKEN"), help="Hub write token (default: $HF_TOKEN)")
    parser.add_argument("--commit-message", help="commit message on the Hub")
    parser.add_argument("--dry-run", action="store_true", help="validate only; never contact the Hub")
    parser.add_argument(
        "--allow-derived-weights",
        action="store_true",
        help="accept synthetic stand-in or adapted weights (refused otherwise)",
    )


def add_quantize_options(parser: argparse.ArgumentParser) -> None:
    """`orcahello quantize`'s options (the run is `orcahello.quantize`, which needs the `int8` extra)."""
    parser.add_argument("model", help="the model folder to quantize; the int8 models are written into it")
    parser.add_argument(
        "--calibration",
        nargs="+",
        required=True,
        metavar="PATH",
        help="recordings whose windows calibrate the quantization (real hydrophone audio, as the site's)",
    )
    parser.add_argument(
        "--presets",
        nargs="+",
        choices=tuple(INFERENCE_PRESETS),
        default=tuple(INFERENCE_PRESETS),
        help="the presets whose windows calibrate the int8 model, an equal share each (default: all)",
    )
    parser.add_argument(
        "--calibration-windows",
        type=int,
        default=300,
        metavar="N",
        help="windows calibrating the model, shared among the presets, spread evenly over the recordings' (default: 300, NNCF's default)",
    )


def add_adapt_options(parser: argparse.ArgumentParser) -> None:
    """`orcahello adapt`'s own options (the run is `orcahello.adapt`, which needs the `adapt` extra)."""
    parser.add_argument(
        "annotations", nargs="+", metavar="ANNOTATIONS", help="file,start_s,end_s[,label] CSVs or Raven tables"
    )
    parser.add_argument(
        "--recordings",
        nargs="+",
        required=True,
        metavar="PATH",
        help="the labelled recordings: files, folders, glob patterns (as for detect)",
    )
    parser.add_argument("--output-dir", metavar="DIR", required=True, help="the adapted model folder to write")
    parser.add_argument(
        "--layer",
        choices=embed.EMBEDDING_LAYERS,
        default=embed.DEFAULT_LAYER,
        help="features the head reads: pooled (4096 concat-pooled, default) or head (the fastai head's 512)",
    )
    parser.add_argument(
        "--folds",
        metavar="N",
        type=positive_integer,
        default=adapt.DEFAULT_FOLDS,
        help=f"groups of recordings, each held out once, for the held-out figures (default: {adapt.DEFAULT_FOLDS}; "
        "at most one per recording)",
    )
    parser.add_argument(
        "--regularization",
        metavar="C",
        type=float,
        default=adapt.DEFAULT_REGULARIZATION,
        help=f"the logistic regression's C: smaller is a simpler head (default: {adapt.DEFAULT_REGULARIZATION})",
    )
    parser.add_argument(
        "--unannotated",
        choices=adapt.UNANNOTATED_POLICIES,
        default=adapt.UNANNOTATED_POLICIES[0],
        help="what un-annotated time of a listed recording is: negative (default) or ignore (labels given to "
        "detections only)",
    )


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """`orcahello search`'s own options (the run is `orcahello.search`)."""
    parser.add_argument("tables", nargs="+", metavar="TABLES", help="embed's Parquet tables, or folders of them")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument(
        "--query",
        metavar="FILE@SECONDS",
        type=window_query,
        help="a window of the tables: its recording (as in the tables' file column, or its end) and a time in it",
    )
    query.add_argument(
        "--query-clip", metavar="AUDIO", help="a clip, embedded by --model (the tables' model), its windows averaged"
    )
    parser.add_argument("--top", metavar="N", type=positive_integer, default=search.DEFAULT_TOP, help="hits to return")
    parser.add_argument("--output", metavar="HITS.csv", default=None, help="write the hits as CSV (default: stdout)")
    parser.add_argument(
        "--report",
        metavar="DIR",
        default=None,
        help="also write a review page of the hits in DIR (their clips and pictures; label them there; needs "
        "matplotlib)",
    )
