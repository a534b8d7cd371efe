# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello detect`: run the OrcaHello killer-whale call detector over recordings and write, per recording, the
production result as JSON, production's scoring table as CSV, a Raven selection table, Audacity labels and
(`--plot`) a spectrogram picture; per run, a summary CSV, a combined Raven table and the run's parameters.

    orcahello detect recordings/ --recursive --output-dir results
    python -m orcahello.cli detect clip.wav --model models/orcahello-srkw-detector-v1 --plot
    orcahello detect https://example.org/rpi_orcasound_lab/hls/1600000000/live.m3u8 archive/hls/ --recursive

HLS (Orcasound's streams and archives) is scored as whole recordings: an `.m3u8` playlist (a path or an http(s)
URL) is one recording, and its folder's `.ts` segments are not scored on their own; a folder of `.ts` segments
without a playlist is one recording. Their results carry UTC times when the playlist or the folder name gives them.

With `--site-thresholds sites.json`, each recording gets the decision thresholds of its hydrophone: the first site
name or glob pattern of the table that matches its path (see `orcahello.site_thresholds`).

A recording that cannot be scored is reported as `ERROR <path>: <reason>` on stderr and never stops the run; the
exit status is 0 when every recording was scored, 1 otherwise. Re-running into the same output folder skips the
recordings already scored with the same model and parameters (`--overwrite` redoes them).
"""

import argparse
import os
import sys

from vocabulary_orcahello import DEFAULT_BATCH_SIZE, HUB_MODEL_ID

from . import EXIT_CANNOT_RUN, EXIT_INTERRUPTED, __version__, detect, models, options, run_lock, writers

# ----------------------------------------------------------------------------------------------------------------
# Scoring one recording
# ----------------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def build_parser():
    parser = argparse.ArgumentParser(
        prog="orcahello",
        description="OrcaHello Southern Resident killer whale call detector.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    detect_parser = commands.add_parser(
        "detect",
        help="score recordings and write per-file results",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        "--batch-size",
        metavar="N",
        type=options.positive_integer,
        default=None,
        help=f"2-second windows per forward pass (default: {DEFAULT_BATCH_SIZE['cpu']} on CPU, {DEFAULT_BATCH_SIZE['other']} on a GPU)",
    )
    detect_parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help="default: auto")
    detect_parser.add_argument(
        "--engine",
        choices=("auto", "openvino", "onnxruntime", "torch"),
        default="auto",
        help="what computes the model (default: auto, i.e. OpenVINO on CPU when installed, PyTorch on GPUs); the "
        "engines agree to ~1e-5",
    )
    detect_parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="opt-in fast mode for large archives: bfloat16 (CPUs with bfloat16 instructions, GPUs) or float16 "
        "(GPUs), about 2x faster, at an accuracy cost that depends on the weights (see benchmarks/run.py); "
        "default: float32, production's numbers",
    )
    detect_parser.add_argument(
        "--threshold",
        metavar="T",
        type=options.probability,
        default=None,
        help="a one-second row is positive when its confidence is above this (default: the model's, 0.5)",
    )
    detect_parser.add_argument(
        "--min-positive-seconds",
        metavar="N",
        type=options.non_negative_integer,
        default=None,
        help="a recording is positive when at least this many rows are (default: the model's, 3)",
    )
    detect_parser.add_argument(
        "--aggregation",
        choices=("orcahello", "mean_thresholded", "mean_top_k"),
        default=None,
        help="file-level decision: production's (orcahello, default) or the upstream port's",
    )
    detect_parser.add_argument(
        "--preset",
        type=options.preset_name,
        default=None,
        help="inference behaviour: fastai (production 2020-2026: 2-s windows every second, smoothed) or v1 "
        "(upstream's port: 3-s windows every 2 s, whole-recording peak normalisation, raw segments); default: the "
        "model folder's. --threshold, --min-positive-seconds and --aggregation apply on top of it",
    )
    detect_parser.add_argument(
        "--min-global-confidence",
        metavar="F",
        type=options.unit_fraction,
        default=None,
        help="a recording is positive only when its global confidence / 100 also reaches this (0-1; default: the "
        "model's, 0, i.e. production's decision); orcahello calibrate fits one per hydrophone",
    )
    detect_parser.add_argument(
        "--site-thresholds",
        metavar="FILE",
        default=None,
        help="JSON (or YAML) table of decision parameters per hydrophone, matched by name or glob pattern against "
        "each recording's path; options given on the command line override it (see orcahello/site_thresholds.py)",
    )
    detect_parser.add_argument(
        "--recursive",
        action="store_true",
        help="also search the subfolders of folders, and let ** in patterns cross folders",
    )
    detect_parser.add_argument(
        "--model",
        metavar="DIR_OR_REPO",
        default=None,
        help=f"model folder or Hub id (default: ${models.MODEL_ENVIRONMENT_VARIABLE}, else models/ from "
        f"scripts/fetch_model.py, else {HUB_MODEL_ID})",
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
        "--overwrite",
        action="store_true",
        help="score every file again, even those a previous run finished with the same model and parameters",
    )
    detect_parser.add_argument(
        "--report",
        action="store_true",
        help="also write report.html: every detection with its spectrogram and audio clip, a confidence timeline "
        "per recording (a static page, no server; needs matplotlib; see orcahello/report.py)",
    )
    from .embed import add_embed_parser

    add_embed_parser(commands)
    add_batch_parser(commands)
    from . import calibrate, evaluate

    calibrate.add_parser(commands)
    evaluate.add_parser(commands)
    from .live import add_live_parser  # `orcahello live` keeps its options with it (orcahello.live)

    add_live_parser(commands)
    return parser


def add_batch_parser(commands):
    """`orcahello batch`: its options; the job itself is `orcahello.batch` (which needs the `scale` extra)."""
    from . import batch

    batch_parser = commands.add_parser(
        "batch",
        help="score many recordings with Ray Data, locally or on a Ray cluster (needs the scale extra)",
        description=batch.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        "--recursive", action="store_true", help="also search subfolders, and let ** in patterns cross folders"
    )
    batch_parser.add_argument(
        "--output-dir",
        metavar="DIR",
        default=batch.DEFAULT_OUTPUT_DIR,
        help=f"where the Parquet tables and JSONs go (default: ./{batch.DEFAULT_OUTPUT_DIR}); on the driver's machine",
    )
    batch_parser.add_argument(
        "--model",
        metavar="DIR_OR_REPO",
        default=None,
        help="model folder (sent to the workers) or Hub id; default as for detect",
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
    batch_parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="model actors on GPUs (cuda) or CPUs; auto: GPUs when the cluster has any",
    )
    batch_parser.add_argument(
        "--batch-size",
        metavar="N",
        type=options.positive_integer,
        default=None,  # the model actors' device decides
        help=f"2-second windows per forward pass (default: {DEFAULT_BATCH_SIZE['cpu']} on CPU, {DEFAULT_BATCH_SIZE['other']} on a GPU)",
    )
    batch_parser.add_argument(
        "--partition-windows",
        metavar="N",
        type=options.positive_integer,
        default=batch.DEFAULT_PARTITION_WINDOWS,
        help="windows per partition, the unit of work and of resuming (default: "
        f"{batch.DEFAULT_PARTITION_WINDOWS}, rounded up to a multiple of the featurization block)",
    )
    batch_parser.add_argument("--threshold", metavar="T", type=options.probability, default=None, help="as for detect")
    batch_parser.add_argument(
        "--min-positive-seconds", metavar="N", type=options.non_negative_integer, default=None, help="as for detect"
    )
    batch_parser.add_argument(
        "--aggregation", choices=("orcahello", "mean_thresholded", "mean_top_k"), default=None, help="as for detect"
    )
    batch_parser.add_argument(
        "--min-global-confidence", metavar="F", type=options.unit_fraction, default=None, help="as for detect"
    )
    batch_parser.add_argument("--site-thresholds", metavar="FILE", default=None, help="as for detect")
    batch_parser.add_argument("--preset", type=options.preset_name, default=None, help="as for detect")
    batch_parser.add_argument(
        "--overwrite", action="store_true", help="score everything again, ignoring what earlier runs wrote"
    )


def main(argv=None):
    """The `orcahello` console script; `argv` defaults to the command line. Returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "detect":
            # One run per output folder: a second one would rewrite the same files under the first.
            folder_was_there = os.path.exists(args.output_dir)
            try:
                with run_lock.OutputFolderLock(args.output_dir, "orcahello detect") as lock:
                    if lock.stale_holder:  # a killed run held it: its half-written files go
                        writers.remove_partial_outputs(args.output_dir)
                    return detect.detect(args, command=["orcahello", *argv])
            except run_lock.OutputFolderBusy as error:
                print(f"ERROR: {error}", file=sys.stderr)
                return EXIT_CANNOT_RUN
            finally:
                # The lock made the folder: a run that wrote nothing (refused options, no model) leaves none behind.
                if not folder_was_there and os.path.isdir(args.output_dir) and not os.listdir(args.output_dir):
                    os.rmdir(args.output_dir)
        if args.command == "embed":
            from .embed import embed_command

            return embed_command(args, command=["orcahello", *argv])
        if args.command == "batch":
            from .batch import batch_command

            return batch_command(args, command=["orcahello", *argv])
        if args.command == "calibrate":
            from .calibrate import calibrate_command

            return calibrate_command(args)
        if args.command == "evaluate":
            from .evaluate import evaluate_command

            return evaluate_command(args)
        if args.command == "live":
            from .live import live_command

            return live_command(args, command=["orcahello", *argv])
    except KeyboardInterrupt:
        # Every output is written through a temporary file and a rename: what is finished stays, the rest is
        # done by the next run.
        print(
            "\nInterrupted: the finished results are kept; run the same command again to do the rest.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return EXIT_CANNOT_RUN


if __name__ == "__main__":
    sys.exit(main())
