"""
`orcahello evaluate`: the one-second rule of upstream's score.py, AUPRC and the decision metrics on a case worked out
by hand, file level, per site, annotation formats and bad input; and on real `detect` output against an AUPRC from an
independent formula.
"""

import json
import shutil

import numpy as np
import pytest
from conftest import LEGACY, run_orcahello_cli

from orcahello import cli
from orcahello.evaluate import EvaluationError, annotation_kind, marked_seconds, read_annotations


def rows(*confidences):
    """Production's scoring rows: one per second."""
    return [
        {"wav_filename": "x.wav", "start_time_s": second, "duration_s": 1, "confidence": confidence}
        for second, confidence in enumerate(confidences)
    ]


def write_result(folder, relative, duration, submission, global_confidence, global_prediction, legacy=False):
    """A `detect` result as `<stem>.orcahello.json` (the keys evaluate reads, plus the parameters detect records),
    its `global_confidence` 0-1; with `legacy`, as versions before the one scale saved it: production's 0-100 value
    under `global_confidence`, no `global_confidence_percent`."""
    stem = folder / relative.rsplit(".", 1)[0]
    stem.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "file": f"/recordings/{relative}",
        "duration_s": duration,
        "submission": submission,
        "global_confidence": 100 * global_confidence if legacy else global_confidence,
        "global_prediction": global_prediction,
        "parameters": {"aggregation": "orcahello", "local_threshold": 0.5},
    }
    if not legacy:
        document["global_confidence_percent"] = 100 * global_confidence
    (stem.parent / (stem.name + ".orcahello.json")).write_text(json.dumps(document))


def write_hand_worked_results(folder, legacy=False):
    # Per second, with score.py's inclusive end (a row from t to t+1 also marks t+1), the highest row marking it:
    # a: rows 0.9 0.2 0.6 0.1 over 4.5 s -> seconds 0.9 0.9 0.6 0.6 0.1
    write_result(folder, "rpi_x/hls/1700000000/a.wav", 4.5, rows(0.9, 0.2, 0.6, 0.1), 0.75, 1, legacy)
    # b: rows 0.7 0.3 over 3 s -> 0.7 0.7 0.3
    write_result(folder, "rpi_y/b.wav", 3.0, rows(0.7, 0.3), 0.40, 0, legacy)
    # c: row 0.8 over 2 s -> 0.8 0.8; no annotations: negative throughout
    write_result(folder, "rpi_y/c.wav", 2.0, rows(0.8), 0.80, 1, legacy)
    return folder


@pytest.fixture
def results(tmp_path):
    return write_hand_worked_results(tmp_path / "results")


ANNOTATIONS = """file,start_s,end_s,label
a.wav,0.5,0.9,SRKW
rpi_y/b.wav,2.2,2.4,SRKW
c.wav,0.0,0.5,noise
d.wav,1,2,SRKW
"""


def run_evaluate(capsys, *arguments):
    status = cli.main(["evaluate", *map(str, arguments)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_score_py_quantization():
    assert list(marked_seconds(0.5, 0.9, 10)) == [0, 1]  # ceil(end) is included, as in score.py
    assert list(marked_seconds(2.0, 3.0, 10)) == [2, 3]
    assert list(marked_seconds(8.2, 12.0, 9.5)) == [8, 9]  # up to floor(duration) of ceil(duration) seconds
    assert list(marked_seconds(8.2, 12.0, 9.0)) == [8]  # second 9 does not exist in a 9-second recording


def test_hand_worked_case(results, tmp_path, capsys):
    annotations = tmp_path / "annotations.csv"
    annotations.write_text(ANNOTATIONS)
    output = tmp_path / "metrics.json"
    status, out, err = run_evaluate(
        capsys, results, "--annotations", annotations, "--output", output, "--positive-label", "srkw"
    )
    assert status == 0, err
    assert "annotations of 'd.wav' match no detect result" in err
    metrics = json.loads(output.read_text())
    # Pooled seconds (score, annotated): a (.9,1) (.9,1) (.6,0) (.6,0) (.1,0); b (.7,0) (.7,0) (.3,1); c (.8,0) (.8,0).
    # From the top: at .9 P=1 R=2/3; .8 .7 .6 add no recall; at .3 P=3/9 R=1: AP = 2/3 * 1 + 1/3 * 1/3 = 7/9.
    assert metrics["auprc"] == pytest.approx(7 / 9, abs=1e-6)
    seconds = metrics["seconds"]
    assert (seconds["examples"], seconds["positives"]) == (10, 3)
    # Above 0.5: a 0-3, b 0-1, c 0-1: 2 true, 6 false positives, b's second 2 missed.
    assert (seconds["true_positives"], seconds["false_positives"], seconds["false_negatives"]) == (2, 6, 1)
    assert seconds["precision"] == 0.25 and seconds["recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert seconds["f1"] == pytest.approx(4 / 11, abs=1e-6)
    # Files (score = global confidence, annotated): c (.8, no), a (.75, yes), b (.4, yes): AP = 1/2*1/2 + 1/2*2/3.
    files = metrics["files"]
    assert files["auprc"] == pytest.approx(7 / 12, abs=1e-6)
    assert (files["true_positives"], files["false_positives"], files["false_negatives"]) == (1, 1, 1)
    assert files["precision"] == files["recall"] == files["f1"] == 0.5
    # Sites: the folder above hls, else the recording's folder.
    assert set(metrics["per_site"]) == {"rpi_x", "rpi_y"}
    assert metrics["per_site"]["rpi_x"]["seconds"]["auprc"] == 1.0
    assert metrics["per_site"]["rpi_y"]["seconds"]["auprc"] == pytest.approx(0.2, abs=1e-6)  # one positive, last
    assert metrics["per_site"]["rpi_y"]["num_files"] == 2
    per_file = {entry["file"].rsplit("/", 1)[1]: entry for entry in metrics["per_file"]}
    assert per_file["c.wav"]["annotated_seconds"] == 0 and per_file["c.wav"]["seconds"]["auprc"] is None
    assert per_file["a.wav"]["annotated_seconds"] == 2 and per_file["a.wav"]["seconds"]["auprc"] == 1.0
    assert metrics["annotations_without_results"] == ["d.wav"]
    assert "floor(start)" in metrics["matching_rule"] and metrics["thresholds_used"]["local_threshold"] == [0.5]
    assert (tmp_path / "metrics.pr_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "AUPRC 0.778" in out

    # Without --positive-label, c's "noise" annotation marks its second 0 (and 1) positive too.
    status, _, _ = run_evaluate(capsys, results, "--annotations", annotations, "--output", output)
    assert status == 0 and json.loads(output.read_text())["seconds"]["positives"] == 5


def test_results_saved_before_the_one_scale_read_on_it(tmp_path, capsys):
    """Results saved by earlier versions held production's 0-100 global confidence (no `global_confidence_percent`):
    evaluate reads them on the 0-1 scale, with the metrics of the same results saved today; a result that says it is
    0-1 but holds 75 is refused in one line."""
    annotations = tmp_path / "annotations.csv"
    annotations.write_text(ANNOTATIONS)
    metrics = {}
    for name, legacy in (("today", False), ("legacy", True)):
        folder = write_hand_worked_results(tmp_path / name, legacy=legacy)
        output = tmp_path / f"{name}.json"
        status, _, err = run_evaluate(capsys, folder, "--annotations", annotations, "--output", output)
        assert status == 0, err
        metrics[name] = json.loads(output.read_text())
    per_file = {entry["file"].rsplit("/", 1)[1]: entry for entry in metrics["legacy"]["per_file"]}
    assert per_file["a.wav"]["global_confidence"] == pytest.approx(0.75)
    assert per_file["c.wav"]["global_confidence"] == pytest.approx(0.80)
    assert metrics["legacy"]["files"] == metrics["today"]["files"]
    assert metrics["legacy"]["per_file"] == metrics["today"]["per_file"]

    wrong = tmp_path / "wrong"
    write_result(wrong, "rpi_y/b.wav", 3.0, rows(0.7, 0.3), 0.40, 0)
    path = wrong / "rpi_y" / "b.orcahello.json"
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "global_confidence": 75.0}))
    status, _, err = run_evaluate(capsys, wrong, "--annotations", annotations, "--output", tmp_path / "w.json")
    assert status == 2 and "b.orcahello.json: global_confidence must be from 0 to 1, got 75.0" in err
    assert len(err.strip().splitlines()) == 1


def test_review_page_labels_no_marks_nothing_and_unsure_is_left_out(results, tmp_path, capsys):
    """The labels `detect --report`'s page writes: srkw marks a call, not_srkw[:class] marks nothing, unsure seconds
    (unless a positive marks them) are left out of every metric."""
    annotations = tmp_path / "labels.csv"
    annotations.write_text(
        "file,start_s,end_s,label\n"
        "a.wav,0.5,0.9,srkw\n"
        "a.wav,3.2,3.5,unsure\n"  # a's seconds 3 and 4 left out
        "rpi_y/b.wav,2.2,2.4,SRKW\n"
        "rpi_y/b.wav,0.0,0.4,not_srkw:vessel\n"  # marks nothing: b's seconds 0 and 1 stay negative
        "c.wav,0.0,0.5,unsure\n"  # c's seconds 0 and 1 left out: c has none left
    )
    output = tmp_path / "metrics.json"
    status, _, err = run_evaluate(capsys, results, "--annotations", annotations, "--output", output)
    assert status == 0, err
    metrics = json.loads(output.read_text())
    # Pooled (score, annotated): a (.9,1) (.9,1) (.6,0); b (.7,0) (.7,0) (.3,1). At .9 P=1 R=2/3; at .3 P=3/6 R=1.
    assert (metrics["seconds"]["examples"], metrics["seconds"]["positives"]) == (6, 3)
    assert metrics["auprc"] == pytest.approx(2 / 3 + 1 / 3 * 1 / 2, abs=1e-6)
    per_file = {entry["file"].rsplit("/", 1)[1]: entry for entry in metrics["per_file"]}
    assert [per_file[name]["unsure_seconds_left_out"] for name in ("a.wav", "b.wav", "c.wav")] == [2, 0, 2]
    assert annotation_kind("Not_SRKW: water") == "negative" and annotation_kind("negative") == "negative"
    assert annotation_kind(" UNSURE ") == "unsure" and annotation_kind("") == annotation_kind("call") == "positive"


def test_raven_selection_tables_give_the_same_intervals(results, tmp_path, capsys):
    raven = tmp_path / "ann.selections.txt"
    raven.write_text(
        "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tBegin File\tFile Offset (s)\tAnnotation\n"
        "1\tSpectrogram 1\t1\t0.5\t0.9\ta.wav\t0.5\tSRKW\n"
        "2\tSpectrogram 1\t1\t6.7\t6.9\tb.wav\t2.2\tSRKW\n"
    )
    single = tmp_path / "c.Table.1.selections.txt"  # no Begin File: the table's name says the recording
    single.write_text("Selection\tBegin Time (s)\tEnd Time (s)\n1\t0.0\t0.5\n")
    assert read_annotations(raven) == [("a.wav", 0.5, 0.9, "SRKW"), ("b.wav", 2.2, pytest.approx(2.4), "SRKW")]
    assert read_annotations(single) == [("c", 0.0, 0.5, "")]
    output = tmp_path / "metrics.json"
    status, _, err = run_evaluate(capsys, results, "--annotations", raven, "--output", output)
    assert status == 0, err
    assert json.loads(output.read_text())["auprc"] == pytest.approx(7 / 9, abs=1e-6)
    status, _, err = run_evaluate(capsys, results, "--annotations", raven, "--annotations", single, "--output", output)
    assert status == 0 and json.loads(output.read_text())["seconds"]["positives"] == 5


@pytest.mark.parametrize(
    "text, message",
    [
        ("name,begin,end\nx,1,2\n", "no column(s) file, start_s, end_s"),
        ("file,start_s,end_s\nx,1,oops\n", "line 2: end_s 'oops' is not a number"),
        ("file,start_s,end_s\nx,3,2\n", "line 2: the end (2.0) is before the start (3.0)"),
        ("file,start_s,end_s\n,1,2\n", "line 2: empty file name"),
        ("file,start_s,end_s\nx,-1,2\n", "must be a number >= 0"),
    ],
)
def test_bad_annotations_are_refused_with_the_line_named(tmp_path, text, message):
    path = tmp_path / "ann.csv"
    path.write_text(text)
    with pytest.raises(EvaluationError) as error:
        read_annotations(path)
    assert message in str(error.value) and str(error.value).startswith(str(path))


def test_bad_detections_and_ambiguous_names(results, tmp_path, capsys):
    annotations = tmp_path / "ann.csv"
    annotations.write_text("file,start_s,end_s\nb.wav,0,1\n")
    status, _, err = run_evaluate(capsys, tmp_path / "none", "--annotations", annotations, "--output", tmp_path / "m")
    assert status == 2 and err.startswith("ERROR: ") and "no such file or folder" in err
    write_result(results, "rpi_z/b.wav", 3.0, rows(0.1), 0.0, 0)
    status, _, err = run_evaluate(capsys, results, "--annotations", annotations, "--output", tmp_path / "m.json")
    assert status == 2 and "annotation file 'b.wav' matches 2 results; give more of its path" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _, err = run_evaluate(capsys, empty, "--annotations", annotations, "--output", tmp_path / "m.json")
    assert status == 2 and "no detect results" in err
    broken = empty / "x.orcahello.json"
    broken.write_text(json.dumps({"file": "x.wav", "duration_s": 3, "global_prediction": 0, "submission": [{}]}))
    status, _, err = run_evaluate(capsys, broken, "--annotations", annotations, "--output", tmp_path / "m.json")
    assert status == 2 and "x.orcahello.json: not a detect result (bad duration_s or submission rows)" in err
    status, _, err = run_evaluate(
        capsys, results / "rpi_y", "--annotations", annotations, "--output", broken / "m.json"
    )
    assert status == 2 and err.startswith("ERROR: cannot write")


def independent_average_precision(labels, scores):
    """The mean, over the positive examples, of the precision among examples scoring at least as high."""
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)
    return float(np.mean([labels[scores >= score].mean() for score in scores[labels]]))


@pytest.mark.needs_test_data
def test_on_real_detect_output_against_an_independent_formula(tiny_model_folder, tmp_path, capsys):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for name in ("one.wav", "two.wav"):
        shutil.copyfile(LEGACY / "audio" / "edge_20k_6s.wav", recordings / name)
    output_dir = tmp_path / "results"
    arguments = [recordings, "--output-dir", output_dir, "--model", tiny_model_folder, "--format", "json"]
    completed = run_orcahello_cli(*arguments)
    assert completed.returncode == 0, completed.stderr
    annotations = tmp_path / "ann.csv"
    annotations.write_text("file,start_s,end_s,label\none.wav,1.2,2.5,call\ntwo.wav,4.1,4.3,call\n")
    status, _, err = run_evaluate(capsys, output_dir, "--annotations", annotations, "--output", tmp_path / "m.json")
    assert status == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())

    # The seconds rebuilt here from the JSON rows, by the rule stated in the output.
    labels, scores = [], []
    for name, (start, end) in (("one", (1.2, 2.5)), ("two", (4.1, 4.3))):
        document = json.loads((output_dir / f"{name}.orcahello.json").read_text())
        seconds = int(np.ceil(document["duration_s"]))
        row_scores = [row["confidence"] for row in document["submission"]]  # one per second, from second 0
        for second in range(seconds):
            touching = [row_scores[t] for t in (second - 1, second) if 0 <= t < len(row_scores)]
            scores.append(max(touching, default=0.0))
            labels.append(int(np.floor(start)) <= second <= int(np.ceil(end)))
    assert metrics["seconds"]["examples"] == len(scores) and metrics["seconds"]["positives"] == sum(labels)
    assert metrics["auprc"] == pytest.approx(independent_average_precision(labels, scores), abs=1e-6)
