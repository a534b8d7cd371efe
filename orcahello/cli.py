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
from collections.abc import Callable
from typing import Any

from process_memory_orcahello import return_large_buffers_to_the_system
from vocabulary_orcahello import PRECISIONS

from . import (
    EXIT_CANNOT_RUN,
    EXIT_INTERRUPTED,
    __version__,
    adapt,
    batch,
    calibrate,
    detect,
    embed,
    evaluate,
    interruption,
    live,
    options,
    provenance,
    reaggregate,
    run_lock,
    search,
    writers,
)
from .training import finetune

# The options each command shares with others (each defined once, in options.SHARED_OPTIONS): every command that
# decides takes every decision option (options.DECISION_FLAGS).
DETECT_SHARED_OPTIONS = (
    ("--model", "--device", "--batch-size", "--engine", "--preset")
    + options.DECISION_FLAGS
    + ("--site-thresholds", "--hydrophone-config", "--recursive", "--overwrite")
)
# Not the shared --device: the actors' device is the cluster's (no MPS), chosen per actor.
BATCH_SHARED_OPTIONS = (
    ("--model", "--batch-size", "--preset")
    + options.DECISION_FLAGS
    + ("--site-thresholds", "--hydrophone-config", "--recursive", "--overwrite")
)
LIVE_SHARED_OPTIONS = (
    ("--model", "--device", "--batch-size", "--engine") + options.DECISION_FLAGS + ("--hydrophone-config",)
)
# The decision options of detect: --preset only for its decision fields (its windows must be the saved ones).
REAGGREGATE_SHARED_OPTIONS = ("--preset",) + options.DECISION_FLAGS + ("--site-thresholds", "--hydrophone-config")
# --preset: the windows (and frontend) of that inference behaviour, as for detect.
EMBED_SHARED_OPTIONS = ("--model", "--device", "--batch-size", "--preset", "--recursive", "--overwrite")
ADAPT_SHARED_OPTIONS = ("--model", "--device", "--batch-size", "--recursive", "--overwrite")
SEARCH_SHARED_OPTIONS = ("--model", "--device", "--recursive")


def add_detect_options(parser: argparse.ArgumentParser) -> None:
    """`orcahello detect`'s own options (the run is `orcahello.detect`)."""
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
        type=options.parse_formats,  # re-exported from orcahello.option_values
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


@dataclasses.dataclass(frozen=True)
class Command:
    """
    One `orcahello` command on the command line.

    Args:
        name (`str`): what follows `orcahello`.
        help (`str`): its line in `orcahello --help`.
        description (`str`, *optional*): its `--help` text (its module's description).
        add_options (`Callable`): adds its own options to its parser (`options.add_<command>_options`).
        shared (`tuple[str, ...]`): the options it shares with other commands (`options.SHARED_OPTIONS`), first.
        epilog (`str`, *optional*): more `--help` text, after the options.
    """

    name: str
    help: str
    description: str | None
    add_options: Callable[[argparse.ArgumentParser], None]
    shared: tuple[str, ...] = ()
    epilog: str | None = None


COMMANDS = (
    Command(
        "detect",
        "score recordings and write per-file results",
        detect.__doc__,
        add_detect_options,
        DETECT_SHARED_OPTIONS,
    ),
    Command(
        "embed",
        "write each window's embedding (what the network makes of it) to a Parquet table per recording",
        embed.__doc__,
        options.add_embed_options,
        EMBED_SHARED_OPTIONS,
    ),
    Command(
        "batch",
        "score many recordings with Ray Data, locally or on a Ray cluster (needs the scale extra)",
        batch.__doc__,
        options.add_batch_options,
        BATCH_SHARED_OPTIONS,
    ),
    Command(
        "calibrate",
        "fit a confidence floor per hydrophone from labelled detections (a --site-thresholds table + report)",
        calibrate.__doc__,
        options.add_calibrate_options,
    ),
    Command(
        "evaluate",
        "score detect results against annotations at one-second and file level (AUPRC, precision, recall, F1)",
        evaluate.__doc__,
        options.add_evaluate_options,
    ),
    Command(
        "live",
        "follow hydrophone streams continuously and score them as they grow",
        live.__doc__,
        options.add_live_options,
        LIVE_SHARED_OPTIONS,
    ),
    Command(
        "reaggregate",
        "decide saved detect, batch or live results again under other decision options, without the model",
        reaggregate.__doc__,
        options.add_reaggregate_options,
        REAGGREGATE_SHARED_OPTIONS,
    ),
    Command(
        "finetune",
        "fine-tune a model folder on labelled 2-second clips (needs the train extra)",
        "Fine-tune an OrcaHello model folder on labelled 2-second clips.",
        options.add_finetune_options,
        epilog=finetune.__doc__,
    ),
    Command(
        "convert",
        "convert an OrcaHello fastai learner export or state_dict into a Transformers model folder",
        "Convert an OrcaHello fastai learner export or state_dict into a Transformers model folder.",
        options.add_convert_options,
    ),
    Command(
        "upload",
        "validate an OrcaHello model folder and upload it to the Hub",
        "Validate an OrcaHello model folder and upload it to the Hub.",
        options.add_upload_options,
    ),
    Command(
        "quantize",
        "quantize a model folder to int8 for --precision int8 (NNCF, calibrated on recordings; the int8 extra)",
        "Quantize a model folder to int8 (NNCF post-training quantization) for --precision int8.",
        options.add_quantize_options,
    ),
    Command(
        "adapt",
        "fit a head on a site's labelled windows and save it as a model folder, with held-out figures",
        adapt.__doc__,
        options.add_adapt_options,
        ADAPT_SHARED_OPTIONS,
    ),
    Command(
        "search",
        "the windows of embed's tables most similar (cosine) to a window or a clip",
        search.__doc__,
        options.add_search_options,
        SEARCH_SHARED_OPTIONS,
    ),
)


def build_parser(commands: dict[str, argparse.ArgumentParser] | None = None) -> argparse.ArgumentParser:
    """
    The `orcahello` command line: one sub-command per command of `COMMANDS`, each with its options; `commands`, when
    given, gets each command's parser by name. Never loads torch.
    """
    parser = argparse.ArgumentParser(
        prog="orcahello",
        description="OrcaHello Southern Resident killer whale call detector.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command_parser = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            epilog=command.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[options.shared_options(*command.shared)],
        )
        command.add_options(command_parser)
    if commands is not None:
        commands.update(subparsers.choices)
    return parser


def scoring_options(
    args: argparse.Namespace,
    preset: str | None = None,
    precision: str = provenance.DEFAULT_PRECISION,
    hydrophone_config: Any = None,
) -> provenance.ScoringOptions:
    """
    The preset, precision and decision options (`provenance.DECISION_OPTIONS`, which every scoring command takes).
    Without `--preset`, a `--hydrophone-config`'s preset (v1, or fastai for the FastAI-era form).
    """
    decision = {name: vars(args)[name] for name in provenance.DECISION_OPTIONS}
    if preset is None and hydrophone_config is not None:
        preset = hydrophone_config.preset
    return provenance.ScoringOptions.from_options(preset=preset, precision=precision, **decision)


def hydrophone_config(args: argparse.Namespace) -> Any:
    """
    `--hydrophone-config`'s file read (`upstream_config.read_hydrophone_config`), its notes printed once on stderr;
    None without the option. Raises `ValueError` (one line naming the file and key) for a file that cannot be used.
    """
    path = getattr(args, "hydrophone_config", None)
    if path is None:
        return None
    from .upstream_config import read_hydrophone_config

    config = read_hydrophone_config(path)
    for note in config.notes:
        print(f"WARNING: {note}", file=sys.stderr)
    return config


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
        hydrophone = hydrophone_config(args)
        scoring = scoring_options(args, preset=args.preset, precision=args.precision, hydrophone_config=hydrophone)
        return from_arguments(
            detect.DetectOptions, args, formats=tuple(args.format), scoring=scoring, hydrophone_config=hydrophone
        )
    if args.command == "embed":
        return from_arguments(embed.EmbedOptions, args)
    if args.command == "batch":
        hydrophone = hydrophone_config(args)
        return from_arguments(
            batch.BatchOptions,
            args,
            inputs=tuple(args.paths),
            manifests=tuple(args.manifest),
            scoring=scoring_options(args, preset=args.preset, hydrophone_config=hydrophone),
            hydrophone_config=hydrophone,
        )
    if args.command == "calibrate":
        positive_labels: tuple[str, ...] | None = tuple(args.positive_label or calibrate.DEFAULT_POSITIVE_LABELS)
        return from_arguments(calibrate.CalibrateOptions, args, positive_labels=positive_labels)
    if args.command == "evaluate":
        positive_labels = None if args.positive_label is None else tuple(args.positive_label)
        return from_arguments(evaluate.EvaluateOptions, args, positive_labels=positive_labels)
    if args.command == "live":
        hydrophone = hydrophone_config(args)
        return from_arguments(
            live.LiveOptions,
            args,
            scoring=scoring_options(args, hydrophone_config=hydrophone),
            plot=not args.no_plot,
            hydrophone_config=hydrophone,
        )
    if args.command == "reaggregate":
        hydrophone = hydrophone_config(args)
        return from_arguments(
            reaggregate.ReaggregateOptions,
            args,
            formats=tuple(args.format),
            scoring=scoring_options(args, preset=args.preset, hydrophone_config=hydrophone),
            hydrophone_config=hydrophone,
        )
    if args.command == "finetune":
        return from_arguments(finetune.FinetuneOptions, args)
    if args.command == "adapt":
        return from_arguments(adapt.AdaptOptions, args)
    if args.command == "search":
        return from_arguments(search.SearchOptions, args, report_dir=args.report)
    if args.command == "convert":
        from .conversion import convert_fastai

        return from_arguments(convert_fastai.ConvertOptions, args, verify=not args.no_verify)
    if args.command == "upload":
        from .conversion import upload

        return from_arguments(upload.UploadOptions, args)
    if args.command == "quantize":
        from . import quantize

        return from_arguments(quantize.QuantizeOptions, args)
    raise ValueError(f"unknown command {args.command!r}")


def written_folders(name: str, typed: Any) -> list[str]:
    """
    The folders the command `name` writes into with its `typed` options, which it holds while it runs
    (`run_lock.holding_output_folders`). `detect`, `batch` and `live` take their folder's lock themselves (they also
    clean up what a killed holder left); `upload` writes nothing local. A model folder (`adapt`, `finetune`,
    `convert`) is held through the folder it is in: it may be written beside itself and renamed into place, and its
    own listing must not show the lock.
    """
    if name in ("embed", "reaggregate"):
        return [typed.output_dir]
    model_folder = [typed.output_dir] if name in ("adapt", "finetune", "convert") else []
    files = model_folder + [getattr(typed, field, None) for field in ("output", "plot", "upstream_overrides")]
    folders = [os.path.dirname(os.path.abspath(path)) for path in files if path]
    report_dir = getattr(typed, "report_dir", None)
    return folders + ([report_dir] if report_dir else [])


def run_command(name: str, typed: Any, command: list[str]) -> int:
    """Run the command `name` with its `typed` options; its exit status. `command` (the command line) goes into the
    run files of the commands that write one. Every command that writes holds its folders' locks while it runs: a
    second run into the same folder is refused with a message naming the first, as a planted symbolic link is."""
    if name in ("detect", "batch", "live", "upload"):
        return run_unlocked_command(name, typed, command)
    try:
        with run_lock.holding_output_folders(written_folders(name, typed), f"orcahello {name}"):
            return run_unlocked_command(name, typed, command)
    except run_lock.OutputFolderRefused as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN


def run_unlocked_command(name: str, typed: Any, command: list[str]) -> int:
    """`run_command` once the folders the command writes are held (or for the commands that hold their own)."""
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
    if name == "reaggregate":
        return reaggregate.reaggregate_command(typed, command=command)
    if name == "finetune":
        return finetune.finetune_command(typed)
    if name == "adapt":
        return adapt.adapt_command(typed, command=command)
    if name == "search":
        return search.search_command(typed)
    if name == "convert":
        from .conversion import convert_fastai

        return convert_fastai.convert_command(typed)
    if name == "upload":
        from .conversion import upload

        return upload.upload_command(typed)
    if name == "quantize":
        from . import quantize

        return quantize.quantize_command(typed)
    return EXIT_CANNOT_RUN


def main(argv: list[str] | None = None) -> int:
    """The `orcahello` console script; `argv` defaults to the command line. Returns the exit status."""
    return_large_buffers_to_the_system()  # process-wide (mallopt): the entry point's to make, not the pipeline's
    argv = sys.argv[1:] if argv is None else list(argv)
    commands: dict[str, argparse.ArgumentParser] = {}
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
