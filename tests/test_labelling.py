"""
Labels in `detect --report`'s page, in a real headless Chromium driven over the DevTools protocol: detections
labelled with mouse clicks and keys, kept across a reload, downloaded as a CSV compared byte for byte with the text
written here, and that CSV read by `orcahello evaluate` and `orcahello adapt`.
"""

import hashlib
import json
import shutil
import time

import pytest
from chromium_devtools import HeadlessChromium, find_chromium
from conftest import LEGACY, run_orcahello_cli

from orcahello import cli, labelling

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it): the labelling "
    "checks need a real browser",
)
# name in the test folder <- fixture WAV (a comma in one name: the CSV must quote it)
RECORDINGS = {
    "a.wav": "edge_44k1_6s.wav",
    "b.wav": "edge_float32_48k_6s.wav",
    "c.wav": "edge_stereo_48k_6s.wav",
    "ten.wav": "edge_10s_48k.wav",
    "twenty, khz.wav": "edge_20k_6s.wav",
}
ROW_STATE = """Array.from(document.querySelectorAll('#detections tbody tr')).map(row => ({
  file: row.dataset.file, answer: row.dataset.answer, selected: row.classList.contains('selected'),
  kind: row.querySelector('select.no-class').value, disabled: row.querySelector('select.no-class').disabled,
  pressed: Array.from(row.querySelectorAll('button[aria-pressed="true"]')).map(button => button.dataset.answer)}))"""


@pytest.fixture(scope="module")
def labelled_run(tiny_model_folder, tmp_path_factory):
    """detect --report on five recordings with threshold 0: one detection per recording, the whole of it."""
    folder = tmp_path_factory.mktemp("labelling_recordings")
    for name, fixture in RECORDINGS.items():
        shutil.copyfile(LEGACY / "audio" / fixture, folder / name)
    output_dir = tmp_path_factory.mktemp("labelling_run")
    completed = run_orcahello_cli(
        folder, "--output-dir", output_dir, "--model", tiny_model_folder, "--report", "--threshold", 0.0
    )
    assert completed.returncode == 0, completed.stderr
    return folder, output_dir


def center_of(browser, session, selector_expression):
    """The viewport coordinates of the middle of an element, scrolled into view."""
    return browser.evaluate(
        session,
        f"(() => {{ const element = {selector_expression}; element.scrollIntoView({{block: 'center'}}); "
        "const box = element.getBoundingClientRect(); return [box.left + box.width / 2, box.top + box.height / 2]; })()",
    )


def click(browser, session, selector_expression):
    """A real left click (mouse pressed and released) through the DevTools Input domain."""
    x, y = center_of(browser, session, selector_expression)
    for kind in ("mousePressed", "mouseReleased"):
        browser.send(
            "Input.dispatchMouseEvent",
            {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
            session_id=session,
        )


KEY_CODES = {"ArrowDown": 40, "ArrowUp": 38}


def press(browser, session, key):
    """A key pressed and released through the DevTools Input domain."""
    code = KEY_CODES[key] if key in KEY_CODES else ord(key.upper())
    event = {"key": key, "code": key, "windowsVirtualKeyCode": code}
    if key not in KEY_CODES:
        event["text"] = key
    browser.send("Input.dispatchKeyEvent", {"type": "keyDown", **event}, session_id=session)
    browser.send("Input.dispatchKeyEvent", {"type": "keyUp", **event}, session_id=session)


def row_of(name):
    return f"Array.from(document.querySelectorAll('#detections tbody tr')).find(row => row.dataset.file.endsWith('/{name}'))"


def states(browser, session):
    return {row["file"].rsplit("/", 1)[1]: row for row in browser.evaluate(session, ROW_STATE)}


@pytest.mark.needs_test_data
@needs_chromium
def test_labels_clicked_persist_across_a_reload_and_download_as_the_csv_evaluate_and_adapt_read(
    labelled_run, tiny_model_folder, tmp_path, capsys
):
    folder, output_dir = labelled_run
    run_hash = json.loads((output_dir / "orcahello_run.json").read_text())["run_hash"]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with HeadlessChromium() as browser:
        session = browser.open((output_dir / "report.html").as_uri())
        assert set(states(browser, session)) == set(RECORDINGS)
        # Mouse: Yes on ten.wav; No on b.wav, then its class from the list (a change event).
        click(browser, session, row_of("ten.wav") + ".querySelector('button[data-answer=\"yes\"]')")
        click(browser, session, row_of("b.wav") + ".querySelector('button[data-answer=\"no\"]')")
        browser.evaluate(
            session,
            f"(() => {{ const select = {row_of('b.wav')}.querySelector('select'); select.value = 'vessel'; "
            "select.dispatchEvent(new Event('change', {bubbles: true})); })()",
        )
        # Keys: choose a row by clicking it, then y / n and a class number / u; arrows move between rows.
        click(browser, session, row_of("twenty, khz.wav") + ".cells[1]")
        press(browser, session, "y")
        click(browser, session, row_of("a.wav") + ".cells[1]")
        press(browser, session, "n")
        press(browser, session, "2")  # water
        order = [row["file"].rsplit("/", 1)[1] for row in browser.evaluate(session, ROW_STATE)]
        position = order.index("c.wav")
        neighbour, arrow = (order[position - 1], "ArrowDown") if position else (order[1], "ArrowUp")
        click(browser, session, row_of(neighbour) + ".cells[1]")
        press(browser, session, arrow)
        assert states(browser, session)["c.wav"]["selected"]
        press(browser, session, "u")
        before = states(browser, session)
        assert browser.problems(session) == []

        # Reload: the labels come back from the browser's storage, keyed by the run.
        del browser.events[:]
        browser.send("Page.reload", session_id=session)
        browser.wait_for_event("Page.loadEventFired", session)
        after = states(browser, session)
        expected = {
            "a.wav": ("no", "water", ["no"]),
            "b.wav": ("no", "vessel", ["no"]),
            "c.wav": ("unsure", "", ["unsure"]),
            "ten.wav": ("yes", "", ["yes"]),
            "twenty, khz.wav": ("yes", "", ["yes"]),
        }
        assert {name: (row["answer"], row["kind"], row["pressed"]) for name, row in after.items()} == expected
        assert {name: row["answer"] for name, row in before.items()} == {
            name: value[0] for name, value in expected.items()
        }
        assert sorted(name for name, row in after.items() if not row["disabled"]) == ["a.wav", "b.wav"]  # a "no"
        stored = browser.evaluate(session, f"localStorage.getItem('{labelling.STORAGE_PREFIX}{run_hash}')")
        assert len(json.loads(stored)) == 5

        # Download: the browser writes the Blob into the folder given.
        browser.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        click(browser, session, "document.getElementById('labels-download')")
        csv_path = downloads / f"orcahello_labels_{run_hash}.csv"
        deadline = time.monotonic() + 30
        while not csv_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert browser.problems(session) == []
    d = str(folder)
    # In the order the run scored them (sorted names), whatever order the table shows.
    assert (
        csv_path.read_bytes()
        == (
            "file,start_s,end_s,label\n"
            f"{d}/a.wav,0.0,6.0,not_srkw:water\n"
            f"{d}/b.wav,0.0,6.0,not_srkw:vessel\n"
            f"{d}/c.wav,0.0,6.0,unsure\n"
            f"{d}/ten.wav,0.0,10.0,srkw\n"
            f'"{d}/twenty, khz.wav",0.0,6.0,srkw\n'
        ).encode()
    )

    # evaluate: ten.wav's 10 seconds and twenty's 6 are calls, a and b's 12 are not, c's 6 (unsure) are left out.
    metrics_path = tmp_path / "metrics.json"
    status = cli.main(["evaluate", str(output_dir), "--annotations", str(csv_path), "--output", str(metrics_path)])
    assert status == 0, capsys.readouterr().err
    seconds = json.loads(metrics_path.read_text())["seconds"]
    assert (seconds["examples"], seconds["positives"]) == (28, 16)

    # adapt: the same labels give 9 + 5 positive windows, 5 + 5 negative ones, c's 5 left out.
    adapted = tmp_path / "adapted"
    status = cli.main(
        ["adapt", str(csv_path), "--recordings", str(folder), "--model", str(tiny_model_folder),
         "--output-dir", str(adapted), "--folds", "2"]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    head = json.loads((adapted / "config.json").read_text())["adapted_head"]
    assert head["windows"] == {"positive": 14, "negative": 10, "left_out": 5}
    assert head["annotations"] == [
        {"file": csv_path.name, "sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(), "annotations": 5}
    ]
