"""
Shared test set-up: offline Hub, a private module cache, the test-data set, and tiny model folders.

The test-data set (`tests/test_data.json`: stand-in learners, WAVs and production's outputs, real recordings, the
moderator labels) is installed by `python scripts/fetch_test_data.py` and found only through the names below. A test
that reads it carries the `needs_test_data` mark (or uses `resnet50_folder`); without the set it is skipped with one
line saying how to get it.
"""

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    """The module of `scripts/<name>.py` (the scripts folder is no package), registered under its name."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fetch_test_data = load_script("fetch_test_data")
TEST_DATA_MANIFEST = fetch_test_data.read_manifest()
# The installed set, laid out as the project's shared folder: fixtures/, audio/real/, data/moderator_labels/.
SHARED = fetch_test_data.destination_folder().absolute()
LEGACY = SHARED / "fixtures" / "legacy"
REAL_AUDIO = SHARED / "audio" / "real"
MODERATOR_LABELS = SHARED / "data" / "moderator_labels"
# None when the set is installed, else the one line a skipped test shows.
TEST_DATA_MISSING = fetch_test_data.missing_reason(SHARED)
# Fixtures that read the set: a test using one, directly or through another fixture, needs it.
TEST_DATA_FIXTURES = frozenset({"resnet50_folder"})

# Never reach the Hub, and keep remote-code module copies out of the user's cache.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_MODULES_CACHE", tempfile.mkdtemp(prefix="orcahello-hf-modules-"))
sys.path.insert(0, str(REPO_ROOT))


def pytest_collection_modifyitems(config, items):
    """Without the test-data set, skip every test that needs it, each by name, with how to get the set."""
    if TEST_DATA_MISSING is None:
        return
    for item in items:
        if item.get_closest_marker("needs_test_data") or TEST_DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.skip(reason=f"{getattr(item, 'originalname', item.name)} {TEST_DATA_MISSING}"))


def run_orcahello_cli(*arguments):
    """Run `orcahello detect ARGUMENTS` in a subprocess from the repo root, as a user would (the venv need not have
    the package installed: `python -m orcahello.cli`)."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "orcahello.cli", "detect", *map(str, arguments)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


# Wall-clock fields: the only content of a recording's JSON allowed to differ between an interrupted (resumed) run and
# an uninterrupted one.
RECORDING_TIME_FIELDS = ("created_at",)


def comparable_output(folder, relative):
    """The bytes of output file `relative` under `folder`; for a recording's JSON, without its creation time."""
    from orcahello import writers

    data = (Path(folder) / relative).read_bytes()
    if relative.endswith(writers.OUTPUT_SUFFIXES["json"]):
        document = json.loads(data)
        for field in RECORDING_TIME_FIELDS:
            document.pop(field)
        return document
    return data


def ffmpeg_cli(*arguments):
    """
    Run the ffmpeg command line (imageio-ffmpeg's static binary: no system ffmpeg needed) and fail loudly. The HLS
    tests make their streams with it, and it is production's converter (`ffmpeg -i clip.ts clip.wav`).
    """
    import subprocess

    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    completed = subprocess.run([*command, *map(str, arguments)], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return completed


def make_orcanode_hls(wav_path, folder, channels=1, segment_seconds=10):
    """
    Encode `wav_path` as an Orcasound node streams it (orcanode's stream.sh): ffmpeg's segment muxer writing AAC at
    48 kHz in MPEG-TS, `live000.ts`, `live001.ts`, ... and the `live.m3u8` playlist, in `folder`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ffmpeg_cli(
        "-i", wav_path,
        "-f", "segment", "-segment_list", folder / "live.m3u8", "-segment_list_flags", "+live",
        "-segment_time", segment_seconds, "-segment_format", "mpegts",
        "-ar", 48000, "-ac", channels, "-acodec", "aac", folder / "live%03d.ts",
    )  # fmt: skip
    return folder


def production_wav(segment_paths, wav_path):
    """What production scores: the segments' bytes concatenated into one .ts file, then `ffmpeg -i clip.ts clip.wav`."""
    wav_path = Path(wav_path)
    concatenated = wav_path.with_suffix(".ts")
    with open(concatenated, "wb") as handle:
        for path in segment_paths:
            handle.write(Path(path).read_bytes())
    ffmpeg_cli("-i", concatenated, wav_path)
    return wav_path


class LocalHTTPServer:
    """
    A folder served over HTTP on 127.0.0.1 (a free port) from a background thread, for as long as the `with` block
    lasts: `server.url("a/b.m3u8")`.
    """

    def __init__(self, root):
        import functools
        import http.server

        class QuietHandler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *arguments):  # keep test output clean
                pass

        self._server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root))
        )
        self.port = self._server.server_address[1]

    def url(self, relative_path):
        return f"http://127.0.0.1:{self.port}/{Path(relative_path).as_posix()}"

    def __enter__(self):
        import threading

        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exception):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def legacy_wavs():
    """The fixture WAVs, listed by the manifest: the same tests and test names whether or not the set is installed."""
    return sorted(
        SHARED / entry["path"]
        for entry in TEST_DATA_MANIFEST["files"]
        if entry["path"].startswith("fixtures/legacy/audio/") and entry["path"].endswith(".wav")
    )


def production_result(wav_path, learner="fastai_r50_legacy"):
    suffix = {"fastai_r50_legacy": "fastai_predict", "fastai_r18_zip": "fastai_r18zip_predict"}[learner]
    with open(LEGACY / "outputs" / learner / f"{Path(wav_path).stem}.{suffix}.json") as handle:
        return json.load(handle)


def assert_matches_production(result, wav_path):
    """A file-level result (the pipeline's dict or detect's JSON) against production's for the same WAV: the
    one-second rows and decisions exactly, the confidences to float32 noise."""
    import numpy as np
    import pytest

    expected = production_result(wav_path)["result"]
    name = Path(wav_path).name
    assert len(result["local_confidences"]) == len(expected["local_confidences"]), name
    np.testing.assert_allclose(
        result["local_confidences"], expected["local_confidences"], rtol=0, atol=1e-3, err_msg=name
    )
    assert result["local_predictions"] == expected["local_predictions"], name
    assert result["global_prediction"] == expected["global_prediction"], name
    # Production's global confidence is 0-100; ours 0-1, with production's value as `global_confidence_percent`.
    assert 100 * result["global_confidence"] == pytest.approx(expected["global_confidence"], abs=0.1), name
    assert result["global_confidence_percent"] == pytest.approx(expected["global_confidence"], abs=0.1), name
    assert [row["start_time_s"] for row in result["submission"]] == [
        row["start_time_s"] for row in expected["submission"]
    ], name


def tiny_config(**overrides):
    from orcahello.conversion.model_folder import default_config

    settings = dict(depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], layer_type="basic", embedding_size=16)
    settings.update(overrides)
    return default_config(**settings)


def save_random_model_folder(config, folder):
    """A randomly initialised OrcaHello model (seed 0) with `config`, saved as a complete custom-code model folder."""
    import torch

    from modeling_orcahello import OrcaHelloForAudioClassification
    from orcahello.conversion.model_folder import save_model_folder

    torch.manual_seed(0)
    save_model_folder(OrcaHelloForAudioClassification(config).eval(), str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory):
    """A randomly initialised, tiny OrcaHello model saved as a complete custom-code model folder."""
    return save_random_model_folder(tiny_config(), tmp_path_factory.mktemp("tiny_orcahello"))


@pytest.fixture(scope="session")
def random_resnet50_folder(tmp_path_factory):
    """The production architecture (ResNet50) with random weights: for tests that need a full-size model (its
    memory, its graph) but not the stand-in learner's weights, so they run without the test data."""
    from orcahello.conversion.model_folder import default_config

    return save_random_model_folder(default_config(), tmp_path_factory.mktemp("random_resnet50"))


@pytest.fixture(scope="session")
def resnet50_folder(tmp_path_factory):
    """The production-architecture ResNet50 fixture learner, converted once per test session."""
    from orcahello.conversion.convert_fastai import convert

    folder = tmp_path_factory.mktemp("resnet50_converted")
    convert(str(LEGACY / "model_resnet50_legacy_format" / "model.pkl"), str(folder))
    return folder


@pytest.fixture(scope="session")
def resnet50_pipeline(resnet50_folder):
    from transformers import pipeline

    return pipeline("audio-classification", model=str(resnet50_folder), trust_remote_code=True)


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_model_folder):
    from transformers import pipeline

    return pipeline("audio-classification", model=str(tiny_model_folder), trust_remote_code=True)


@pytest.fixture(scope="session")
def resnet50_results_on_legacy_wavs(resnet50_pipeline):
    """`{wav name: the pipeline's timestamped result}` for every fixture WAV, each scored on its own with batch 16 as
    `orcahello detect` scores it: computed once, for the parity tests of the pipeline and of `orcahello batch`."""
    return {wav.name: resnet50_pipeline(str(wav), return_timestamps=True, batch_size=16) for wav in legacy_wavs()}


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray instance (2 CPUs, no dashboard, no usage statistics) for every `orcahello batch` test; its GCS
    address lets subprocesses join it with `--address`. Started only when a test asks for it."""
    pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    import logging

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # before Ray starts: its processes read it
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        object_store_memory=1 << 30,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def remote_code_module(pipe, name):
    """
    The module `name` (e.g. `"audio_orcahello"`) of the code a pipeline loaded with `trust_remote_code=True` runs:
    transformers imports the model folder's files as their own copies (`transformers_modules.<folder>.<name>`), so
    a test of the Hub path must take the error classes and helpers from there, not from the checkout.
    """
    import importlib

    package = type(pipe).__module__.rpartition(".")[0]
    return importlib.import_module(f"{package}.{name}" if package else name)
