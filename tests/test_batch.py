"""
`orcahello batch` (orcahello/batch/) on the local Ray instance these tests share: every window score equal to the
single-machine pipeline's, file results equal to production's and the JSON equal to `orcahello detect`'s, resuming
after the job is killed, bad inputs, URLs and manifests, the Parquet tables. Ray and pyarrow come with the `scale`
extra, which CI installs (`--all-extras`).
"""

import datetime
import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile
from conftest import LEGACY, REAL_AUDIO, REPO_ROOT, assert_matches_production, legacy_wavs

pytest.importorskip("ray")
pytest.importorskip("pyarrow")
import pyarrow  # noqa: E402
import pyarrow.compute  # noqa: E402
import pyarrow.dataset  # noqa: E402
import pyarrow.parquet  # noqa: E402

import orcahello
import vocabulary_orcahello
from orcahello import batch, cli, writers  # noqa: E402
from orcahello.batch.partitions import alignment_batch_size  # noqa: E402

# The fixture WAV an HLS rendition is made of: a whole minute, so the rendition has several 10-s segments.
HLS_SOURCE_WAV = "rec01_calls_quiet_bg.wav"
# Scores of one window from two runs of the same engine on the same input: identical in practice (ONNX Runtime's CPU
# kernels do not depend on the batch or the thread count here); the bound.
SAME_SCORE_TOLERANCE = 1e-6
SANCTSOUND_FILE = "pos_kw_sanctsound_MB01_killerwhale_20200423T164427Z.wav"


def write_hls_rendition(wav_path, folder, segment_seconds=10):
    """`folder/live.m3u8` and its AAC `.ts` segments, encoded from `wav_path` with PyAV (FFmpeg's HLS muxer), as an
    Orcasound hydrophone stream is published."""
    av = pytest.importorskip("av")
    samples, rate = soundfile.read(str(wav_path), dtype="float32", always_2d=True)
    folder.mkdir(parents=True, exist_ok=True)
    playlist = folder / "live.m3u8"
    layout = "mono" if samples.shape[1] == 1 else "stereo"
    options = {"hls_time": str(segment_seconds), "hls_list_size": "0"}
    with av.open(str(playlist), "w", format="hls", options=options) as container:
        stream = container.add_stream("aac", rate=rate, layout=layout)
        for start in range(0, samples.shape[0], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[start : start + 1024].T), format="fltp", layout=layout
            )
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    assert len(list(folder.glob("*.ts"))) >= 6
    return playlist


def files_table(output_dir):
    """`files.parquet` as `{file: row}`."""
    rows = pyarrow.parquet.read_table(output_dir / batch.FILES_TABLE).to_pylist()
    return {row["file"]: row for row in rows}


def windows_by_recording(output_dir):
    """Every partition file under `windows/` read as one table: `{recording: {column: values in window order}}`."""
    table = pyarrow.dataset.dataset(str(output_dir / batch.WINDOWS_FOLDER), format="parquet").to_table()
    by_recording = {}
    for recording in set(table["file"].to_pylist()):
        rows = table.filter(pyarrow.compute.equal(table["file"], recording)).sort_by("window_index")
        by_recording[recording] = {name: rows[name].to_pylist() for name in rows.column_names}
    return by_recording


def partition_files(output_dir):
    return sorted((output_dir / batch.WINDOWS_FOLDER).rglob("part-*.parquet"))


def assert_same_document(actual, expected, where="document"):
    """Equal JSON documents, numbers to 1e-6 (scores of the same windows from separate runs of one engine)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), where
        for key in expected:
            assert_same_document(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for index, (left, right) in enumerate(zip(actual, expected)):
            assert_same_document(left, right, f"{where}[{index}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, abs=1e-6), where
    else:
        assert actual == expected, where


# ---------------------------------------------------------------------------------------------------------------
# The ResNet50 fixture learner over every fixture WAV and an HLS rendition of one: one job, several checks.
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet50_batch(ray_address, resnet50_folder, tmp_path_factory):
    playlist = write_hls_rendition(LEGACY / "audio" / HLS_SOURCE_WAV, tmp_path_factory.mktemp("hls") / "rec01")
    output_dir = tmp_path_factory.mktemp("batch_resnet50")
    lines = []
    sources = [str(path) for path in legacy_wavs()] + [str(playlist)]
    run = batch.run_batch(sources, output_dir, model=str(resnet50_folder), log=lines.append)
    return run, output_dir, str(playlist), lines


@pytest.mark.needs_test_data
def test_every_window_score_equals_the_pipeline_and_file_results_equal_production(
    resnet50_batch, resnet50_results_on_legacy_wavs
):
    run, output_dir, _, _ = resnet50_batch
    files, windows = files_table(output_dir), windows_by_recording(output_dir)
    assert run["options"]["num_workers"] == 2 and run["options"]["resolved_device"] == "cpu"
    for wav in legacy_wavs():
        row = files[str(wav)]
        assert row["status"] == "ok", (wav.name, row["error"])
        expected = resnet50_results_on_legacy_wavs[wav.name]
        scored = windows[str(wav)]
        assert scored["window_index"] == list(range(len(expected["windows"]))), wav.name
        assert scored["start"] == [window["start"] for window in expected["windows"]]
        assert scored["end"] == [window["end"] for window in expected["windows"]]
        np.testing.assert_allclose(
            scored["score"], [window["score"] for window in expected["windows"]], rtol=0,
            atol=SAME_SCORE_TOLERANCE, err_msg=wav.name,
        )  # fmt: skip
        assert not any(scored["silent"]) and set(scored["start_utc"]) == {None}

        document = json.loads((output_dir / row["json_path"]).read_text())
        np.testing.assert_allclose(document["local_confidences"], expected["local_confidences"], atol=1e-6)
        assert document["local_predictions"] == expected["local_predictions"]
        assert document["detections"] == [
            {key: pytest.approx(value, abs=1e-6) for key, value in detection.items()}
            for detection in expected["detections"]
        ]
        assert_matches_production(document, wav)

        assert row["global_prediction"] == document["global_prediction"]
        assert row["global_confidence"] == document["global_confidence"]
        assert row["positive_seconds"] == writers.positive_seconds(document["detections"])
        assert row["num_windows"] == len(expected["windows"]) and row["silent_windows"] == 0
        assert row["num_detections"] == len(document["detections"])
        assert row["duration_s"] == pytest.approx(soundfile.info(str(wav)).duration)
        assert row["run_hash"] == document["run_hash"]


@pytest.mark.needs_test_data
def test_the_json_is_the_document_orcahello_detect_writes(resnet50_batch, resnet50_folder, tmp_path):
    _, output_dir, _, _ = resnet50_batch
    wav = LEGACY / "audio" / "edge_10s_48k.wav"
    assert cli.main(["detect", str(wav), "--model", str(resnet50_folder), "--output-dir", str(tmp_path)]) == 0
    detected = json.loads((tmp_path / "edge_10s_48k.orcahello.json").read_text())
    from_batch = json.loads((output_dir / files_table(output_dir)[str(wav)]["json_path"]).read_text())
    assert "created_at" not in from_batch  # the one field left out: batch's result files hold no wall-clock time
    del detected["created_at"]
    assert_same_document(from_batch, detected)


@pytest.mark.needs_test_data
def test_hls_rendition_is_scored_as_the_pipeline_reads_it(resnet50_batch, resnet50_pipeline):
    _, output_dir, playlist, lines = resnet50_batch
    row = files_table(output_dir)[playlist]
    assert row["status"] == "ok", f"{row['error']} (job output: {lines})"
    expected = resnet50_pipeline(playlist, return_timestamps=True, batch_size=16)
    scored = windows_by_recording(output_dir)[playlist]
    assert scored["window_index"] == list(range(len(expected["windows"])))
    assert len(scored["window_index"]) >= 58  # the rendition is a minute of audio, less what AAC may trim
    np.testing.assert_allclose(
        scored["score"], [w["score"] for w in expected["windows"]], rtol=0, atol=SAME_SCORE_TOLERANCE
    )
    document = json.loads((output_dir / row["json_path"]).read_text())
    assert document["local_predictions"] == expected["local_predictions"]
    np.testing.assert_allclose(document["local_confidences"], expected["local_confidences"], atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Killed halfway, run again: finished partitions are kept as they are, the rest is scored, the result is whole.
# ---------------------------------------------------------------------------------------------------------------


KILL_TEST_BATCH_SIZE = 4  # featurization blocks of 32 windows
KILL_TEST_PARTITION_WINDOWS = 32
SHORT_FILES = ("edge_20k_6s.wav", "edge_stereo_48k_6s.wav")


@pytest.fixture(scope="module")
def killed_and_resumed(ray_address, tiny_model_folder, tmp_path_factory):
    recordings = tmp_path_factory.mktemp("kill_recordings")
    # Ten minutes (599 windows, 19 partitions) of noise at 20 kHz: a job long enough to be killed in the middle.
    rng = np.random.default_rng(11)
    long_recording = recordings / "long_10min_20k.wav"
    soundfile.write(str(long_recording), (rng.standard_normal(600 * 20000) * 2000).astype(np.int16), 20000)
    for name in SHORT_FILES:
        shutil.copyfile(LEGACY / "audio" / name, recordings / name)
    output_dir = tmp_path_factory.mktemp("kill_results")
    expected_partitions = -(-599 // KILL_TEST_PARTITION_WINDOWS) + len(SHORT_FILES)
    options = {"batch_size": KILL_TEST_BATCH_SIZE, "partition_windows": KILL_TEST_PARTITION_WINDOWS}

    # The job as a user runs it, joining the tests' Ray instance, killed (SIGKILL: no clean-up at all) as soon as
    # three partitions are on disk.
    arguments = [
        "batch", recordings, "--output-dir", output_dir, "--model", tiny_model_folder, "--address", ray_address,
        "--num-workers", "1", "--batch-size", options["batch_size"],
        "--partition-windows", options["partition_windows"],
    ]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "orcahello.cli", *map(str, arguments)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while len(partition_files(output_dir)) < 3:
        if process.poll() is not None:
            output = process.stdout.read()
            pytest.fail(f"the job ended (status {process.returncode}) before it could be killed: {output}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the job wrote no partition in 5 minutes")
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=60)
    process.stdout.close()
    after_kill = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in partition_files(output_dir)}
    json_after_kill = {path: path.stat().st_mtime_ns for path in (output_dir / batch.JSON_FOLDER).rglob("*.json")}
    # What a kill in the middle of a write leaves (the kill above may or may not have hit one): temporary files.
    planted = [
        output_dir
        / batch.WINDOWS_FOLDER
        / "long_10min_20k"
        / f".part-000000576.parquet.a1b2c3d4{writers.PARTIAL_SUFFIX}",
        output_dir / batch.JSON_FOLDER / f".long_10min_20k.orcahello.json.abcdefgh{writers.PARTIAL_SUFFIX}",
        output_dir / f".files.parquet.4242_xyz{writers.PARTIAL_SUFFIX}",
    ]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")

    lines = []
    resumed = batch.run_batch([str(recordings)], output_dir, model=str(tiny_model_folder), num_workers=1,
                              log=lines.append, **options)  # fmt: skip
    return {
        "recordings": recordings,
        "output_dir": output_dir,
        "options": options,
        "model": str(tiny_model_folder),
        "expected_partitions": expected_partitions,
        "after_kill": after_kill,
        "json_after_kill": json_after_kill,
        "resumed": resumed,
        "lines": lines,
    }


@pytest.mark.needs_test_data
def test_rerun_after_a_kill_keeps_finished_partitions_and_completes_the_job(killed_and_resumed, tiny_pipeline):
    state = killed_and_resumed
    output_dir, after_kill, resumed = state["output_dir"], state["after_kill"], state["resumed"]
    assert 3 <= len(after_kill) < state["expected_partitions"], "the job was not killed halfway"
    left_to_score = state["expected_partitions"] - len(after_kill)
    assert resumed["partitions"] == {"reused": len(after_kill), "scored": left_to_score}
    for path, (inode, mtime) in after_kill.items():
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime), f"{path} was written again"
    for path, mtime in state["json_after_kill"].items():  # a recording finished before the kill keeps its JSON
        assert path.stat().st_mtime_ns == mtime
    assert len(partition_files(output_dir)) == state["expected_partitions"]
    assert not list(output_dir.rglob(f"*{writers.PARTIAL_SUFFIX}")), "a killed run's temporary files were left behind"
    assert resumed["files"] == {"found": 3, "ok": 3, "failed": 0, "inputs_without_audio": 0}

    windows = windows_by_recording(output_dir)
    files = files_table(output_dir)
    for recording in sorted(state["recordings"].glob("*.wav")):
        expected = tiny_pipeline(str(recording), return_timestamps=True, batch_size=state["options"]["batch_size"])
        scored = windows[str(recording)]
        assert scored["window_index"] == list(range(len(expected["windows"])))
        np.testing.assert_allclose(
            scored["score"], [w["score"] for w in expected["windows"]], rtol=0, atol=SAME_SCORE_TOLERANCE
        )
        document = json.loads((output_dir / files[str(recording)]["json_path"]).read_text())
        assert document["local_predictions"] == expected["local_predictions"]
        np.testing.assert_allclose(document["local_confidences"], expected["local_confidences"], atol=1e-6)


@pytest.mark.needs_test_data
def test_new_decision_parameters_rewrite_the_jsons_without_scoring_again(killed_and_resumed, tiny_pipeline):
    state = killed_and_resumed
    output_dir = state["output_dir"]
    before = {path: path.stat().st_mtime_ns for path in partition_files(output_dir)}
    old_hashes = {row["file"]: row["run_hash"] for row in files_table(output_dir).values()}
    rerun = batch.run_batch([str(state["recordings"])], output_dir, model=state["model"], threshold=0.3,
                            min_positive_seconds=2, **state["options"])  # fmt: skip
    assert rerun["partitions"] == {"reused": state["expected_partitions"], "scored": 0}
    assert rerun["windows_scored"] == 0
    assert {path: path.stat().st_mtime_ns for path in partition_files(output_dir)} == before
    files = files_table(output_dir)
    for recording in sorted(state["recordings"].glob("*.wav")):
        row = files[str(recording)]
        assert row["run_hash"] != old_hashes[str(recording)]
        expected = tiny_pipeline(str(recording), return_timestamps=True, batch_size=state["options"]["batch_size"],
                                 local_threshold=0.3, global_count_threshold=2)  # fmt: skip
        document = json.loads((output_dir / row["json_path"]).read_text())
        assert document["parameters"]["local_threshold"] == 0.3
        assert document["local_predictions"] == expected["local_predictions"]
        assert document["global_prediction"] == expected["global_prediction"] == row["global_prediction"]


# ---------------------------------------------------------------------------------------------------------------
# Inputs: folders, manifests, URLs, bad recordings; the command line's messages and exit status.
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def audio_server():
    """The fixture WAVs over HTTP on the loopback interface (nothing leaves the machine)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(LEGACY / "audio"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.needs_test_data
def test_folders_manifests_urls_and_bad_recordings(ray_address, tiny_model_folder, tiny_pipeline, audio_server,
                                                   tmp_path, capsys):  # fmt: skip
    recordings = tmp_path / "recordings"
    (recordings / "site").mkdir(parents=True)
    shutil.copyfile(LEGACY / "audio" / "edge_20k_6s.wav", recordings / "site" / "good.wav")
    soundfile.write(str(recordings / "short.wav"), np.ones(20000, np.int16), 20000)
    (recordings / "bad.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "listed").mkdir()
    shutil.copyfile(REAL_AUDIO / SANCTSOUND_FILE, tmp_path / "listed" / SANCTSOUND_FILE)
    good_url, missing_url = f"{audio_server}/edge_44k1_6s.wav", f"{audio_server}/nothing_here.wav"
    manifest = tmp_path / "manifest.txt"
    entries = ["# hydrophone minutes", "", f"listed/{SANCTSOUND_FILE}", "listed/missing.wav", good_url, missing_url]
    manifest.write_text("\n".join(entries) + "\n")
    output_dir = tmp_path / "out"

    status = cli.main(["batch", str(recordings), "--recursive", "--manifest", str(manifest), "--output-dir",
                       str(output_dir), "--model", str(tiny_model_folder), "--num-workers", "1"])  # fmt: skip
    captured = capsys.readouterr()
    assert status == orcahello.EXIT_SOME_FILES_FAILED
    errors = sorted(line for line in captured.err.splitlines() if line.startswith("ERROR "))
    assert len(errors) == 4, captured.err
    assert f"ERROR {recordings / 'bad.wav'}: cannot decode audio" in "\n".join(errors)
    short_error = f"ERROR {recordings / 'short.wav'}: 1.000 s of audio is shorter than one 2-second window"
    assert short_error in "\n".join(errors)
    assert f"ERROR {tmp_path / 'listed' / 'missing.wav'}: no such file" in errors
    assert any(line.startswith(f"ERROR {missing_url}: cannot download (HTTP error 404") for line in errors)
    assert captured.out.startswith("7 recording(s): 3 ok, 4 failed. 3 partition(s) scored")

    files = files_table(output_dir)
    assert {recording: row["status"] for recording, row in files.items()} == {
        str(recordings / "bad.wav"): "error",
        str(recordings / "short.wav"): "error",
        str(recordings / "site" / "good.wav"): "ok",
        str(tmp_path / "listed" / SANCTSOUND_FILE): "ok",
        str(tmp_path / "listed" / "missing.wav"): "error",
        good_url: "ok",
        missing_url: "error",
    }
    windows = windows_by_recording(output_dir)
    for recording, local_copy in (
        (str(recordings / "site" / "good.wav"), LEGACY / "audio" / "edge_20k_6s.wav"),
        (good_url, LEGACY / "audio" / "edge_44k1_6s.wav"),  # downloaded: the same samples as the file on disk
        (str(tmp_path / "listed" / SANCTSOUND_FILE), REAL_AUDIO / SANCTSOUND_FILE),
    ):
        expected = tiny_pipeline(
            str(local_copy), return_timestamps=True, batch_size=vocabulary_orcahello.DEFAULT_BATCH_SIZE["cpu"]
        )
        np.testing.assert_allclose(
            windows[recording]["score"], [w["score"] for w in expected["windows"]], atol=SAME_SCORE_TOLERANCE
        )
    assert files[good_url]["json_path"] == "json/127.0.0.1_{}/edge_44k1_6s.orcahello.json".format(
        audio_server.rsplit(":", 1)[1]
    )
    # The SanctSound file names its start in UTC: both tables carry it.
    start = datetime.datetime(2020, 4, 23, 16, 44, 27, tzinfo=datetime.timezone.utc)
    sanctsound = windows[str(tmp_path / "listed" / SANCTSOUND_FILE)]
    assert sanctsound["start_utc"] == [start + datetime.timedelta(seconds=s) for s in sanctsound["start"]]
    assert files[str(tmp_path / "listed" / SANCTSOUND_FILE)]["start_time_utc"] == start
    assert "cannot decode audio" in files[str(recordings / "bad.wav")]["error"]
    run = json.loads((output_dir / batch.RUN_DOCUMENT).read_text())
    assert run["files"] == {"found": 7, "ok": 3, "failed": 4, "inputs_without_audio": 0}


@pytest.mark.needs_test_data
def test_the_parquet_tables_have_the_documented_schemas(killed_and_resumed):
    import pyarrow as pa

    output_dir = killed_and_resumed["output_dir"]
    windows = pyarrow.parquet.read_schema(partition_files(output_dir)[0])
    assert [(field.name, field.type) for field in windows] == [
        ("file", pa.string()), ("window_index", pa.int32()), ("start", pa.float64()),
        ("end", pa.float64()), ("start_utc", pa.timestamp("ms", tz="UTC")), ("score", pa.float32()),
        ("silent", pa.bool_()),
    ]  # fmt: skip
    metadata = json.loads(windows.metadata[batch.PARQUET_METADATA_KEY])
    assert {"scores_hash", "source", "first_window", "num_windows", "recording", "model"} <= set(metadata)
    files = pyarrow.parquet.read_schema(output_dir / batch.FILES_TABLE)
    documentation = (REPO_ROOT / "docs" / "batch.md").read_text()
    for field in list(windows) + list(files):
        assert f"`{field.name}`" in documentation, f"docs/batch.md does not describe the column {field.name}"


# ---------------------------------------------------------------------------------------------------------------
# Without Ray: the core package, the missing extra, inputs and names
# ---------------------------------------------------------------------------------------------------------------


def test_the_core_package_never_imports_ray():
    code = (
        "import sys\n"
        "import pipeline_orcahello, orcahello.cli, orcahello.batch, orcahello.writers, orcahello.datasets_utils\n"
        "orcahello.cli.build_parser()\n"
        "print(sorted(name for name in ('ray', 'pyarrow') if name in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=300)  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "ray" not in completed.stdout.strip().splitlines()[-1]


@pytest.mark.needs_test_data
def test_a_missing_scale_extra_is_one_clear_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if Ray were not installed
    status = cli.main(["batch", str(LEGACY / "audio" / "edge_20k_6s.wav"), "--output-dir", str(tmp_path)])
    error = capsys.readouterr().err.strip()
    assert status == orcahello.EXIT_CANNOT_RUN and len(error.splitlines()) == 1
    assert 'pip install "orcahello-srkw-detector[scale]"' in error
    assert cli.main(["batch", "--output-dir", str(tmp_path)]) == orcahello.EXIT_CANNOT_RUN
    assert "give recordings" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options, message",
    [
        ({"address": "auto", "num_cpus": 2}, "--num-cpus sizes a local Ray instance"),
        ({"device": "tpu"}, "device must be auto, cpu or cuda"),
        ({"batch_size": 0}, "batch_size must be a whole number of at least 1"),
        ({"num_workers": 1.5}, "num_workers must be a whole number"),
        ({"threshold": 1.5}, "threshold must be a number from 0 to 1"),
        ({"threshold": float("nan")}, "threshold must be a number from 0 to 1"),
        ({"min_positive_seconds": -1}, "min_positive_seconds must be a whole number of at least 0"),
        ({"aggregation": "max"}, "aggregation must be one of orcahello, mean_thresholded, mean_top_k, got 'max'"),
        ({"treshold": 0.5}, r"unknown option\(s\) treshold"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(options, message):
    with pytest.raises(batch.BatchError, match=message):
        batch.BatchOptions.from_keywords(**options).check()


def test_sources_from_folders_globs_urls_and_manifests(tmp_path):
    (tmp_path / "a" / "1629919500").mkdir(parents=True)
    (tmp_path / "a" / "x.wav").write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_text("not audio")
    (tmp_path / "a" / "1629919500" / "live.m3u8").write_text("#EXTM3U\n")
    manifest = tmp_path / "list.txt"
    manifest.write_text("# a comment\n\na/x.wav\nhttps://example.org/b.flac\n/absolute/c.wav\n")
    sources, problems = batch.find_sources(
        [str(tmp_path / "a"), str(tmp_path / "a" / "*.wav"), "https://example.org/b.flac", str(tmp_path / "none")],
        manifests=[str(manifest)],
        recursive=True,
    )
    assert sources == [
        str(tmp_path / "a" / "x.wav"),
        str(tmp_path / "a" / "1629919500" / "live.m3u8"),
        "https://example.org/b.flac",
        "/absolute/c.wav",
    ]
    assert problems == [(str(tmp_path / "none"), "no such file or directory")]
    with pytest.raises(batch.BatchError, match="cannot read the manifest"):
        batch.read_manifest(str(tmp_path / "no_manifest.txt"))


def test_output_names_mirror_the_inputs_and_urls_go_under_their_host():
    planned = batch.plan_outputs(
        ["/data/site1/a.wav", "/data/site2/a.wav", "/data/site2/a.flac", "https://host.org/hls/1629919500/live.m3u8",
         "https://host.org/hls/1629919500/live.m3u8?token=2", "http://host.org/data/site1/a.wav"]
    )  # fmt: skip
    assert [source.output_stem for source in planned] == [
        "site1/a", "site2/a.wav", "site2/a.flac", "host.org/hls/1629919500/live", "host.org/hls/1629919500/live~4",
        "host.org/data/site1/a",
    ]  # fmt: skip
    assert planned[3].relative_path == "host.org/hls/1629919500/live.m3u8"


def test_start_times_are_taken_only_from_unambiguous_names():
    utc = datetime.timezone.utc
    assert batch.start_utc_from_name(f"/x/{SANCTSOUND_FILE}") == datetime.datetime(2020, 4, 23, 16, 44, 27, tzinfo=utc)
    assert batch.start_utc_from_name("https://h/rpi_orcasound_lab/hls/1629919500/live.m3u8") == datetime.datetime(
        2021, 8, 25, 19, 25, tzinfo=utc
    )
    for name in ("/x/210825-1925.wav", "/x/1629919500/clip.wav", "/x/20200423T164427.wav", "/x/20201323T000000Z.wav"):
        assert batch.start_utc_from_name(name) is None, name


def test_blocks_and_partitions_start_where_the_command_lines_batches_do():
    windows = range(600)  # a 10-minute recording's windows
    for batch_size in (1, 4, 5, 16, 20, 64, 100):
        detect_batch_starts = set(windows[::batch_size])
        assert set(windows[:: batch.windows_per_block(batch_size)]) <= detect_batch_starts, batch_size
    # Left to the actors' device, blocks start where the batches of either device's default batch size do.
    block = batch.windows_per_block(alignment_batch_size(None))
    for batch_size in vocabulary_orcahello.DEFAULT_BATCH_SIZE.values():
        assert set(windows[::block]) <= set(windows[::batch_size]), (block, batch_size)


def test_partitions_are_complete_when_every_window_is_in_not_when_enough_have_arrived():
    assembly = batch.PartitionAssembly()
    assert assembly.add(("a", 0), 3, 2, 0.75, False) == (True, None)
    assert assembly.add(("a", 0), 3, 0, 0.25, True) == (True, None)
    # A retried task's copy: three arrivals, two windows, not complete.
    assert assembly.add(("a", 0), 3, 0, 0.25, True) == (False, None)
    assert assembly.add(("b", 32), 1, 0, 0.5, False)[1] is not None
    is_new, complete = assembly.add(("a", 0), 3, 1, 0.5, False)
    assert is_new and complete[0].tolist() == [0.25, 0.5, 0.75] and complete[1].tolist() == [True, False, False]


@pytest.mark.needs_test_data
def test_more_actors_than_the_instance_holds_is_refused(ray_address, tiny_model_folder, tmp_path):
    wav = str(LEGACY / "audio" / "edge_20k_6s.wav")
    with pytest.raises(batch.BatchError, match=r"3 model actor\(s\) need 3 CPU\(s\); the Ray cluster has 2"):
        batch.run_batch([wav], tmp_path, model=str(tiny_model_folder), num_workers=3)
    with pytest.raises(batch.BatchError, match="--device cuda was asked for but the Ray cluster has no GPU"):
        batch.run_batch([wav], tmp_path, model=str(tiny_model_folder), device="cuda")
