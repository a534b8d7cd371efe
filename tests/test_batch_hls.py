"""
`orcahello batch` on HLS: the per-recording JSON carries the stream's time line (gaps, their warnings, the start in
UTC) exactly as `orcahello detect` writes it for the same playlist, the windows table's UTC times are the JSON's, and
an HLS stream's partitions are featurized from one opening of the stream (decoded once, not once per partition).
"""

import datetime
import json
import re
import shutil

import numpy as np
import pytest
import soundfile
from conftest import LEGACY, make_orcanode_hls, production_wav

pytest.importorskip("ray")
pytest.importorskip("pyarrow")
pytest.importorskip("av")
import pyarrow.parquet  # noqa: E402

import vocabulary_orcahello  # noqa: E402
from orcahello import batch, cli, writers  # noqa: E402
from orcahello.batch import featurize  # noqa: E402

pytestmark = pytest.mark.needs_test_data  # every test here reads the test-data set

EPOCH = 1600000000  # the stream folder's name: the Unix time its node started the stream
MINUTE_WAV = LEGACY / "audio" / "rec01_calls_quiet_bg.wav"  # 60 s at 48 kHz, mono
SAMPLE_RATE = 48000
LOST_SEGMENT = "live002.ts"
# The same windows scored by the same engine in two processes (detect, a Ray actor): equal in practice.
SAME_SCORE_TOLERANCE = 1e-6
PARTITION_WINDOWS = 32  # the minute's ~58 windows in two partitions, so the stream's one task reads both


def iso(epoch_seconds):
    """ISO 8601 UTC with milliseconds, formatted here (not by the code under test)."""
    moment = datetime.datetime.fromtimestamp(round(epoch_seconds, 3), tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{round(moment.microsecond / 1000):03d}Z"


def parse_iso(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


@pytest.fixture(scope="module")
def stream_with_a_lost_segment(tmp_path_factory):
    """
    A one-minute Orcasound stream (10-s AAC segments) in a folder named by its start time, whose playlist has lost
    one segment's entry (and file): `(playlist, lost segment's seconds, seconds before the loss)`, the last two taken
    from the original playlist and from ffmpeg's decoding of the segments before it.
    """
    root = tmp_path_factory.mktemp("hls_lost")
    original = make_orcanode_hls(MINUTE_WAV, root / "original")
    text = (original / "live.m3u8").read_text()
    durations = {name: float(seconds) for seconds, name in re.findall(r"#EXTINF:([0-9.]+),[^\n]*\n(\S+)", text)}
    assert LOST_SEGMENT in durations and len(durations) >= 6
    stream = root / "rpi_orcasound_lab" / "hls" / str(EPOCH)
    stream.mkdir(parents=True)
    for name in durations:
        if name != LOST_SEGMENT:
            shutil.copyfile(original / name, stream / name)
    (stream / "live.m3u8").write_text(re.sub(r"#EXTINF:[0-9.]+,[^\n]*\n" + re.escape(LOST_SEGMENT) + r"\n", "", text))
    assert LOST_SEGMENT not in (stream / "live.m3u8").read_text()
    before = [original / "live000.ts", original / "live001.ts"]
    samples_before = soundfile.info(str(production_wav(before, root / "before.wav"))).frames
    return stream / "live.m3u8", durations[LOST_SEGMENT], samples_before / SAMPLE_RATE


@pytest.fixture(scope="module")
def detect_and_batch(ray_address, tiny_model_folder, stream_with_a_lost_segment, tmp_path_factory):
    playlist, _, _ = stream_with_a_lost_segment
    detect_dir = tmp_path_factory.mktemp("hls_detect")
    arguments = ["detect", str(playlist), "--model", str(tiny_model_folder), "--output-dir", str(detect_dir)]
    assert cli.main(arguments + ["--format", "json"]) == 0
    [detect_json] = detect_dir.rglob(f"*{writers.OUTPUT_SUFFIXES['json']}")
    batch_dir = tmp_path_factory.mktemp("hls_batch")
    lines = []
    run = batch.run_batch(
        [str(playlist)], batch_dir, model=str(tiny_model_folder), partition_windows=PARTITION_WINDOWS,
        log=lines.append,
    )  # fmt: skip
    [row] = pyarrow.parquet.read_table(batch_dir / batch.FILES_TABLE).to_pylist()
    assert row["status"] == "ok", (row["error"], lines)
    return {
        "detect": json_of(detect_json),
        "batch": json_of(batch_dir / row["json_path"]),
        "run": run,
        "row": row,
        "output_dir": batch_dir,
        "windows": pyarrow.parquet.read_table(batch_dir / batch.WINDOWS_FOLDER).sort_by("window_index").to_pylist(),
    }


def json_of(path):
    return json.loads(path.read_text())


def test_batch_json_has_the_gap_warnings_and_start_detect_reports(detect_and_batch, stream_with_a_lost_segment):
    _, lost_seconds, gap_start = stream_with_a_lost_segment
    detected, batched = detect_and_batch["detect"], detect_and_batch["batch"]
    for document in (detected, batched):
        assert document["start_time_utc"] == iso(EPOCH)
        [gap] = document["gaps"]
        assert (gap["after_segment"], gap["next_segment"]) == ("live001.ts", "live003.ts")
        assert gap["start_s"] == pytest.approx(gap_start, abs=1e-9)
        assert gap["missing_s"] == pytest.approx(lost_seconds, abs=1e-3)
        assert any(warning.startswith("gap after segment live001.ts") for warning in document["warnings"])
        assert document["source"]["type"] == "hls-playlist"
    assert batched["gaps"] == detected["gaps"]
    assert batched["warnings"] == detected["warnings"]
    assert batched["start_time_utc"] == detected["start_time_utc"]


def test_batch_windows_and_decisions_are_detects(detect_and_batch, stream_with_a_lost_segment):
    _, lost_seconds, gap_start = stream_with_a_lost_segment
    detected, batched = detect_and_batch["detect"], detect_and_batch["batch"]
    assert len(batched["windows"]) == len(detected["windows"]) >= 48  # 50 s of audio left, less what AAC trims
    for ours, theirs in zip(batched["windows"], detected["windows"]):
        assert ours["score"] == pytest.approx(theirs["score"], abs=SAME_SCORE_TOLERANCE)
        assert {key: ours[key] for key in ours if key != "score"} == {
            key: theirs[key] for key in theirs if key != "score"
        }
        assert ours["spans_gap"] is (ours["start"] < gap_start < ours["end"])
        later = lost_seconds if ours["start"] >= gap_start else 0.0
        assert parse_iso(ours["start_utc"]) == pytest.approx(EPOCH + ours["start"] + later, abs=1e-3)
    assert batched["local_predictions"] == detected["local_predictions"]
    np.testing.assert_allclose(batched["local_confidences"], detected["local_confidences"], atol=1e-6)
    assert batched["global_prediction"] == detected["global_prediction"]
    assert batched["global_confidence"] == pytest.approx(detected["global_confidence"], abs=1e-6)
    assert batched["submission"] == [
        {key: pytest.approx(value, abs=1e-6) if isinstance(value, float) else value for key, value in row.items()}
        for row in detected["submission"]
    ]


def test_windows_table_and_files_row_have_the_stream_times(detect_and_batch):
    batched, windows, row = detect_and_batch["batch"], detect_and_batch["windows"], detect_and_batch["row"]
    assert [window["window_index"] for window in windows] == list(range(len(batched["windows"])))
    for table_row, window in zip(windows, batched["windows"]):
        # The table rounds to the millisecond, the JSON's text truncates to it.
        assert table_row["start_utc"].timestamp() == pytest.approx(parse_iso(window["start_utc"]), abs=1e-3)
    assert row["start_time_utc"].timestamp() == EPOCH
    assert row["warnings"] == "; ".join(batched["warnings"])


def test_default_batch_size_is_the_actor_devices(detect_and_batch):
    run, batched, detected = detect_and_batch["run"], detect_and_batch["batch"], detect_and_batch["detect"]
    assert run["options"]["resolved_device"] == "cpu"
    assert run["options"]["batch_size"] == vocabulary_orcahello.DEFAULT_BATCH_SIZE["cpu"]
    assert batched["parameters"]["batch_size"] == detected["parameters"]["batch_size"] == run["options"]["batch_size"]


def test_an_hls_streams_partitions_are_read_from_one_opening(stream_with_a_lost_segment, monkeypatch):
    from feature_extraction_orcahello import OrcaHelloFeatureExtractor

    playlist, _, _ = stream_with_a_lost_segment
    opened = []
    monkeypatch.setattr(
        featurize, "open_source", lambda source: opened.append(source) or batch.sources.open_source(source)
    )
    settings = {"feature_extractor": OrcaHelloFeatureExtractor(), "block_windows": 16, "window_seconds": 2.0,
                "hop_seconds": 1.0}  # fmt: skip
    num_samples = batch.sources.probe_source({"source_index": 0, "source": str(playlist)}, 2.0, 1.0)["num_samples"]

    def rows(partitions):
        work = {
            "source_index": np.array([0]),
            "source": np.array([str(playlist)], dtype=object),
            "first_windows": np.array([[first for first, _ in partitions]], dtype=object),
            "window_counts": np.array([[count for _, count in partitions]], dtype=object),
            "num_samples": np.array([num_samples]),
        }
        return list(featurize.featurize_partitions(work, **settings))

    together = rows([(0, 32), (32, 16)])
    assert opened == [str(playlist)]  # both partitions from one opening (one decoding) of the stream
    apart = rows([(0, 32)]) + rows([(32, 16)])
    assert [(int(r["partition_first_window"][0]), int(r["first_window"][0])) for r in together] == [
        (0, 0), (0, 16), (32, 32),
    ]  # fmt: skip
    assert all(not r["error"][0] for r in together)
    for ours, theirs in zip(together, apart, strict=True):
        np.testing.assert_array_equal(ours["input_features"], theirs["input_features"])
        np.testing.assert_array_equal(ours["silent"], theirs["silent"])


def test_a_stream_scored_before_partitions_kept_its_time_line_is_scored_again(
    detect_and_batch, stream_with_a_lost_segment, tiny_model_folder, tmp_path
):
    """Partitions and a JSON written by a version that dropped the time line are not reused as they are."""
    playlist, _, _ = stream_with_a_lost_segment
    output_dir = tmp_path / "results"
    shutil.copytree(detect_and_batch["output_dir"], output_dir)
    parts = sorted((output_dir / batch.WINDOWS_FOLDER).rglob("part-*.parquet"))
    assert len(parts) == 2
    for path in parts:  # as that version wrote them: no timeline in the recording's description
        table = pyarrow.parquet.read_table(path)
        metadata = json.loads(table.schema.metadata[batch.PARQUET_METADATA_KEY])
        del metadata["recording"]["timeline"]
        pyarrow.parquet.write_table(
            table.replace_schema_metadata({batch.PARQUET_METADATA_KEY: json.dumps(metadata, sort_keys=True)}), path
        )
    json_path = output_dir / detect_and_batch["row"]["json_path"]
    old = json_of(json_path)
    old.update(gaps=[], start_time_utc=None, warnings=[])
    json_path.write_text(json.dumps(old))

    rerun = batch.run_batch([str(playlist)], output_dir, model=str(tiny_model_folder),
                            partition_windows=PARTITION_WINDOWS)  # fmt: skip
    assert rerun["partitions"] == {"reused": 0, "scored": 2}
    document = json_of(json_path)
    assert document["gaps"] == detect_and_batch["detect"]["gaps"]
    assert document["start_time_utc"] == iso(EPOCH)
