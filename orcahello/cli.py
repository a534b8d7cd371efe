# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The `orcahello` command line: its parsers and `main()`, which runs the command asked for (detect, embed, batch,
calibrate, evaluate, live; each one's run is in its own module). The options several commands share are defined
once, in `orcahello.options`.

    orcahello detect recordings/ --recursive --output-dir results
    python -m orcahello.cli detect clip.wav --model models/orcahello-srkw-detector-v1 --plot
    orcahello detect --help
"""

import argparse
import sys
from typing import TYPE_CHECKING

from process_memory_orcahello import return_large_buffers_to_the_system
from vocabulary_orcahello import PRECISIONS

from . import EXIT_CANNOT_RUN, EXIT_INTERRUPTED, __version__, detect, interruption, options, writers

if TYPE_CHECKING:
    from .search import WindowQuery

# The options detect, batch, embed and live share (each defined once, in options.SHARED_OPTIONS).
DETECT_SHARED_OPTIONS = (
    "--model",
    "--device",
    "--batch-size",
    "--engine",
    "--preset",
    "--threshold",
    "--min-positive-seconds",
    "--aggregation",
    "--min-global-confidence",
    "--site-thresholds",
    "--recursive",
    "--overwrite",
)
BATCH_SHARED_OPTIONS = (
    "--model",
    "--batch-size",
    "--preset",
    "--threshold",
    "--min-positive-seconds",
    "--aggregation",
    "--min-global-confidence",
    "--site-thresholds",
    "--recursive",
    "--overwrite",
)


def build_parser() -> argparse.ArgumentParser:
    """The `orcahello` command line: one sub-command per command, each with its options."""
    parser = argparse.ArgumentParser(
        prog="orcahello",
        description="OrcaHello Southern Resident killer whale call detector.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_detect_parser(commands)
    from . import calibrate, evaluate
    from .embed import add_embed_parser
    from .live import add_live_parser

    add_embed_parser(commands)
    add_batch_parser(commands)
    calibrate.add_parser(commands)
    evaluate.add_parser(commands)
    add_live_parser(commands)
    add_adapt_parser(commands)
    add_search_parser(commands)
    return parser


def add_detect_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`orcahello detect`: its options; the run is `orcahello.detect`."""
    detect_parser = commands.add_parser(
        "detect",
        help="score recordings and write per-file results",
        description=detect.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[options.shared_options(*DETECT_SHARED_OPTIONS)],
    )
    detect_parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="audio files, HLS playlists (.m3u8, a path or an http(s) URL), folders (their .wav .flac .ogg .mp3 "
        "files and .m3u8 playlists; a folder of .ts segments is one recording) or glob patterns (quote them)",
    )
    detect_parser.add_argument(
        "--output-dir",
        metavar="DIR",
        default=detect.DEFAULT_OUTPUT_DIR,
        help=f"where outputs go, mirroring the inputs' folders (default: ./{detect.DEFAULT_OUTPUT_DIR})",
    )
    detect_parser.add_argument(
        "--format",
        metavar="LIST",
        default=detect.DEFAULT_FORMATS,
        type=options.parse_formats,
        help=f"comma-separated outputs among {','.join(writers.OUTPUT_FORMATS)} (default: all); the JSON is "
        "always written, the resume check reads it",
    )
    detect_parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="opt-in fast mode for large archives: bfloat16 (CPUs with bfloat16 instructions, GPUs) or float16 "
        "(GPUs), about 2x faster, at an accuracy cost that depends on the weights (see benchmarks/run.py); "
        "default: float32, production's numbers",
    )
    detect_parser.add_argument(
        "--plot", action="store_true", help="also save a spectrogram PNG per file (needs matplotlib)"
    )
    detect_parser.add_argument(
        "--allow-other-hosts",
        action="store_true",
        help="HLS over HTTP: fetch segments (and follow redirects) on hosts other than the playlist's, which are "
        "refused by default",
    )
    detect_parser.add_argument(
        "--report",
        action="store_true",
        help="also write report.html: every detection with its spectrogram and audio clip, a confidence timeline "
        "per recording (a static page, no server; needs matplotlib; see orcahello/report.py)",
    )
    return detect_parser


def add_batch_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`orcahello batch`: its options; the job itself is `orcahello.batch` (which needs the `scale` extra)."""
    from . import batch

    batch_parser = commands.add_parser(
        "batch",
        help="score many recordings with Ray Data, locally or on a Ray cluster (needs the scale extra)",
        description=batch.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[options.shared_options(*BATCH_SHARED_OPTIONS)],
    )
    batch_parser.add_argument(
        "paths",
        nargs="*",
        metavar="SOURCE",
        help="audio files, HLS playlists (.m3u8), folders, glob patterns (quote them) or http(s) URLs",
    )
    batch_parser.add_argument(
        "--manifest",
        metavar="FILE",
        action="append",
        default=[],
        help="a text file listing one recording (path or URL) per line; relative paths are relative to the file; "
        "may be repeated",
    )
    batch_parser.add_argument(
        "--output-dir",
        metavar="DIR",
        default=batch.DEFAULT_OUTPUT_DIR,
        help=f"where the Parquet tables and JSONs go (default: ./{batch.DEFAULT_OUTPUT_DIR}); on the driver's machine",
    )
    batch_parser.add_argument(
        "--address",
        metavar="ADDRESS",
        default=None,
        help="join this Ray cluster (auto: the one this machine belongs to, or its head's HOST:PORT) instead of "
        "starting a local instance",
    )
    batch_parser.add_argument(
        "--num-cpus",
        metavar="N",
        type=options.positive_integer,
        default=None,
        help="CPUs of the local Ray instance (default: this machine's cores)",
    )
    batch_parser.add_argument(
        "--num-workers",
        metavar="N",
        type=options.positive_integer,
        default=None,
        help="model actors (default: one per GPU of the cluster, else one per --cpus-per-worker CPUs)",
    )
    batch_parser.add_argument(
        "--cpus-per-worker",
        metavar="N",
        type=options.positive_integer,
        default=1,
        help="CPUs (and threads) each CPU model actor reserves (default: 1)",
    )
    # Not the shared --device: the actors' device is the cluster's (no MPS), chosen per actor.
    batch_parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="model actors on GPUs (cuda) or CPUs; auto: GPUs when the cluster has any",
    )
    batch_parser.add_argument(
        "--partition-windows",
        metavar="N",
        type=options.positive_integer,
        default=batch.DEFAULT_PARTITION_WINDOWS,
        help="windows per partition, the unit of work and of resuming (default: "
        f"{batch.DEFAULT_PARTITION_WINDOWS}, rounded up to a multiple of the featurization block)",
    )
    return batch_parser


def add_adapt_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`orcahello adapt`: its options; the run is `orcahello.adapt` (which needs the `adapt` extra)."""
    from . import adapt

    parser = commands.add_parser(
        "adapt",
        help="fit a head on a site's labelled windows and save it as a model folder, with held-out figures",
        description=adapt.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[options.shared_options("--model", "--device", "--batch-size", "--recursive", "--overwrite")],
    )
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
        choices=("pooled", "head"),
        default="pooled",
        help="features the head reads: pooled (4096 concat-pooled, default) or head (the fastai head's 512)",
    )
    parser.add_argument(
        "--folds",
        metavar="N",
        type=options.positive_integer,
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
        default="negative",
        help="what un-annotated time of a listed recording is: negative (default) or ignore (labels given to "
        "detections only)",
    )
    return parser


def window_query(text: str) -> "WindowQuery":
    """`--query`'s value: `FILE@SECONDS`, a window of the tables."""
    from .search import WindowQuery

    try:
        return WindowQuery.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_search_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`orcahello search`: its options; the run is `orcahello.search`."""
    from . import search

    parser = commands.add_parser(
        "search",
        help="the windows of embed's tables most similar (cosine) to a window or a clip",
        description=search.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[options.shared_options("--model", "--device", "--recursive")],
    )
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
    parser.add_argument(
        "--top", metavar="N", type=options.positive_integer, default=search.DEFAULT_TOP, help="hits to return"
    )
    parser.add_argument("--output", metavar="HITS.csv", default=None, help="write the hits as CSV (default: stdout)")
    parser.add_argument(
        "--report",
        metavar="DIR",
        default=None,
        help="also write a review page of the hits in DIR (their clips and pictures; label them there; needs "
        "matplotlib)",
    )
    return parser


def run_command(args: argparse.Namespace, command: list[str]) -> int:
    """Run the parsed command `args` (`command` is the command line, recorded in the run files); its exit status.
    Each command's module is imported here: building the parser never loads torch or Ray."""
    if args.command == "detect":
        return detect.detect_command(args, command=command)
    if args.command == "embed":
        from .embed import embed_command

        return embed_command(args, command=command)
    if args.command == "batch":
        from .batch import batch_command

        return batch_command(args, command=command)
    if args.command == "calibrate":
        from .calibrate import calibrate_command

        return calibrate_command(args)
    if args.command == "evaluate":
        from .evaluate import evaluate_command

        return evaluate_command(args)
    if args.command == "adapt":
        from .adapt import AdaptOptions, adapt_command

        adapt_options = AdaptOptions(
            annotations=tuple(args.annotations),
            recordings=tuple(args.recordings),
            output_dir=args.output_dir,
            model=args.model,
            layer=args.layer,
            folds=args.folds,
            regularization=args.regularization,
            unannotated=args.unannotated,
            recursive=args.recursive,
            device=args.device,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
        )
        return adapt_command(adapt_options, command=command)
    if args.command == "search":
        from .search import SearchOptions, search_command

        search_options = SearchOptions(
            tables=tuple(args.tables),
            query=args.query,
            query_clip=args.query_clip,
            top=args.top,
            output=args.output,
            report_dir=args.report,
            model=args.model,
            device=args.device,
            recursive=args.recursive,
        )
        return search_command(search_options)
    if args.command == "live":
        from .live import live_command

        return live_command(args, command=command)
    return EXIT_CANNOT_RUN


def main(argv: list[str] | None = None) -> int:
    """The `orcahello` console script; `argv` defaults to the command line. Returns the exit status."""
    return_large_buffers_to_the_system()  # process-wide (mallopt): the entry point's to make, not the pipeline's
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        with interruption.watching_for_ctrl_c():
            status = run_command(args, ["orcahello", *argv])
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
