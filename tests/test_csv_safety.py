"""
CSV files in and out (issue 30, N11): text copied from someone's input into an output CSV never runs as a spreadsheet
formula; a huge field, a non-UTF-8 file or a duration no recording has is a one-line error, not a traceback or
gigabytes of arrays.
"""

import csv
import io
import json

import pytest

from orcahello import calibrate, evaluate, search, writers


@pytest.mark.parametrize(
    "value, written",
    [
        ('=HYPERLINK("http://x","click")', '\'=HYPERLINK("http://x","click")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-0.5", "-0.5"),  # a number written as text stays a number
        ("+1e3", "+1e3"),
        ("rpi_orcasound_lab.wav", "rpi_orcasound_lab.wav"),
        (-3, -3),
        (0.25, 0.25),
    ],
)
def test_spreadsheet_cells(value, written):
    assert writers.spreadsheet_cell(value) == written


def test_written_csvs_keep_formulas_as_text(tmp_path):
    path = tmp_path / "summary.csv"
    first = writers.SUMMARY_HEADER[0]
    writers.write_summary_csv(path, [{first: "=1+1.wav"}])
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[1][0] == "'=1+1.wav"
    hits = [{"rank": 1, "similarity": 0.9, "file": "@evil.wav", "start": 0.0, "end": 2.0, "score": 0.5}]
    assert "'@evil.wav" in search.hits_csv(hits)


def test_calibrate_reports_a_huge_field_in_one_line(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("NodeName,Confidence,Category\nlab," + "9" * 200_000 + ",srkw\n")
    with pytest.raises(calibrate.CalibrationError, match="not a readable CSV"):
        calibrate.read_labels(str(labels))
    labels.write_bytes(b"NodeName,Confidence,Category\n\xff\xfe,1,srkw\n")
    with pytest.raises(calibrate.CalibrationError, match="not a UTF-8 text CSV"):
        calibrate.read_labels(str(labels))


def test_evaluate_reports_bad_annotation_files_in_one_line(tmp_path):
    annotations = tmp_path / "annotations.csv"
    annotations.write_text("file,start_s,end_s\nclip.wav,0," + "1" * 200_000 + "\n")
    with pytest.raises(evaluate.EvaluationError, match="not a readable CSV"):
        evaluate.read_annotations(str(annotations))
    annotations.write_bytes(b"file,start_s,end_s\n\xff.wav,0,1\n")
    with pytest.raises(evaluate.EvaluationError, match="not a UTF-8 text file"):
        evaluate.read_annotations(str(annotations))


@pytest.mark.parametrize("duration", [3e9, -1, True, float("nan")])
def test_evaluate_refuses_a_duration_no_recording_has(tmp_path, duration):
    # `duration_s: 3e9` made arrays of 3e9 seconds (over 6 GB) before anything was compared.
    result = {"file": "clip.wav", "duration_s": duration, "global_prediction": 0, "submission": []}
    (tmp_path / ("clip" + writers.OUTPUT_SUFFIXES["json"])).write_text(json.dumps(result))
    with pytest.raises(evaluate.EvaluationError, match="bad duration_s"):
        evaluate.load_detections([str(tmp_path)])
