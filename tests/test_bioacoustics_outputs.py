"""
What bioacoustics tools read (issue 29): Raven tables that say what was detected (an SRKW call) and where the
recording is (`Begin Path`, as BirdNET-Analyzer writes it); start times read from timestamped file names
(`YYYYMMDDTHHMMSSZ`, AudioMoth's `YYYYMMDD_HHMMSS`), as BirdNET-Analyzer and OpenSoundscape read them; `orcahello
batch` writing the CSV and Raven tables `orcahello detect` writes; and batch's windows read whole by
`pyarrow.dataset` even for recordings under a folder whose name starts with "." or "_".
"""

import csv
import json
import os
import shutil

import pytest
from conftest import LEGACY

from hls_timeline_orcahello import start_utc_from_file_name
from orcahello import cli, writers

WAV = LEGACY / "audio" / "edge_20k_6s.wav"
JANUARY_31 = 1706745599.0  # 2024-01-31T23:59:59Z


def read_tab_separated(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))


@pytest.mark.parametrize(
    "path, expected",
    [
        ("site/rpi_20240131T235959Z.wav", JANUARY_31),
        ("5783.20240131T235959Z.flac", JANUARY_31),
        ("https://host.org/a/20240131T235959Z_x.wav?token=1", JANUARY_31),
        ("deployment/20240131_235959.WAV", JANUARY_31),  # AudioMoth: the whole name, UTC
        ("20240131T235959.wav", None),  # no Z: local time, unknown zone
        ("x_20240131_235959.wav", None),  # not AudioMoth's whole name
        ("20241399T000000Z.wav", None),  # not a date
        ("recording.wav", None),
    ],
)
def test_start_times_in_file_names(path, expected):
    assert start_utc_from_file_name(path) == expected


def test_raven_tables_say_what_was_detected_and_where_the_recording_is(tmp_path):
    detections = [{"start": 1.0, "end": 4.0, "max_confidence": 0.9}]
    path = tmp_path / "t.txt"
    writers.write_raven_table(path, detections, begin_path="/data/a.wav")
    header, row = read_tab_separated(path)
    assert row[header.index("Label")] == "SRKW call"
    assert row[header.index("Begin Path")] == "/data/a.wav"
    writers.write_combined_raven_table(path, [("a.wav", 10.0, detections, "/data/a.wav")])
    header, row = read_tab_separated(path)
    assert row[header.index("Begin Path")] == "/data/a.wav" and row[header.index("Begin File")] == "a.wav"


@pytest.mark.needs_test_data
def test_detect_reads_the_start_from_the_name_and_writes_begin_path(tiny_model_folder, tmp_path):
    recording = tmp_path / "in" / "rpi_20240131T235959Z.wav"
    recording.parent.mkdir()
    shutil.copyfile(WAV, recording)
    output_dir = tmp_path / "out"
    arguments = ["detect", str(recording), "--model", str(tiny_model_folder), "--output-dir", str(output_dir)]
    assert cli.main([*arguments, "--threshold", "0.0"]) == 0
    stem = output_dir / "rpi_20240131T235959Z"
    document = json.loads(open(writers.output_path(stem, "json")).read())
    assert document["start_time_utc"] == "2024-01-31T23:59:59.000Z"
    assert document["source"]["start_time_source"] == "file name"
    assert document["windows"][1]["start_utc"] == "2024-02-01T00:00:00.000Z"
    assert document["detections"], "threshold 0: every second is positive"
    header, *rows = read_tab_separated(writers.output_path(stem, "raven"))
    assert {row[header.index("Begin Path")] for row in rows} == {str(recording)}
    assert {row[header.index("Label")] for row in rows} == {"SRKW call"}
    assert rows[0][header.index("Begin UTC")] == "2024-01-31T23:59:59.000Z"


@pytest.mark.needs_test_data
def test_batch_writes_detects_tables_and_reads_whole_with_pyarrow(ray_address, tiny_model_folder, tmp_path):
    import pyarrow.dataset

    from orcahello import batch

    recordings = tmp_path / "in"
    names = [".hidden/rpi_20240131T235959Z.wav", "_meta/20240131_235959.wav", "plain/_clip.wav"]
    for name in names:
        (recordings / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(WAV, recordings / name)
    output_dir = tmp_path / "results"
    # Named one by one (a folder's hidden subfolders are skipped): their paths below `in/` start with "." and "_".
    batch.run_batch([str(recordings / name) for name in names], output_dir, model=str(tiny_model_folder),
                    num_workers=1, threshold=0.0)  # fmt: skip

    # The documented read of every window: all three recordings, none left out for its folder's name.
    windows = pyarrow.dataset.dataset(output_dir / batch.WINDOWS_FOLDER, format="parquet").to_table()
    assert sorted(set(windows["file"].to_pylist())) == sorted(str(recordings / name) for name in names)

    for name in names:
        stem = output_dir / batch.JSON_FOLDER / os.path.splitext(name)[0]
        document = json.loads(open(writers.output_path(stem, "json")).read())
        with open(writers.output_path(stem, "csv"), newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [float(row["confidence"]) for row in rows] == document["local_confidences"]
        header, *selections = read_tab_separated(writers.output_path(stem, "raven"))
        assert len(selections) == len(document["detections"]) >= 1
        assert {row[header.index("Begin Path")] for row in selections} == {str(recordings / name)}
        if "2024" in name:
            assert document["start_time_utc"] == "2024-01-31T23:59:59.000Z", name
    header, *combined = read_tab_separated(output_dir / writers.COMBINED_RAVEN_TABLE)
    assert sorted({row[header.index("Begin File")] for row in combined}) == sorted(names)
