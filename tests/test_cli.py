"""
The `orcahello detect` command line, run as users run it (`python -m orcahello.cli` in a subprocess), its output
files, resuming, and scoring a `datasets.Dataset` with the same numbers.
"""

import argparse
import csv
import dataclasses
import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import LEGACY, REAL_AUDIO, REPO_ROOT, run_orcahello_cli

import orcahello
from orcahello import cli, inputs, models, provenance, writers

LEGACY_FILES = ("edge_20k_6s.wav", "edge_44k1_6s.wav", "edge_stereo_48k_6s.wav")
REAL_FILES = ("pos_srkw_catalog_S12_J-1.wav", "pos_kw_sanctsound_MB01_killerwhale_20200423T164427Z.wav")
# Not the defaults, so the tests see them reach the pipeline; a low threshold gives the tiny model detections.
BATCH_SIZE = 4
THRESHOLD = 0.3
MIN_POSITIVE_SECONDS = 2
PIPELINE_PARAMETERS = {"local_threshold": THRESHOLD, "min_positive_seconds": MIN_POSITIVE_SECONDS}
PER_FILE_OUTPUTS = ("json", "csv", "raven", "audacity", "png")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """recordings/{legacy,real}/*.wav (copies: the shared fixtures are read-only) and a corrupt recordings/bad.wav."""
    folder = tmp_path_factory.mktemp("recordings")
    for subfolder, source, names in (("legacy", LEGACY / "audio", LEGACY_FILES), ("real", REAL_AUDIO, REAL_FILES)):
        (folder / subfolder).mkdir()
        for name in names:
            shutil.copyfile(source / name, folder / subfolder / name)
    (folder / "bad.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    return folder


def good_recordings(recordings):
    """The readable recordings, in the order the command line finds (and tabulates) them."""
    legacy = [recordings / "legacy" / name for name in LEGACY_FILES]
    return sorted(legacy + [recordings / "real" / name for name in REAL_FILES])


def output_stem(output_dir, recordings, recording):
    relative = recording.relative_to(recordings)
    return output_dir / relative.parent / relative.stem


def detect_arguments(recordings, output_dir, model_folder):
    return [
        recordings,
        "--recursive",
        "--output-dir",
        output_dir,
        "--model",
        model_folder,
        "--batch-size",
        BATCH_SIZE,
        "--threshold",
        THRESHOLD,
        "--min-positive-seconds",
        MIN_POSITIVE_SECONDS,
    ]


@pytest.fixture(scope="module")
def first_run(recordings, tiny_model_folder, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("results")
    completed = run_orcahello_cli(*detect_arguments(recordings, output_dir, tiny_model_folder), "--plot")
    return completed, output_dir


def read_tab_separated(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter="\t"))


# ---------------------------------------------------------------------------------------------------------------
# One run over a folder tree with a corrupt file in it
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
def test_bad_file_is_reported_and_every_other_file_is_processed(first_run, recordings):
    completed, output_dir = first_run
    assert completed.returncode == 1, completed.stderr
    error_lines = [line for line in completed.stderr.splitlines() if line.startswith("ERROR ")]
    assert len(error_lines) == 1 and error_lines[0].startswith(f"ERROR {recordings / 'bad.wav'}: cannot decode audio")
    assert "5 scored" in completed.stdout and "1 failed" in completed.stdout

    for recording in good_recordings(recordings):
        stem = output_stem(output_dir, recordings, recording)
        for kind in PER_FILE_OUTPUTS:
            # Audacity labels of a recording without detections are an empty file; every other output has a header.
            assert os.path.isfile(writers.output_path(stem, kind)), (recording.name, kind)
            assert kind == "audacity" or os.path.getsize(writers.output_path(stem, kind)) > 0, (recording.name, kind)
    assert not list(output_dir.glob("bad.*"))

    with open(output_dir / "summary.csv", newline="") as handle:
        summary = {row["file"]: row for row in csv.DictReader(handle)}
    assert len(summary) == 6
    assert summary[str(recordings / "bad.wav")]["status"] == "error"
    assert "cannot decode audio" in summary[str(recordings / "bad.wav")]["error"]
    for recording in good_recordings(recordings):
        assert summary[str(recording)]["status"] == "ok"

    run = json.loads((output_dir / "orcahello_run.json").read_text())
    assert run["files"] == {"found": 6, "scored": 5, "skipped": 0, "failed": 1, "inputs_without_audio": 0}
    assert run["parameters"]["local_threshold"] == THRESHOLD
    assert run["options"]["batch_size"] == BATCH_SIZE and run["options"]["plot"] is True
    assert run["started_at"] <= run["finished_at"]


@pytest.mark.needs_test_data
def test_json_and_csv_hold_the_pipelines_numbers(first_run, recordings, tiny_pipeline, tiny_model_folder):
    _, output_dir = first_run
    for recording in good_recordings(recordings):
        stem = output_stem(output_dir, recordings, recording)
        expected = tiny_pipeline(str(recording), return_timestamps=True, batch_size=BATCH_SIZE, **PIPELINE_PARAMETERS)
        with open(writers.output_path(stem, "json")) as handle:
            document = json.load(handle)

        assert document["global_prediction"] == expected["global_prediction"], recording.name
        assert document["global_confidence"] == pytest.approx(expected["global_confidence"], abs=1e-4)
        assert document["local_predictions"] == expected["local_predictions"]
        np.testing.assert_allclose(document["local_confidences"], expected["local_confidences"], rtol=0, atol=1e-6)
        assert [row["start_time_s"] for row in document["submission"]] == [
            row["start_time_s"] for row in expected["submission"]
        ]
        assert document["detections"] == [
            {key: pytest.approx(value, abs=1e-6) for key, value in detection.items()}
            for detection in expected["detections"]
        ]
        assert len(document["windows"]) == len(expected["windows"]) and document["warnings"] == expected["warnings"]
        assert document["parameters"] == {
            **expected["parameters"],
            "batch_size": BATCH_SIZE,
            "device": "cpu",
            "engine": "auto",
        }
        assert document["model"]["name_or_path"] == str(tiny_model_folder)
        assert len(document["model"]["weights_sha256"]) == 64
        assert document["version"] == orcahello.__version__ and document["run_hash"]

        with open(writers.output_path(stem, "csv"), newline="") as handle:
            rows = list(csv.reader(handle))
        # A name that says when the recording started (`..._20190904T064203Z.wav`) gives the rows UTC times.
        with_utc = ["start_time_utc"] if document["start_time_utc"] else []
        assert rows[0] == ["wav_filename", "start_time_s", "duration_s", "confidence", *with_utc]
        assert len(rows) - 1 == len(expected["submission"])
        assert {row[0] for row in rows[1:]} == {recording.name}
        assert [int(row[1]) for row in rows[1:]] == list(range(len(rows) - 1))  # whole seconds, as production
        np.testing.assert_allclose([float(row[3]) for row in rows[1:]], expected["local_confidences"], atol=1e-6)


@pytest.mark.needs_test_data
def test_raven_and_audacity_tables(first_run, recordings):
    _, output_dir = first_run
    combined_expected, offset = [], 0.0
    for recording in good_recordings(recordings):
        stem = output_stem(output_dir, recordings, recording)
        with open(writers.output_path(stem, "json")) as handle:
            document = json.load(handle)
        detections = document["detections"]

        table = read_tab_separated(writers.output_path(stem, "raven"))
        assert table[0] == [
            "Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
            "Low Freq (Hz)", "High Freq (Hz)", "Label", "Score",
            *(["Begin UTC", "End UTC"] if document["start_time_utc"] else []), "Begin Path",
        ]  # fmt: skip
        assert {row[-1] for row in table[1:]} <= {str(recording)}
        assert len(table) - 1 == len(detections)
        for index, (row, detection) in enumerate(zip(table[1:], detections), start=1):
            assert row[:3] == [str(index), "Spectrogram 1", "1"] and row[5:7] == ["0", "10000"]
            assert float(row[3]) == pytest.approx(detection["start"])
            assert float(row[4]) == pytest.approx(detection["end"])
            assert float(row[8]) == pytest.approx(detection["max_confidence"], abs=1e-6)

        with open(writers.output_path(stem, "audacity")) as handle:
            labels = [line.rstrip("\n").split("\t") for line in handle]
        assert [(float(start), float(end)) for start, end, _ in labels] == [(d["start"], d["end"]) for d in detections]
        assert all(label.startswith("SRKW call ") for _, _, label in labels)

        for detection in detections:
            combined_expected.append((recording.relative_to(recordings).as_posix(), offset, detection))
        offset += document["duration_s"]
    assert combined_expected, "no detections at all: the tables were not exercised"

    combined = read_tab_separated(output_dir / "OrcaHello.combined.selection.table.txt")
    assert combined[0][-3:] == ["Begin File", "File Offset (s)", "Begin Path"] and len(combined[0]) == 12
    assert len(combined) - 1 == len(combined_expected)
    for row, (begin_file, file_start, detection) in zip(combined[1:], combined_expected):
        assert row[9] == begin_file
        assert float(row[10]) == pytest.approx(detection["start"])
        assert float(row[3]) == pytest.approx(file_start + detection["start"], abs=1e-3)


@pytest.mark.needs_test_data
def test_plot_is_a_picture(first_run, recordings):
    image = pytest.importorskip("matplotlib.image")
    _, output_dir = first_run
    stem = output_stem(output_dir, recordings, recordings / "real" / REAL_FILES[1])  # 4.5 s with calls
    pixels = image.imread(writers.output_path(stem, "png"))
    assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 1000
    assert pixels[..., :3].std() > 0.05  # a spectrogram, not a blank canvas


@pytest.mark.needs_test_data
def test_dataset_scores_equal_the_command_lines(first_run, recordings, tiny_pipeline):
    datasets = pytest.importorskip("datasets")
    from orcahello.datasets_utils import score_dataset

    _, output_dir = first_run
    paths = good_recordings(recordings)
    # Undecoded rows as datasets holds them: paths only, or the file's bytes (e.g. a dataset from the Hub).
    rows = [{"bytes": None, "path": str(path)} for path in paths[:3]]
    rows += [{"bytes": path.read_bytes(), "path": path.name} for path in paths[3:]]
    # cast_column, not features=: datasets >= 4 encodes Audio values with torchcodec, a cast needs nothing.
    dataset = datasets.Dataset.from_dict({"audio": rows}).cast_column("audio", datasets.Audio(decode=False))

    scored = score_dataset(dataset, tiny_pipeline, batch_size=BATCH_SIZE, **PIPELINE_PARAMETERS)
    assert {"global_prediction", "global_confidence", "local_confidences"} <= set(scored.column_names)
    for path, row in zip(paths, scored):
        with open(writers.output_path(output_stem(output_dir, recordings, path), "json")) as handle:
            document = json.load(handle)
        assert row["global_prediction"] == document["global_prediction"], path.name
        assert row["global_confidence"] == pytest.approx(document["global_confidence"], abs=1e-4)
        np.testing.assert_allclose(row["local_confidences"], document["local_confidences"], rtol=0, atol=1e-6)


@pytest.mark.needs_test_data
def test_second_run_skips_finished_files(first_run, recordings, tiny_model_folder):
    # Runs after the tests that read the first run's outputs: it rewrites the run-level files.
    _, output_dir = first_run
    outputs = [
        writers.output_path(output_stem(output_dir, recordings, recording), kind)
        for recording in good_recordings(recordings)
        for kind in PER_FILE_OUTPUTS
    ]
    modified = {path: os.stat(path).st_mtime_ns for path in outputs}

    completed = run_orcahello_cli(*detect_arguments(recordings, output_dir, tiny_model_folder), "--plot")
    assert completed.returncode == 1  # bad.wav is tried again, and fails again
    assert "5 skipped" in completed.stdout and "0 scored" in completed.stdout
    assert sum(line.startswith("ERROR ") for line in completed.stderr.splitlines()) == 1
    assert {path: os.stat(path).st_mtime_ns for path in outputs} == modified
    run = json.loads((output_dir / "orcahello_run.json").read_text())
    assert run["files"] == {"found": 6, "scored": 0, "skipped": 5, "failed": 1, "inputs_without_audio": 0}


# ---------------------------------------------------------------------------------------------------------------
# In-process runs of `main` (quick: the model is already imported) and the helpers behind them
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
def test_resume_rescoring_rules(tiny_model_folder, tmp_path, capsys):
    recording = tmp_path / "in" / "clip.wav"
    recording.parent.mkdir()
    shutil.copyfile(LEGACY / "audio" / "edge_20k_6s.wav", recording)
    output_dir = tmp_path / "out"
    arguments = ["detect", str(recording), "--output-dir", str(output_dir), "--model", str(tiny_model_folder)]
    json_path = output_dir / "clip.orcahello.json"

    assert cli.main(arguments + ["--format", "csv"]) == 0
    assert json_path.exists() and (output_dir / "clip.orcahello.csv").exists()  # JSON always: resume reads it
    assert not (output_dir / "clip.OrcaHello.selection.table.txt").exists()
    first_hash = json.loads(json_path.read_text())["run_hash"]
    scored_at = json_path.stat().st_mtime_ns

    # Same model and parameters, another format: not scored again, the missing table written from the JSON.
    assert cli.main(arguments + ["--format", "raven"]) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert json_path.stat().st_mtime_ns == scored_at
    assert (output_dir / "clip.OrcaHello.selection.table.txt").exists()

    # Other parameters, or --overwrite: scored again.
    assert cli.main(arguments + ["--threshold", "0.2"]) == 0
    assert "1 scored" in capsys.readouterr().out
    assert json.loads(json_path.read_text())["run_hash"] != first_hash
    # Scored again, the earlier scoring's outputs go, so a later resume never finds a table of other parameters.
    assert cli.main(arguments + ["--threshold", "0.2", "--overwrite", "--format", "json"]) == 0
    assert "1 scored" in capsys.readouterr().out
    assert sorted(path.name for path in output_dir.glob("clip.*")) == ["clip.orcahello.json"]


@pytest.mark.needs_test_data
def test_fast_mode_is_part_of_the_resume_check_and_the_engine_is_not(tiny_model_folder, tmp_path, capsys):
    from engines_orcahello import cpu_supports_bfloat16

    recording = LEGACY / "audio" / "edge_20k_6s.wav"
    output_dir = tmp_path / "out"
    arguments = ["detect", str(recording), "--output-dir", str(output_dir), "--model", str(tiny_model_folder),
                 "--format", "json"]  # fmt: skip
    json_path = output_dir / "edge_20k_6s.orcahello.json"
    assert cli.main(arguments + ["--engine", "onnxruntime"]) == 0
    float32 = json.loads(json_path.read_text())
    assert "precision" not in float32["parameters"]  # results scored before the option existed still resume
    assert cli.main(arguments + ["--engine", "torch"]) == 0  # engines agree to ~1e-5: nothing to rescore
    assert "1 skipped" in capsys.readouterr().out
    status = cli.main(arguments + ["--precision", "bfloat16"])
    output = capsys.readouterr()
    if not cpu_supports_bfloat16():
        assert status == 1 and "bfloat16 instructions" in output.err
        return
    assert status == 0 and "1 scored" in output.out
    fast = json.loads(json_path.read_text())
    assert fast["parameters"]["precision"] == "bfloat16" and fast["run_hash"] != float32["run_hash"]
    assert len(fast["windows"]) == len(float32["windows"])


@pytest.mark.needs_test_data
def test_missing_inputs_are_errors_but_the_rest_runs(tiny_model_folder, tmp_path, capsys):
    arguments = [
        "detect",
        str(LEGACY / "audio" / "edge_20k_6s.wav"),
        str(tmp_path / "nowhere.wav"),
        str(tmp_path / "*.flac"),
        "--output-dir",
        str(tmp_path / "out"),
        "--model",
        str(tiny_model_folder),
        "--format",
        "json",
    ]
    assert cli.main(arguments) == 1
    errors = capsys.readouterr().err
    assert f"ERROR {tmp_path / 'nowhere.wav'}: no such file or directory" in errors
    assert f"ERROR {tmp_path / '*.flac'}: no audio files match this pattern" in errors
    assert (tmp_path / "out" / "edge_20k_6s.orcahello.json").exists()
    with open(tmp_path / "out" / "summary.csv", newline="") as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["error", "error", "ok"]
    # Nothing to score at all: no model is loaded, the exit status says so.
    assert cli.main(["detect", str(tmp_path / "nowhere.wav"), "--model", str(tmp_path / "no-model")]) == 1


def test_plot_without_matplotlib_is_a_clear_error(tmp_path):
    # sys.modules[name] = None makes `import name` raise ImportError, as if matplotlib were not installed.
    code = (
        "import sys; sys.modules['matplotlib'] = None; from orcahello.cli import main; "
        f"sys.exit(main(['detect', {str(tmp_path)!r}, '--plot', '--model', {str(tmp_path)!r}]))"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert "--plot needs matplotlib" in completed.stderr and "pip install" in completed.stderr


def test_find_audio_files(tmp_path):
    tree = ("a.wav", "B.FLAC", "c.Mp3", "notes.txt", "._a.wav", "sub/d.ogg", "sub/deeper/e.wav", "site/day1/f.wav")
    for name in tree:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")

    def names(files):
        return [os.path.relpath(path, tmp_path).replace(os.sep, "/") for path in files]

    files, problems = inputs.find_audio_files([str(tmp_path)])
    assert names(files) == ["B.FLAC", "a.wav", "c.Mp3"] and problems == []
    files, _ = inputs.find_audio_files([str(tmp_path)], recursive=True)
    assert names(files) == ["B.FLAC", "a.wav", "c.Mp3", "site/day1/f.wav", "sub/d.ogg", "sub/deeper/e.wav"]
    files, _ = inputs.find_audio_files([str(tmp_path / "**" / "*.wav")], recursive=True)
    assert names(files) == ["a.wav", "site/day1/f.wav", "sub/deeper/e.wav"]
    # A file named explicitly is taken whatever its extension; each file once.
    files, _ = inputs.find_audio_files([str(tmp_path / "notes.txt"), str(tmp_path / "a.wav"), str(tmp_path)])
    assert names(files) == ["notes.txt", "a.wav", "B.FLAC", "c.Mp3"]
    _, problems = inputs.find_audio_files([str(tmp_path / "site")])
    assert problems == [
        (
            str(tmp_path / "site"),
            "no audio files (.wav, .flac, .ogg, .mp3, .m3u8) or .ts segments in this folder "
            "(add --recursive to search its subfolders)",
        )
    ]


def test_outputs_mirror_the_input_tree_and_keep_same_stem_recordings_apart(tmp_path):
    paths = [str(tmp_path / "site1" / "a.wav"), str(tmp_path / "site1" / "a.flac"), str(tmp_path / "site2" / "b.wav")]
    jobs = inputs.plan_jobs(paths, "results")
    assert [job.output_stem for job in jobs] == [
        os.path.join("results", "site1", "a.wav"),
        os.path.join("results", "site1", "a.flac"),
        os.path.join("results", "site2", "b"),
    ]
    assert [job.relative_path for job in jobs] == ["site1/a.wav", "site1/a.flac", "site2/b.wav"]
    assert inputs.plan_jobs([str(tmp_path / "one.wav")], "results")[0].output_stem == os.path.join("results", "one")


def test_default_model(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCAHELLO_MODEL", "some/where")
    assert models.default_model() == "some/where"
    monkeypatch.delenv("ORCAHELLO_MODEL")
    monkeypatch.setattr(models, "REPO_ROOT", str(tmp_path))
    assert models.default_model() == "orcasound/orcahello-srkw-detector-v1"
    standin = tmp_path / "models" / "standin-resnet50-synthetic-weights"
    standin.mkdir(parents=True)
    (standin / "config.json").write_text("{}")
    assert models.default_model() == str(standin)


def test_git_revision_of_a_cloned_model_folder(tmp_path):
    assert provenance.git_revision(str(tmp_path)) is None
    git_dir = tmp_path / ".git"
    (git_dir / "refs" / "heads").mkdir(parents=True)
    (git_dir / "HEAD").write_text("ref: refs/heads/main\n")
    (git_dir / "packed-refs").write_text("# pack-refs with: peeled\n" + "a" * 40 + " refs/heads/main\n")
    assert provenance.git_revision(str(tmp_path)) == "a" * 40
    (git_dir / "refs" / "heads" / "main").write_text("b" * 40 + "\n")
    assert provenance.git_revision(str(tmp_path)) == "b" * 40


def command_options(command):
    """`{flag: its argparse action}` of one `orcahello` command."""
    parser = cli.build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction)).choices
    return {flag: action for action in commands[command]._actions for flag in action.option_strings}


@pytest.mark.parametrize(
    "flag, commands",
    [
        ("--model", ("detect", "batch", "embed", "live")),
        ("--device", ("detect", "embed", "live")),
        ("--batch-size", ("detect", "embed", "live")),
        ("--engine", ("detect", "live")),
        ("--preset", ("detect", "batch", "embed")),
        ("--threshold", ("detect", "batch", "live")),
        ("--min-positive-seconds", ("detect", "batch", "live")),
        ("--aggregation", ("detect", "batch", "live")),
        ("--min-global-confidence", ("detect", "batch", "live")),
        ("--site-thresholds", ("detect", "batch")),
        ("--recursive", ("detect", "batch", "embed")),
        ("--overwrite", ("detect", "batch", "embed")),
    ],
)
def test_an_option_shared_by_commands_means_the_same_in_each(flag, commands):
    first, *others = [command_options(command)[flag] for command in commands]
    for action in others:
        assert (action.type, action.default, action.choices, action.help, action.metavar, action.nargs) == (
            first.type,
            first.default,
            first.choices,
            first.help,
            first.metavar,
            first.nargs,
        )


@pytest.mark.parametrize("command, source", [("detect", "a.wav"), ("embed", "a.wav"), ("live", "http://host/node")])
def test_without_batch_size_the_device_chooses_it(command, source):
    """`--batch-size` left out is None: the command takes models.default_batch_size of the device it runs on."""
    assert cli.build_parser().parse_args([command, source]).batch_size is None
    assert (models.default_batch_size("cpu"), models.default_batch_size("cuda")) == (8, 32)


# ---------------------------------------------------------------------------------------------------------------
# Typed options: the command line ends in cli.py
# ---------------------------------------------------------------------------------------------------------------


def minimal_command_lines():
    """Each command's shortest command line, and the typed options it must give: its required values, every other
    option at the options class's own default (the parser's defaults and the class's are the same)."""
    from orcahello import adapt, batch, calibrate, detect, embed, evaluate, live, quantize, reaggregate, search
    from orcahello.conversion import convert_fastai, upload
    from orcahello.training import finetune

    return {
        "detect": (["a.wav"], detect.DetectOptions(paths=("a.wav",))),
        "embed": (["a.wav"], embed.EmbedOptions(paths=("a.wav",))),
        "batch": (["a.wav"], batch.BatchOptions(inputs=("a.wav",))),
        "calibrate": (
            ["labels.csv", "--target-precision", "0.5", "--output", "sites.json"],
            calibrate.CalibrateOptions(labels="labels.csv", target_precision=0.5, output="sites.json"),
        ),
        "evaluate": (
            ["results", "--annotations", "a.csv", "--output", "m.json"],
            evaluate.EvaluateOptions(detections=("results",), annotations=("a.csv",), output="m.json"),
        ),
        "live": (["http://host/node"], live.LiveOptions(sources=("http://host/node",))),
        "finetune": (
            ["--model", "m", "--train", "t", "--eval", "e", "--output-dir", "o"],
            finetune.FinetuneOptions(model="m", train="t", eval="e", output_dir="o"),
        ),
        "convert": (
            ["--input", "model.pkl", "--output-dir", "out"],
            convert_fastai.ConvertOptions(input="model.pkl", output_dir="out"),
        ),
        "upload": (["folder", "--repo-id", "you/test"], upload.UploadOptions(folder="folder", repo_id="you/test")),
        "adapt": (
            ["labels.csv", "--recordings", "a.wav", "--output-dir", "adapted"],
            adapt.AdaptOptions(annotations=("labels.csv",), recordings=("a.wav",), output_dir="adapted"),
        ),
        "search": (
            ["tables", "--query-clip", "clip.wav"],
            search.SearchOptions(tables=("tables",), query_clip="clip.wav"),
        ),
        "reaggregate": (
            ["results", "--output-dir", "out"],
            reaggregate.ReaggregateOptions(results=("results",), output_dir="out"),
        ),
        "quantize": (
            ["folder", "--calibration", "a.wav"],
            quantize.QuantizeOptions(model="folder", calibration=("a.wav",)),
        ),
    }


def test_every_command_has_a_minimal_command_line_here():
    commands = {}
    cli.build_parser(commands)
    assert sorted(commands) == sorted(minimal_command_lines())


@pytest.mark.parametrize(
    "command, run",
    [
        ("detect", "orcahello.detect.detect_command"),
        ("embed", "orcahello.embed.embed_command"),
        ("batch", "orcahello.batch.command.batch_command"),
        ("calibrate", "orcahello.calibrate.calibrate_command"),
        ("evaluate", "orcahello.evaluate.evaluate_command"),
        ("live", "orcahello.live.live_command"),
        ("finetune", "orcahello.training.finetune.finetune_command"),
        ("convert", "orcahello.conversion.convert_fastai.convert_command"),
        ("upload", "orcahello.conversion.upload.upload_command"),
        ("adapt", "orcahello.adapt.adapt_command"),
        ("search", "orcahello.search.search_command"),
        ("reaggregate", "orcahello.reaggregate.reaggregate_command"),
        ("quantize", "orcahello.quantize.quantize_command"),
    ],
)
def test_each_command_runs_on_frozen_typed_options_built_from_its_command_line(command, run, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    arguments, expected = minimal_command_lines()[command]
    typed = cli.command_options(cli.build_parser().parse_args([command, *arguments]))
    assert typed == expected
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(typed, dataclasses.fields(typed)[0].name, None)
    assert not any(isinstance(getattr(typed, field.name), list) for field in dataclasses.fields(typed))
    module, _, name = run.rpartition(".")
    # eval_str: a module with `from __future__ import annotations` keeps its annotations as strings.
    parameters = list(
        inspect.signature(getattr(importlib.import_module(module), name), eval_str=True).parameters.values()
    )
    assert parameters[0].annotation is type(typed)


def test_an_option_missing_from_the_typed_options_is_an_error():
    """Every field of a command's options comes from its command line: none is left to a silent default."""
    args = cli.build_parser().parse_args(["upload", "folder", "--repo-id", "you/test"])
    del args.dry_run
    with pytest.raises(TypeError, match="UploadOptions: no argument gives dry_run"):
        cli.command_options(args)


def test_contradicting_options_end_as_argparse_errors(capsys):
    from orcahello.training import finetune

    arguments = ["--model", "m", "--train", "t", "--eval", "e", "--output-dir", "o", "--train-batch-norm"]
    with pytest.raises(SystemExit) as exit_status:
        finetune.main(arguments)  # the module's entry point is `orcahello finetune`
    assert exit_status.value.code == 2
    error = capsys.readouterr().err
    assert "usage: orcahello finetune" in error
    assert "error: --train-batch-norm only applies with --freeze-backbone" in error


def test_building_the_command_line_loads_no_framework():
    code = (
        "import sys, orcahello.cli\n"
        "orcahello.cli.build_parser()\n"
        "print(sorted(name for name in ('torch', 'transformers', 'ray', 'pyarrow') if name in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "[]"
