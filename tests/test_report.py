"""
`orcahello detect --report`: the clips and pictures written beside each recording's outputs, the page's links, and
the page itself opened in a real headless Chromium (Debian's `chromium`): no console errors or failed loads, and
every detection shown with a picture that decoded and an audio player whose clip loaded.
"""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from chromium_devtools import HeadlessChromium, find_chromium
from conftest import LEGACY, make_orcanode_hls, run_orcahello_cli

from orcahello import report, writers

EPOCH = 1600000000
CALLS_WAV = LEGACY / "audio" / "rec01_calls_quiet_bg.wav"  # the stand-in learner finds several calls in it
TEN_SECONDS_WAV = LEGACY / "audio" / "edge_10s_48k.wav"
needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it): the report's "
    "browser checks need a real browser",
)

# In the page: wait until every audio element has loaded its clip's metadata (or failed), then describe every
# detection row as the browser sees it.
DESCRIBE_PAGE = """(async () => {
  const audios = Array.from(document.querySelectorAll('audio'));
  await Promise.all(audios.map(audio => (audio.readyState >= 1 || audio.error) ? null : new Promise(done => {
    audio.addEventListener('loadedmetadata', done); audio.addEventListener('error', done); })));
  return Array.from(document.querySelectorAll('#detections tbody tr')).map(row => {
    const image = row.querySelector('img.spectrogram'), audio = row.querySelector('audio');
    return {id: row.id, recording: row.cells[0].textContent, start: parseFloat(row.cells[1].dataset.value),
            confidence: parseFloat(row.cells[3].dataset.value),
            picture: image ? {src: image.getAttribute('src'), complete: image.complete,
                              width: image.naturalWidth} : null,
            audio: audio ? {src: audio.getAttribute('src'), ready: audio.readyState, duration: audio.duration,
                            error: audio.error ? audio.error.code : null} : null,
            missing: row.querySelectorAll('.missing').length};
  });
})()"""


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report_recordings")
    shutil.copyfile(CALLS_WAV, folder / "calls.wav")
    shutil.copyfile(TEN_SECONDS_WAV, folder / "ten.wav")
    (folder / "bad.wav").write_bytes(np.random.default_rng(2).bytes(2048))
    make_orcanode_hls(TEN_SECONDS_WAV, folder / "node" / "hls" / str(EPOCH))
    return folder


@pytest.fixture(scope="module")
def report_run(recordings, resnet50_folder, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("report_run")
    completed = run_orcahello_cli(
        recordings, "--recursive", "--output-dir", output_dir, "--model", resnet50_folder, "--report"
    )
    return completed, output_dir


def documents(output_dir):
    """`{output stem: JSON document}` for every recording of the run."""
    return {
        Path(str(path)[: -len(writers.OUTPUT_SUFFIXES["json"])]): json.loads(path.read_text())
        for path in sorted(output_dir.rglob("*.orcahello.json"))
    }


def expected_clips(output_dir):
    """`(document, detection, clip path, picture path)` for every detection of the run."""
    found = []
    for stem, document in documents(output_dir).items():
        folder = str(stem) + report.CLIPS_SUFFIX
        for detection in document["detections"]:
            clip_stem = report.clip_stem(folder, detection)
            found.append((document, detection, Path(clip_stem + ".wav"), Path(clip_stem + ".png")))
    return found


@pytest.mark.needs_test_data
def test_clips_and_pictures_are_written_beside_each_recording(report_run, recordings):
    completed, output_dir = report_run
    assert completed.returncode == 1, completed.stderr  # bad.wav
    assert f"Report: {output_dir / 'report.html'}" in completed.stdout
    clips = expected_clips(output_dir)
    assert len(documents(output_dir)) == 3
    assert len({document["file"] for document, *_ in clips}) == 3  # every recording has detections
    for document, detection, clip_path, picture_path in clips:
        audio, rate = soundfile.read(clip_path, dtype="float32")
        start_s, end_s = report.clip_bounds(detection, document["duration_s"])
        assert audio.ndim == 1 and rate == document["sampling_rate"]
        assert len(audio) == pytest.approx((end_s - start_s) * rate, abs=1)
        assert start_s <= detection["start"] and end_s >= min(detection["end"], document["duration_s"])
        assert picture_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if document["file"].endswith(".wav"):  # a file's clip is its own samples, mixed to mono, as 16-bit PCM
            source, _ = soundfile.read(document["file"], dtype="float32", always_2d=True)
            first = int(round(start_s * rate))
            np.testing.assert_allclose(audio, source[first : first + len(audio)].mean(axis=1), atol=1.0 / 32768)
    # Nothing but the clips in the clip folders.
    clip_files = {path for _, _, clip, picture in clips for path in (clip, picture)}
    assert set(output_dir.rglob(f"*{report.CLIPS_SUFFIX}/*")) == clip_files


@pytest.mark.needs_test_data
def test_page_links_every_output_and_loads_nothing_from_the_network(report_run):
    _, output_dir = report_run
    page = (output_dir / "report.html").read_text()
    links = re.findall(r'(?:href|src)="([^"#][^"]*)"', page)
    assert links and not [link for link in links if re.match(r"[a-z]+:", link)]  # all relative: no URL, no CDN
    for link in links:
        assert (output_dir / link.replace("%20", " ")).is_file(), link
    for stem in documents(output_dir):
        for kind in ("json", "csv", "raven", "audacity"):
            relative = os.path.relpath(writers.output_path(stem, kind), output_dir).replace(os.sep, "/")
            assert f'href="{relative}"' in page, relative
    for name in (writers.SUMMARY_CSV, writers.COMBINED_RAVEN_TABLE, writers.RUN_PARAMETERS_JSON):
        assert f'href="{name}"' in page
    assert "<script>" in page and "<script src" not in page and "<link" not in page
    assert "2020-09-13T12:26" in page  # the HLS stream's detections carry UTC times
    assert "bad.wav" in page  # the failed input is listed


@pytest.mark.needs_test_data
@needs_chromium
def test_page_opens_in_headless_chromium_with_every_detection_playable(report_run):
    _, output_dir = report_run
    clips = expected_clips(output_dir)
    with HeadlessChromium() as browser:
        session = browser.open((output_dir / "report.html").as_uri())
        rows = browser.evaluate(session, DESCRIBE_PAGE)
        assert browser.problems(session) == []
        assert len(rows) == len(clips)
        by_clip = {
            os.path.relpath(clip, output_dir).replace(os.sep, "/"): (document, detection, picture)
            for document, detection, clip, picture in clips
        }
        for row in rows:
            document, detection, picture = by_clip[row["audio"]["src"]]
            assert row["missing"] == 0
            assert row["picture"]["src"] == os.path.relpath(picture, output_dir).replace(os.sep, "/")
            assert row["picture"]["complete"] and row["picture"]["width"] > 0  # decoded, not a broken image
            assert row["audio"]["error"] is None and row["audio"]["ready"] >= 1
            start_s, end_s = report.clip_bounds(detection, document["duration_s"])
            assert row["audio"]["duration"] == pytest.approx(end_s - start_s, abs=0.01)
            assert row["confidence"] == pytest.approx(detection["max_confidence"])
        confidences = [row["confidence"] for row in rows]
        assert confidences == sorted(confidences, reverse=True)  # highest first when the page opens

        # Clicking the header sorts by confidence the other way; clicking "Start" sorts by start.
        browser.evaluate(session, "document.querySelectorAll('#detections th')[3].click()")
        ascending = [row["confidence"] for row in browser.evaluate(session, DESCRIBE_PAGE)]
        assert ascending == sorted(confidences)
        browser.evaluate(session, "document.querySelectorAll('#detections th')[1].click()")
        starts = [row["start"] for row in browser.evaluate(session, DESCRIBE_PAGE)]
        assert starts == sorted(starts, reverse=True)
        assert browser.problems(session) == []


@pytest.mark.needs_test_data
@needs_chromium
def test_on_a_1280_px_screen_every_player_is_in_view_and_the_pictures_are_sharp(report_run):
    """Issue 29: at 1280 px the audio players were off-screen and the thumbnails' axes unreadable."""
    _, output_dir = report_run
    with HeadlessChromium() as browser:
        session = browser.open((output_dir / "report.html").as_uri())
        metrics = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
        browser.send("Emulation.setDeviceMetricsOverride", metrics, session_id=session)
        layout = browser.evaluate(
            session,
            """(() => ({
              viewport: window.innerWidth, page: document.documentElement.scrollWidth,
              players: Array.from(document.querySelectorAll('#detections audio'))
                .map(audio => audio.getBoundingClientRect().right),
              pictures: Array.from(document.querySelectorAll('#detections img.spectrogram'))
                .map(image => [image.naturalWidth, image.getBoundingClientRect().width])}))()""",
        )
    assert layout["players"] and max(layout["players"]) <= layout["viewport"]
    assert layout["page"] <= layout["viewport"]  # nothing to scroll sideways to
    # Twice as many pixels as shown: sharp on a high-density screen, its 10-pt labels legible at 1x.
    assert all(natural >= 2 * shown > 0 for natural, shown in layout["pictures"])


@pytest.mark.needs_test_data
@needs_chromium
def test_the_browser_check_sees_a_missing_clip_and_a_script_error(report_run, tmp_path):
    """The checks above can fail: a page whose clip and picture are gone, and a script that throws, are caught."""
    _, output_dir = report_run
    copy = tmp_path / "copy"
    shutil.copytree(output_dir, copy)
    _, _, clip, picture = expected_clips(copy)[0]
    clip.unlink()
    picture.unlink()
    page = (copy / "report.html").read_text()
    # The page's own script, made to throw (its hash in the policy updated: any other script is blocked).
    script = re.search(r"<script>(.*?)</script>", page, re.DOTALL).group(1)
    thrown = script + "\nundefinedFunction();"
    page = page.replace(report.content_security_policy(script), report.content_security_policy(thrown))
    page = page.replace(f"<script>{script}</script>", f"<script>{thrown}</script>")
    # And a script injected beside it, which the policy must block.
    page = page.replace("</body>", "<script>injectedFunction();</script></body>")
    (copy / "report.html").write_text(page)
    with HeadlessChromium() as browser:
        session = browser.open((copy / "report.html").as_uri())
        rows = browser.evaluate(session, DESCRIBE_PAGE)
        problems = browser.problems(session)
    assert any("undefinedFunction" in problem for problem in problems), problems
    assert not any("injectedFunction is not defined" in problem for problem in problems), problems
    assert any("Content Security Policy" in problem for problem in problems), problems
    assert any("ERR_FILE_NOT_FOUND" in problem for problem in problems), problems
    broken = [row for row in rows if row["missing"]]
    assert len(broken) == 1 and broken[0]["picture"] is None and broken[0]["audio"] is None


@pytest.mark.needs_test_data
def test_rerun_keeps_clips_and_rescoring_replaces_them(recordings, tiny_model_folder, tmp_path):
    # Threshold 0: every second is positive, so the tiny random model gives one detection, the whole recording.
    arguments = [
        recordings / "ten.wav",
        "--output-dir",
        tmp_path,
        "--model",
        tiny_model_folder,
        "--report",
        "--threshold",
        0.0,
    ]
    assert run_orcahello_cli(*arguments).returncode == 0
    clips = sorted((tmp_path / f"ten{report.CLIPS_SUFFIX}").iterdir())
    assert clips
    stale = tmp_path / f"ten{report.CLIPS_SUFFIX}" / "detection_1.00-2.00s.wav"
    stale.write_bytes(b"left by an earlier scoring")
    modified = {path: path.stat().st_mtime_ns for path in clips}
    again = run_orcahello_cli(*arguments)
    assert "1 skipped" in again.stdout
    assert {path: path.stat().st_mtime_ns for path in clips} == modified and not stale.exists()
    run_orcahello_cli(*arguments, "--overwrite")
    assert sorted((tmp_path / f"ten{report.CLIPS_SUFFIX}").iterdir()) == clips
    assert all(path.stat().st_mtime_ns != modified[path] for path in clips)


@pytest.mark.needs_test_data
def test_a_clip_write_that_fails_midway_leaves_no_clip_and_no_temporary_file(tmp_path, monkeypatch):
    def write_half_then_fail(path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"RIFF half a clip")
        raise OSError("disk full")

    monkeypatch.setattr(soundfile, "write", write_half_then_fail)
    document = {"detections": [{"start": 10.0, "end": 13.0}], "duration_s": 60.0}
    with pytest.raises(OSError, match="disk full"):
        report.write_clips(CALLS_WAV, document, tmp_path / "calls")
    assert os.listdir(tmp_path / f"calls{report.CLIPS_SUFFIX}") == []


def test_report_without_matplotlib_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    from conftest import REPO_ROOT

    # sys.modules[name] = None makes `import name` raise ImportError, as if matplotlib were not installed.
    code = (
        "import sys; sys.modules['matplotlib'] = None; from orcahello.cli import main; "
        f"sys.exit(main(['detect', {str(tmp_path)!r}, '--report', '--model', {str(tmp_path)!r}]))"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert "--report needs matplotlib" in completed.stderr and "pip install" in completed.stderr


def test_config_values_are_escaped_and_only_the_page_s_own_script_may_run(tmp_path):
    # N9: a model config's local_threshold went into the page unescaped, and the policy allowed any inline script
    # or handler attribute.
    import base64
    import hashlib

    from orcahello.report import render_report

    hostile = '<img src=x onerror="alert(1)">'
    document = {"parameters": {"local_threshold": hostile, "aggregation": hostile}, "model": {"name_or_path": hostile}}
    page = render_report(str(tmp_path), [], [], document)
    assert "<img" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    assert "unsafe-inline" not in policy.split("script-src")[1]
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode("ascii")
    assert len(scripts) == 1 and f"script-src 'sha256-{digest}'" in policy
