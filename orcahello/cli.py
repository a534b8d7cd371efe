# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The `orcahello` command line: every command's parser, and `main()`, which turns the parsed arguments into the
command's typed options (a frozen dataclass: `DetectOptions`, `BatchOptions`, ...) and runs the command with them.
The command line ends here: below it, every function takes typed options. The options several commands share are
defined once, in `orcahello.options`.

    orcahello detect recordings/ --recursive --output-dir results
    python -m orcahello.cli detect clip.wav --model models/orcahello-srkw-detector-v1 --plot
    orcahello detect --help
"""

import argparse
import dataclasses
import os
import sys
from typing import Any

from vocabulary_orcahello import HUB_MODEL_ID, PRECISIONS, return_large_buffers_to_the_system

from . import (
    EXIT_CANNOT_RUN,
    EXIT_INTERRUPTED,
    __version__,
    batch,
    calibrate,
    detect,
    embed,
    evaluate,
    interruption,
    live,
    options,
    provenance,
    writers,
)
from .training import finetune

# The options each command shares with others (each defined once, in options.SHARED_OPTIONS): every command that
# decides takes every decision option (options.DECISION_FLAGS).
DETECT_SHARED_OPTIONS = (
    ("--model", "--device", "--batch-size", "--engine", "--preset")
    + options.DECISION_FLAGS
    + ("--site-thresholds", "--recursive", "--overwrite")
)
# Not the shared --device: the actors' device is the cluster's (no MPS), chosen per actor.
BATCH_SHARED_OPTIONS = (
    ("--model", "--batch-size", "--preset")
    + options.DECISION_FLAGS
    + ("--site-thresholds", "--recursive", "--overwrite")
)
LIVE_SHARED_OPTIONS = ("--model", "--device", "--batch-size", "--engine") + options.DECISION_FLAGS
# --preset: the windows (and frontend) of that inference behaviour, as for detect.
EMBED_SHARED_OPTIONS = ("--model", "--device", "--batch-size", "--preset", "--recursive", "--overwrite")


def build_parser(commands: dict[str, argparse.ArgumentParser] | None = None) -> argparse.ArgumentParser:
    """
    The `orcahello` command line: one sub-command per command, each with its options; `commands`, when given, gets
    each command's parser by name. Never loads torch.
    """
    parser = argparse.ArgumentParser(
        prog="orcahello",
        description="OrcaHello Southern Resident killer whale call detector.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in (
        add_detect_parser,
        add_embed_parser,
        add_batch_parser,
        add_calibrate_parser,
        add_evaluate_parser,
        add_live_parser,
        add_finetune_parser,
        add_convert_parser,
        add_upload_parser,
    ):
        add_parser(subparsers)
    if commands is not None:
        commands.update(subparsers.choices)
    return parser


def add_command(
    commands: argparse._SubParsersAction, name: str, help: str, description: str | None, shared: tuple[str, ...] = ()
) -> argparse.ArgumentParser:
    """A command's parser, with its `shared` options (`options.SHARED_OPTIONS`) first."""
    return commands.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[options.shared_options(*shared)],
    )


def add_detect_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`orcahello detect`: its options; the run is `orcahello.detect`."""
    parser = add_command(
        commands, "detect", "score recordings and write per-file results", detect.__doc__, DETECT_SHARED_OPTIONS
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="audio files, HLS playlists (.m3u8, a path or an http(s) URL), folders (their .wav .flac .ogg .mp3 "
        "files and .m3u8 playlists; a folder of .ts segments is one recording) or glob patterns (quote them)",
    )
    parser.add_argument(
        "--output-dir",
        metavar="DIR",
        default=detect.DEFAULT_OUTPUT_DIR,
        help=f"where outputs go, mirroring the inputs' folders (default: ./{detect.DEFAULT_OUTPUT_DIR})",
    )
    parser.add_argument(
        "--format",
        metavar="LIST",
        default=writers.OUTPUT_FORMATS,
        type=options.parse_formats,
        help=f"comma-separated outputs among {','.join(writers.OUTPUT_FORMATS)} (default: all); the JSON is "
        "always written, the resume check reads it",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=provenance.DEFAULT_PRECISION,
        help="opt-in fast mode for large archives: bfloat16 (CPUs with bfloat16 instructions, GPUs) or float16 "
        "(GPUs), about 2x faster, at an accuracy cost that depends on the weights (see benchmarks/run.py); "
        "default: float32, production's numbers",
    )
    parser.add_argument("--plot", action="store_true", help="also save a spectrogram PNG per file (needs matplotlib)")
    parser.add_argument(
        "--allow-other-hosts",
        action="store_true",
        help="HLS over HTTP: fetch segments (and follow redirects) on hosts other than the playlist's, which are "
        "refused by default",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="also write report.html: every detection with its spectrogram and audio clip, a confidence timeline "
        "per recording (a static page, no server; needs matplotlib; see orcahello/report.py)",
    )
    return parser


def add_embed_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`orcahello embed`: its options; the run is `orcahello.embed`."""
    parser = add_command(
        commands,
        "embed",
        "write each window's embedding (what the network makes of it) to a Parquet table per recording",
        embed.__doc__,
        EMBED_SHARED_OPTIONS,
    )
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
    return parser


def add_batch_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`orcahello batch`: its options; the job itself is `orcahello.batch` (which needs the `scale` extra)."""
    parser = add_command(
        commands,
        "batch",
        "score many recordings with Ray Data, locally or on a Ray cluster (needs the scale extra)",
        batch.__doc__,
        BATCH_SHARED_OPTIONS,
    )
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
        type=options.positive_integer,
        default=None,
        help="CPUs of the local Ray instance (default: this machine's cores)",
    )
    parser.add_argument(
        "--num-workers",
        metavar="N",
        type=options.positive_integer,
        default=None,
        help="model actors (default: one per GPU of the cluster, else one per --cpus-per-worker CPUs)",
    )
    parser.add_argument(
        "--cpus-per-worker",
        metavar="N",
        type=options.positive_integer,
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
        type=options.positive_integer,
        default=batch.DEFAULT_PARTITION_WINDOWS,
        help="windows per partition, the unit of work and of resuming (default: "
        f"{batch.DEFAULT_PARTITION_WINDOWS}, rounded up to a multiple of the featurization block)",
    )
    return parser


def add_calibrate_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`orcahello calibrate`: its options; the run is `orcahello.calibrate`."""
    parser = add_command(
        commands,
        "calibrate",
        "fit a confidence floor per hydrophone from labelled detections (a --site-thresholds table + report)",
        calibrate.__doc__,
    )
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
    return parser


def add_evaluate_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`orcahello evaluate`: its options; the run is `orcahello.evaluate`."""
    parser = add_command(
        commands,
        "evaluate",
        "score detect results against annotations at one-second and file level (AUPRC, precision, recall, F1)",
        evaluate.__doc__,
    )
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
    return parser


def add_live_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`orcahello live`: its options; the run is `orcahello.live`."""
    parser = add_command(
        commands,
        "live",
        "follow hydrophone streams continuously and score them as they grow",
        live.__doc__,
        LIVE_SHARED_OPTIONS,
    )
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="nodes (http(s)://host/<node>, or a local folder holding latest.txt) or live .m3u8 playlists",
    )
    parser.add_argument("--output-dir", default=live.DEFAULT_OUTPUT_DIR, help=f"default: ./{live.DEFAULT_OUTPUT_DIR}")
    parser.add_argument(
        "--stop-after",
        metavar="SECONDS",
        type=options.positive_float,
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
        type=options.positive_float,
        default=live.DEFAULT_POLL_SECONDS,
        help=f"how often a source that is caught up is polled (default {live.DEFAULT_POLL_SECONDS:g})",
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
    return parser


def add_finetune_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`orcahello finetune`: its options; the run is `orcahello.training.finetune` (needs the `train` extra)."""
    parser = commands.add_parser(
        "finetune",
        help="fine-tune a model folder on labelled 2-second clips (needs the train extra)",
        description="Fine-tune an OrcaHello model folder on labelled 2-second clips.",
        epilog=finetune.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="model folder (or Hub id) to start from")
    parser.add_argument("--train", required=True, metavar="DATA", help="positive/negative folder tree or saved dataset")
    parser.add_argument("--eval", required=True, metavar="DATA", help="held-out clips, same forms as --train")
    parser.add_argument("--output-dir", required=True, metavar="OUT", help="where the fine-tuned model folder goes")
    for flag, default in (("--epochs", finetune.DEFAULT_EPOCHS), ("--batch-size", finetune.DEFAULT_BATCH_SIZE)):
        parser.add_argument(flag, type=options.positive_integer, default=default, help="default: %(default)s")
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
        type=options.non_negative_integer,
        default=finetune.FASTAI_AUDIO_FREQUENCY_MASK_ROWS,
        help="widest frequency mask, in mel rows (0: no masking); default: %(default)s, fastai_audio's",
    )
    parser.add_argument(
        "--freq-mask-min-bins",
        type=options.non_negative_integer,
        default=None,
        help="narrowest frequency mask (default: the maximum, a fixed width as fastai_audio; 0 for SpecAugment's)",
    )
    parser.add_argument("--seed", type=int, default=42, help="default: %(default)s")
    parser.add_argument("--num-workers", type=options.non_negative_integer, default=0, help="data loader workers")
    parser.add_argument("--keep-checkpoints", action="store_true", help=f"keep OUT/{finetune.CHECKPOINTS_FOLDER}")
    return parser


def add_convert_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`orcahello convert`: its options; the run is `orcahello.conversion.convert_fastai` (loaded only to run)."""
    description = "Convert an OrcaHello fastai learner export or state_dict into a Transformers model folder."
    parser = commands.add_parser("convert", help=description[0].lower() + description[1:-1], description=description)
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
    return parser


def add_upload_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`orcahello upload`: its options; the run is `orcahello.conversion.upload` (loaded only to run)."""
    description = "Validate an OrcaHello model folder and upload it to the Hub."
    parser = commands.add_parser("upload", help=description[0].lower() + description[1:-1], description=description)
    parser.add_argument("folder", help="model folder written by orcahello convert")
    parser.add_argument("--repo-id", default=HUB_MODEL_ID, help=f"Hub model repo (default {HUB_MODEL_ID})")
    parser.add_argument("--token", default=os.environ.get("HF_TOKEN"), help="Hub write token (default: $HF_TOKEN)")
    parser.add_argument("--commit-message", help="commit message on the Hub")
    parser.add_argument("--dry-run", action="store_true", help="validate only; never contact the Hub")
    return parser


def scoring_options(
    args: argparse.Namespace, preset: str | None = None, precision: str = provenance.DEFAULT_PRECISION
) -> provenance.ScoringOptions:
    """The preset, precision and decision options (`provenance.DECISION_OPTIONS`, which every scoring command takes)."""
    decision = {name: vars(args)[name] for name in provenance.DECISION_OPTIONS}
    return provenance.ScoringOptions.from_options(preset=preset, precision=precision, **decision)


def from_arguments(options_class: type, args: argparse.Namespace, **converted: Any) -> Any:
    """
    `options_class` (a dataclass) from the parsed `args`: each field from the argument of its name (lists as
    tuples), else from `converted` (the arguments named or shaped otherwise). Raises `TypeError` for a field that
    neither gives: every option of a command comes from its command line.
    """
    fields = {field.name for field in dataclasses.fields(options_class)}
    arguments = {name: tuple(value) if isinstance(value, list) else value for name, value in vars(args).items()}
    given = {name: value for name, value in arguments.items() if name in fields and name not in converted}
    missing = sorted(fields - set(given) - set(converted))
    if missing:
        raise TypeError(f"{options_class.__name__}: no argument gives {', '.join(missing)}")
    return options_class(**given, **converted)


def command_options(args: argparse.Namespace) -> Any:
    """
    The typed options of the parsed command `args` (`DetectOptions`, `BatchOptions`, ...). Raises `ValueError` for
    options that contradict each other. The conversion's modules are imported here: building the parser never
    loads torch.
    """
    if args.command == "detect":
        scoring = scoring_options(args, preset=args.preset, precision=args.precision)
        return from_arguments(detect.DetectOptions, args, formats=tuple(args.format), scoring=scoring)
    if args.command == "embed":
        return from_arguments(embed.EmbedOptions, args)
    if args.command == "batch":
        return from_arguments(
            batch.BatchOptions,
            args,
            inputs=tuple(args.paths),
            manifests=tuple(args.manifest),
            scoring=scoring_options(args, preset=args.preset),
        )
    if args.command == "calibrate":
        positive_labels = tuple(args.positive_label or calibrate.DEFAULT_POSITIVE_LABELS)
        return from_arguments(calibrate.CalibrateOptions, args, positive_labels=positive_labels)
    if args.command == "evaluate":
        positive_labels = None if args.positive_label is None else tuple(args.positive_label)
        return from_arguments(evaluate.EvaluateOptions, args, positive_labels=positive_labels)
    if args.command == "live":
        return from_arguments(live.LiveOptions, args, scoring=scoring_options(args), plot=not args.no_plot)
    if args.command == "finetune":
        return from_arguments(finetune.FinetuneOptions, args)
    if args.command == "convert":
        from .conversion import convert_fastai

        return from_arguments(convert_fastai.ConvertOptions, args, verify=not args.no_verify)
    if args.command == "upload":
        from .conversion import upload

        return from_arguments(upload.UploadOptions, args)
    raise ValueError(f"unknown command {args.command!r}")


def run_command(name: str, typed: Any, command: list[str]) -> int:
    """Run the command `name` with its `typed` options; its exit status. `command` (the command line) goes into the
    run files of the commands that write one."""
    if name == "detect":
        return detect.detect_command(typed, command=command)
    if name == "embed":
        return embed.embed_command(typed, command=command)
    if name == "batch":
        return batch.batch_command(typed, command=command)
    if name == "calibrate":
        return calibrate.calibrate_command(typed)
    if name == "evaluate":
        return evaluate.evaluate_command(typed)
    if name == "live":
        return live.live_command(typed, command=command)
    if name == "finetune":
        return finetune.finetune_command(typed)
    if name == "convert":
        from .conversion import convert_fastai

        return convert_fastai.convert_command(typed)
    if name == "upload":
        from .conversion import upload

        return upload.upload_command(typed)
    return EXIT_CANNOT_RUN


def main(argv: list[str] | None = None) -> int:
    """The `orcahello` console script; `argv` defaults to the command line. Returns the exit status."""
    return_large_buffers_to_the_system()  # process-wide (mallopt): the entry point's to make, not the pipeline's
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = {}
    args = build_parser(commands).parse_args(argv)
    try:
        typed = command_options(args)
    except ValueError as error:  # options that contradict each other: said as argparse says a bad value
        commands[args.command].error(str(error))
    try:
        with interruption.watching_for_ctrl_c():
            status = run_command(args.command, typed, ["orcahello", *argv])
            if not interruption.interrupted():
                return status
    except KeyboardInterrupt:
        pass
    # Every output is written through a temporary file and a rename: what is finished stays, the rest is done by
    # the next run.
    print("\nInterrupted: the finished results are kept; run the same command again to do the rest.", file=sys.stderr)
    return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
