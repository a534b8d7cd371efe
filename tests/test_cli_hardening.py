"""
What stopped or misled a new user of `orcahello detect` / `batch`: options out of range, a mistyped `--model`,
Ctrl-C, the synthetic stand-in's results not saying so, an unpinned Hub model, a model's own code running, no progress
inside a long recording, a resume with nothing to do that still loaded the model.
"""

import csv
import fcntl
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time

import numpy as np
import pytest
import soundfile
from conftest import LEGACY, REPO_ROOT

import orcahello
import vocabulary_orcahello
from orcahello import cli, models, run_lock, writers

WAV = LEGACY / "audio" / "edge_20k_6s.wav"


def run_cli(*arguments, env=None, cwd=REPO_ROOT, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "orcahello.cli", *map(str, arguments)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
@pytest.mark.parametrize("command", ["detect", "batch", "live"])
@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--threshold", "1.5", "must be a number from 0 to 1, got 1.5"),
        ("--threshold", "nan", "must be a number from 0 to 1, got nan"),
        ("--threshold", "-0.1", "must be a number from 0 to 1, got -0.1"),
        ("--threshold", "half", "must be a number from 0 to 1, got 'half'"),
        ("--min-positive-seconds", "-1", "must be a whole number of at least 0, got -1"),
        # Production's 0-100 scale given to a 0-1 option: refused, its 0-1 form named.
        (
            "--min-global-confidence",
            "60",
            "got 60.0 (every confidence is 0-1: production's 60 on its 0-100 scale is 0.6)",
        ),
        ("--threshold", "50", "got 50.0 (every confidence is 0-1: production's 50 on its 0-100 scale is 0.5)"),
    ],
)
def test_out_of_range_options_are_refused(command, option, value, message, capsys):
    with pytest.raises(SystemExit) as exit_status:
        cli.build_parser().parse_args([command, str(WAV), option, value])
    assert exit_status.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.needs_test_data
def test_limits_themselves_are_accepted():
    args = cli.build_parser().parse_args(["detect", str(WAV), "--threshold", "1", "--min-positive-seconds", "0"])
    assert (args.threshold, args.min_positive_seconds) == (1.0, 0)


# ---------------------------------------------------------------------------------------------------------------
# --model
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
@pytest.mark.parametrize(
    "given, message",
    [
        ("models/orcahello-srkw-detectr-v1", "no such model folder: models/orcahello-srkw-detectr-v1"),
        ("./my-model", "no such model folder: ./my-model"),
        ("/nonexistent/orcahello", "no such model folder: /nonexistent/orcahello"),
        ("orcahello model", "no such model folder: orcahello model"),
        ("empty_folder", "empty_folder is a folder but not a model folder (it has no config.json)"),
    ],
)
def test_a_mistyped_model_is_named_as_a_missing_folder(given, message, tmp_path, monkeypatch, capsys):
    (tmp_path / "models").mkdir()
    (tmp_path / "empty_folder").mkdir()
    monkeypatch.chdir(tmp_path)
    status = cli.main(["detect", str(WAV), "--model", given, "--output-dir", str(tmp_path / "out")])
    assert status == orcahello.EXIT_CANNOT_RUN
    err = capsys.readouterr().err
    assert f"ERROR: {message}" in err
    assert "repo id" not in err.lower() and "repo_id" not in err


PLANTED_CODE_FILES = (
    "configuration_orcahello.py",
    "modeling_orcahello.py",
    "feature_extraction_orcahello.py",
    "pipeline_orcahello.py",
)


def plant_code(folder, marker):
    """Make every custom-code file of the model folder `folder` write `marker` when it is imported."""
    for name in PLANTED_CODE_FILES:
        path = folder / name
        path.write_text(f"open({str(marker)!r}, 'w').write('ran')\n" + path.read_text())


def hub_cache_with_two_commits(tmp_path, tiny_model_folder, marker):
    """A Hugging Face cache holding the default Hub repo at two commits: the pinned one, and a newer `main` with other
    weights (all zero). Both snapshots' code runs the attacker's code if it is ever imported."""
    import torch
    from safetensors.torch import load_file, save_file

    pinned, newer = "a" * 40, "b" * 40
    repo = tmp_path / "hub" / ("models--" + vocabulary_orcahello.HUB_MODEL_ID.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(newer)
    for commit in (pinned, newer):
        shutil.copytree(tiny_model_folder, repo / "snapshots" / commit)
        plant_code(repo / "snapshots" / commit, marker)
    weights_path = repo / "snapshots" / newer / vocabulary_orcahello.WEIGHTS_FILE
    weights = load_file(weights_path)
    save_file({name: torch.zeros_like(tensor) for name, tensor in weights.items()}, weights_path, {"format": "pt"})
    return pinned


def test_the_default_hub_model_loads_only_its_pinned_revision_and_never_its_code(tiny_model_folder, tmp_path):
    marker = tmp_path / "pwned"
    pinned = hub_cache_with_two_commits(tmp_path, tiny_model_folder, marker)
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1",
               HF_MODULES_CACHE=str(tmp_path / "modules"))  # fmt: skip
    program = (
        "import sys\n"
        "import vocabulary_orcahello\nfrom orcahello import models, provenance\n"
        "try:\n"
        "    models.load_pipeline(vocabulary_orcahello.HUB_MODEL_ID, 'cpu')\n"
        "    print('LOADED unpinned')\n"
        "except models.ModelNotFoundError as error:\n"
        "    print('REFUSED', error)\n"
        f"models.HUB_MODEL_REVISION = {pinned!r}\n"
        "pipe = models.load_pipeline(vocabulary_orcahello.HUB_MODEL_ID, 'cpu')\n"
        "print('MODULES', type(pipe).__module__, type(pipe.model).__module__, type(pipe.feature_extractor).__module__)\n"
        "print('WEIGHTS', float(sum(parameter.abs().sum() for parameter in pipe.model.parameters())))\n"
        "print('REVISION', provenance.describe_model(pipe, vocabulary_orcahello.HUB_MODEL_ID)['revision'])\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "REFUSED no local model, and orcasound/orcahello-srkw-detector-v1 has no pinned revision" in completed.stdout
    assert f"REVISION {pinned}" in completed.stdout
    # This package's classes, never the snapshot's code; the pinned snapshot's weights (main's are all zero).
    assert "MODULES pipeline_orcahello modeling_orcahello feature_extraction_orcahello" in completed.stdout
    assert float(completed.stdout.split("WEIGHTS ")[1].split()[0]) > 0
    assert not marker.exists(), "the Hub snapshot's code ran"


@pytest.mark.needs_test_data
def test_a_model_folders_own_code_never_runs(tiny_model_folder, tmp_path):
    """The commands take weights and settings from a model folder, never code: its .py files are not imported."""
    marker = tmp_path / "pwned"
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    plant_code(folder, marker)
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"))
    completed = run_cli("detect", WAV, "--model", folder, "--output-dir", tmp_path / "out", env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (tmp_path / "out" / "edge_20k_6s.orcahello.json").is_file()
    assert not marker.exists(), "the model folder's code ran"


# ---------------------------------------------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------------------------------------------


def test_ctrl_c_exits_130_with_one_line(tiny_model_folder, tmp_path):
    # An hour: scoring it takes several times longer than loading on any machine here, so the signal below always
    # arrives while the command runs, never while the interpreter is already shutting down (which ends with -2).
    long_recording = tmp_path / "long.wav"
    rng = np.random.default_rng(3)
    soundfile.write(str(long_recording), rng.integers(-4000, 4000, 3600 * 20000, dtype=np.int16), 20000)
    process = subprocess.Popen(
        [sys.executable, "-m", "orcahello.cli", "detect", str(long_recording), "--model", str(tiny_model_folder),
         "--output-dir", str(tmp_path / "out")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As from a terminal: a shell's background job (CI runners) starts with Ctrl-C ignored, and Python keeps that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    # Once the run holds its folder's lock, main() is running and its Ctrl-C handling is in place (a fixed sleep
    # could land in the interpreter's start-up on a loaded machine, where Python's own KeyboardInterrupt ends it).
    lock = tmp_path / "out" / run_lock.LOCK_FILE_NAME
    deadline = time.monotonic() + 300
    while not lock.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # in the middle of loading or scoring
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == orcahello.EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "Interrupted: the finished results are kept; run the same command again to do the rest."
    )


# ---------------------------------------------------------------------------------------------------------------
# The synthetic stand-in
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def standin_folder(tiny_model_folder, tmp_path):
    """A model folder marked as the stand-in the way scripts/fetch_model.py marks it."""
    sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
    try:
        import fetch_model
    finally:
        sys.path.pop(0)
    folder = tmp_path / "some-model"
    shutil.copytree(tiny_model_folder, folder)
    fetch_model.mark_synthetic_weights(str(folder))
    return folder


@pytest.mark.needs_test_data
def test_every_output_file_says_the_weights_are_the_standin(standin_folder, tmp_path):
    output_dir = tmp_path / "out"
    completed = run_cli("detect", WAV, "--model", standin_folder, "--output-dir", output_dir, "--plot")
    assert completed.returncode == 0, completed.stderr
    assert "SYNTHETIC stand-in" in completed.stderr
    stem = output_dir / "edge_20k_6s"
    document = json.loads(open(writers.output_path(stem, "json")).read())
    assert document["model"]["synthetic_weights"] is True
    assert document["warnings"][0] == writers.STANDIN_WARNING
    with open(writers.output_path(stem, "csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["model_weights"] == writers.STANDIN_VALUE for row in rows)
    raven_header = open(writers.output_path(stem, "raven")).readline().rstrip("\n").split("\t")
    assert raven_header[-1] == writers.RAVEN_STANDIN_COLUMN
    assert (
        open(writers.output_path(stem, "audacity"))
        .readline()
        .startswith(f"0.000000\t0.000000\t{writers.STANDIN_VALUE}")
    )
    combined = open(output_dir / writers.COMBINED_RAVEN_TABLE).readline().rstrip("\n").split("\t")
    assert combined[-1] == writers.RAVEN_STANDIN_COLUMN
    assert writers.STANDIN_WARNING in (output_dir / writers.SUMMARY_CSV).read_text()
    assert json.loads((output_dir / writers.RUN_PARAMETERS_JSON).read_text())["model"]["synthetic_weights"] is True
    assert os.path.getsize(writers.output_path(stem, "png")) > 0


@pytest.mark.needs_test_data
def test_real_weights_get_no_marker(tiny_model_folder, tmp_path):
    output_dir = tmp_path / "out"
    assert cli.main(["detect", str(WAV), "--model", str(tiny_model_folder), "--output-dir", str(output_dir)]) == 0
    stem = output_dir / "edge_20k_6s"
    document = json.loads(open(writers.output_path(stem, "json")).read())
    assert "synthetic_weights" not in document["model"] and writers.STANDIN_WARNING not in document["warnings"]
    assert "model_weights" not in open(writers.output_path(stem, "csv")).readline()


# ---------------------------------------------------------------------------------------------------------------
# Progress and resuming
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
def test_the_pipeline_reports_progress_in_windows(tiny_pipeline):
    calls = []
    result = tiny_pipeline(str(WAV), return_timestamps=True, batch_size=2,
                           progress_callback=lambda count, total: calls.append((count, total)))  # fmt: skip
    assert sum(count for count, _ in calls) == len(result["windows"])
    assert {total for _, total in calls} == {len(result["windows"])}
    assert len(calls) == -(-len(result["windows"]) // 2)


@pytest.mark.needs_test_data
def test_the_progress_bar_counts_windows_inside_a_file(tiny_model_folder, tmp_path):
    main_side, terminal = pty.openpty()  # a terminal, where the bar is shown
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 200, 0, 0))  # 200 columns wide
    process = subprocess.Popen(
        [sys.executable, "-m", "orcahello.cli", "detect", str(WAV), "--model", str(tiny_model_folder),
         "--output-dir", str(tmp_path / "out"), "--batch-size", "1"],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=terminal,
    )  # fmt: skip
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(main_side, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(main_side)
    assert process.wait(timeout=300) == 0
    text = shown.decode(errors="replace")
    assert "OrcaHello" in text and f"file 1/1 {WAV.name}" in text  # one bar for the run, the file in its postfix
    assert "5/5 [" in text and "window" in text, text[-2000:]


@pytest.mark.needs_test_data
def test_a_resume_with_nothing_to_do_never_loads_the_model(tiny_model_folder, tmp_path, monkeypatch, capsys):
    arguments = ["detect", str(WAV), "--model", str(tiny_model_folder), "--output-dir", str(tmp_path / "out")]
    assert cli.main(arguments) == 0

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model's weights were loaded for a run with nothing to score")

    monkeypatch.setattr(models, "load_pipeline", must_not_load)
    capsys.readouterr()
    assert cli.main(arguments) == 0
    assert "1 file(s): 0 scored, 1 skipped" in capsys.readouterr().out
    # Something to score again loads it.
    assert cli.main(arguments + ["--overwrite"]) == orcahello.EXIT_CANNOT_RUN
    assert "weights were loaded for a run with nothing to score" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
def test_a_decoding_audio_column_is_scored_without_torchcodec(tiny_pipeline):
    datasets = pytest.importorskip("datasets")
    from orcahello.datasets_utils import score_dataset

    paths = [str(LEGACY / "audio" / name) for name in ("edge_20k_6s.wav", "edge_stereo_48k_6s.wav")]
    # The default Audio() decodes rows on access, which needs torchcodec (not installed by set-up) and FFmpeg.
    dataset = datasets.Dataset.from_dict({"audio": paths}).cast_column("audio", datasets.Audio())
    scored = score_dataset(dataset, tiny_pipeline, batch_size=4)
    for path, row in zip(paths, scored):
        expected = tiny_pipeline(path, return_timestamps=True, batch_size=4)
        assert row["local_predictions"] == expected["local_predictions"]
        np.testing.assert_allclose(row["local_confidences"], expected["local_confidences"], rtol=0, atol=1e-6)


def test_batch_size_is_bounded_on_the_command_line(capsys):
    # F5: `--batch-size` had no upper bound (7.0 GB before failing).
    with pytest.raises(SystemExit) as exited:
        cli.main(["detect", "clip.wav", "--batch-size", "100000"])
    assert exited.value.code == 2
    assert f"--batch-size: must be at most {vocabulary_orcahello.MAX_BATCH_SIZE}" in capsys.readouterr().err


def test_a_url_without_a_host_is_a_problem_not_a_traceback():
    # N13: `detect http:///` crashed in os.path.join while planning the outputs.
    from orcahello import inputs

    files, problems = inputs.find_audio_files(["http:///", "https://", "http://127.0.0.1:9/x.m3u8"])
    assert files == ["http://127.0.0.1:9/x.m3u8"]
    assert problems == [(url, "a URL without a host (http://host/path)") for url in ("http:///", "https://")]
