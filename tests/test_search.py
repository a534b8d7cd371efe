"""
`orcahello search` over tables `orcahello embed` wrote with a tiny model: a window of a recording finds itself
first, the ranking is the cosine computed here independently, a clip of a window finds that window, and the hits
come back as CSV and as a review page.
"""

import csv
import io
import json
import shutil

import numpy as np
import pytest
import soundfile
from chromium_devtools import HeadlessChromium, find_chromium
from conftest import LEGACY

from orcahello import cli, labelling, search
from orcahello.embed import embed_files

pytest.importorskip("pyarrow")
RECORDINGS = ("rec01_calls_quiet_bg.wav", "rec03_boat_only.wav", "edge_10s_48k.wav")


@pytest.fixture(scope="module")
def tables(tiny_model_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("search_recordings")
    for name in RECORDINGS:
        shutil.copyfile(LEGACY / "audio" / name, folder / name)
    output = tmp_path_factory.mktemp("search_tables")
    outcome = embed_files([str(folder)], str(output), model=str(tiny_model_folder), device="cpu")
    assert len(outcome["written"]) == 3 and not outcome["failed"]
    return folder, output


def independent_cosines(table_folder, query_file, query_start):
    """Every window's cosine to the query window, in float64 from the tables, and the windows' (file, start)."""
    import pyarrow.dataset

    table = pyarrow.dataset.dataset(sorted(map(str, table_folder.glob("*.parquet")))).to_table()
    vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False)).astype(np.float64)
    keys = list(zip(table["file"].to_pylist(), table["start"].to_pylist()))
    query = vectors[keys.index((query_file, query_start))]
    cosines = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    return cosines, keys


def run_search(capsys, *arguments):
    status = cli.main(["search", *map(str, arguments)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.needs_test_data
def test_a_window_finds_itself_first_and_the_ranking_is_the_cosine(tables, capsys):
    folder, table_folder = tables
    query_file = str(folder / "rec03_boat_only.wav")
    status, out, err = run_search(capsys, table_folder, "--query", "rec03_boat_only.wav@20.5", "--top", 10)
    assert status == 0, err
    hits = list(csv.DictReader(io.StringIO(out)))
    assert list(hits[0]) == list(search.HIT_COLUMNS) and len(hits) == 10
    # 20.5 s lies in the windows 19-21 s and 20-22 s, whose middles are both 0.5 s away: the earlier wins the tie.
    assert (hits[0]["file"], float(hits[0]["start"]), float(hits[0]["similarity"])) == (query_file, 19.0, 1.0)
    cosines, keys = independent_cosines(table_folder, query_file, 19.0)
    expected = np.argsort(-cosines, kind="stable")[:10]
    np.testing.assert_allclose([float(hit["similarity"]) for hit in hits], cosines[expected], atol=1e-5)
    assert [(hit["file"], float(hit["start"])) for hit in hits][1:] == [keys[i] for i in expected][1:]


@pytest.mark.needs_test_data
def test_a_clip_of_a_window_finds_that_window(tables, tiny_model_folder, tmp_path, capsys):
    folder, table_folder = tables
    audio, rate = soundfile.read(folder / "rec01_calls_quiet_bg.wav", dtype="float32")
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, audio[7 * rate : 9 * rate], rate)  # exactly the window 7-9 s
    status, out, err = run_search(
        capsys, table_folder, "--query-clip", clip, "--model", tiny_model_folder, "--device", "cpu", "--top", 3
    )
    assert status == 0, err
    first = next(csv.DictReader(io.StringIO(out)))
    assert (first["file"], float(first["start"])) == (str(folder / "rec01_calls_quiet_bg.wav"), 7.0)
    assert float(first["similarity"]) > 0.9999


@pytest.mark.needs_test_data
def test_hits_page_rows_can_be_labelled(tables, tmp_path, capsys):
    _, table_folder = tables
    hits_csv = tmp_path / "hits.csv"
    status, out, err = run_search(
        capsys, table_folder, "--query", "edge_10s_48k.wav@3", "--top", 5, "--output", hits_csv, "--report", tmp_path
    )
    assert status == 0, err
    assert "5 hit(s)" in out and hits_csv.read_text().count("\n") == 6
    page = (tmp_path / "report.html").read_text()
    assert page.count('<tr class="detection"') == 5 and page.count('<button type="button" data-answer="yes"') == 5
    if find_chromium() is None:
        pytest.skip("Debian's chromium is not installed: the page's browser check needs it")
    with HeadlessChromium() as browser:
        session = browser.open((tmp_path / "report.html").as_uri())
        browser.evaluate(session, "document.querySelector('tr.detection button[data-answer=\"no\"]').click()")
        status_text = browser.evaluate(session, "document.getElementById('labels-status').textContent")
        missing = browser.evaluate(session, "document.querySelectorAll('.missing').length")
        key = browser.evaluate(session, "document.body.dataset.labelsKey")
        stored = browser.evaluate(session, f"localStorage.getItem('{labelling.STORAGE_PREFIX}{key}')")
        assert browser.problems(session) == []
    assert status_text == "1 of 5 labelled" and missing == 0 and len(json.loads(stored)) == 1


@pytest.mark.needs_test_data
@pytest.mark.parametrize(
    "query, message",
    [
        ("nothing.wav@3", "no recording 'nothing.wav' in the tables"),
        ("edge_10s_48k.wav@30", "has no window at 30.0 s"),
    ],
)
def test_bad_queries_are_one_line_errors(tables, capsys, query, message):
    _, table_folder = tables
    status, _, err = run_search(capsys, table_folder, "--query", query)
    assert status == 2 and message in err and err.count("\n") == 1


@pytest.mark.needs_test_data
def test_a_query_without_a_time_is_refused_by_the_command_line(tables, capsys):
    _, table_folder = tables
    with pytest.raises(SystemExit) as exit_status:
        run_search(capsys, table_folder, "--query", "edge_10s_48k.wav")
    assert exit_status.value.code == 2 and "a window query is FILE@SECONDS" in capsys.readouterr().err


@pytest.mark.needs_test_data
def test_tables_of_another_layer_are_refused(tables, tiny_model_folder, tmp_path):
    folder, table_folder = tables
    head_tables = tmp_path / "head"
    embed_files([str(folder / "edge_10s_48k.wav")], str(head_tables), model=str(tiny_model_folder), layer="head")
    mixed = [str(path) for path in sorted(table_folder.glob("*.parquet"))] + [
        str(path) for path in head_tables.glob("*.parquet")
    ]
    with pytest.raises(search.SearchError, match="another model or layer"):
        search.WindowIndex.from_tables(mixed)


def test_nearest_breaks_ties_by_row_with_the_query_first():
    vectors = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [3.0, 0.0]], dtype=np.float32)
    index = search.WindowIndex({}, vectors)
    rows, similarities = index.nearest(np.array([1.0, 0.0]), 3, first=3)
    assert rows.tolist() == [3, 0, 1] and similarities.tolist() == [1.0, 1.0, 1.0]
    rows, _ = index.nearest(np.array([0.0, 1.0]), 10)
    assert rows.tolist() == [2, 0, 1, 3]
