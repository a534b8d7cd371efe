# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello detect --report`: one static HTML page per run to review what the detector flagged, `report.html` in the
output folder. It needs no server and loads nothing from the network (its CSS and JavaScript are inline, and its
Content-Security-Policy forbids anything else); open it from disk in any browser.

- A table of every detection of the run, sortable by any column (by highest confidence first when it opens): the
  recording, start and end (seconds, and UTC when the recording's start is known), the highest and mean
  confidence, a spectrogram picture of the detection's clip and an audio player for it.
- Per recording: the decision, a timeline of the per-second confidences (inline SVG: the threshold dashed,
  detections shaded and linked to their rows, HLS gaps in red), its warnings, and links to its JSON, CSV, Raven
  and Audacity outputs (and the `--plot` picture); links to the run's summary, combined Raven table and run file.

Each detection's clip (the detection plus `CLIP_CONTEXT_SECONDS` either side, at most `MAX_CLIP_SECONDS`, mixed to
mono, 16-bit WAV at the recording's own rate) and its picture are written beside the recording's outputs, in
`<stem>.orcahello.clips/`. A rerun keeps the clips of recordings it resumes and makes again those of recordings it
scores again. Needs matplotlib for the pictures (`pip install "orcahello-srkw-detector[plot]"`).
"""

import base64
import dataclasses
import hashlib
import html
import os
import urllib.parse
from collections.abc import Sequence
from typing import Any

import numpy as np

from vocabulary_orcahello import SYNTHETIC_WEIGHTS_KEY

from . import inputs, labelling, writers
from .atomic_files import temporary_file_beside
from .plot import COLOR_CEILING_PERCENTILE, COLOR_FLOOR_PERCENTILE, MonoBlocks, spectrogram_db

REPORT_FILE = "report.html"
CLIPS_SUFFIX = ".orcahello.clips"
# Audio either side of a detection in its clip: a call's onset and tail are often just outside the positive rows.
CLIP_CONTEXT_SECONDS = 1.0
# A detection longer than this (an hour of passing pod) gets a clip of its first MAX_CLIP_SECONDS: a moderator
# listens to a sample, and the page must stay light.
MAX_CLIP_SECONDS = 60.0
TIMELINE_WIDTH, TIMELINE_HEIGHT = 1000, 110

# The clip's spectrogram as the page shows it (CSS pixels; its PNG has twice as many each way), and its labels' size.
CLIP_PICTURE_PX = (300, 120)
CLIP_PICTURE_FONT_PT = 10

STYLE = """
body { font-family: system-ui, sans-serif; font-size: 15px; margin: 1.5em; color: #1d2330; background: #fafbfc; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border-bottom: 1px solid #d7dce3; padding: 0.2em 0.5em; text-align: left; vertical-align: middle; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable::after { content: " \\2195"; color: #8a93a3; }
th[aria-sort="ascending"]::after { content: " \\2191"; color: #1d2330; }
th[aria-sort="descending"]::after { content: " \\2193"; color: #1d2330; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr:target { background: #fff3bf; }
td.recording { max-width: 14em; overflow-wrap: anywhere; }
img.spectrogram { width: 300px; height: 120px; display: block; }
audio { width: 300px; display: block; }
.missing { color: #b00020; font-style: italic; }
.positive { color: #0b7a33; font-weight: bold; } .negative { color: #5b6473; }
.warning { color: #9a5b00; }
.links a { margin-right: 1em; }
svg.timeline { width: 100%; max-width: 1000px; height: auto; background: #fff; border: 1px solid #d7dce3; }
section.recording { border-top: 2px solid #d7dce3; }
"""

# Sorting and marking media that did not load (a page moved without its clips says so instead of showing nothing).
SCRIPT = """
(function () {
  function cellValue(row, column) {
    var cell = row.cells[column];
    var value = cell.getAttribute("data-value");
    if (value === null) { value = cell.textContent.trim(); }
    var number = parseFloat(value);
    return isNaN(number) ? value.toLowerCase() : number;
  }
  function sortTable(header) {
    var table = header.closest("table");
    var body = table.tBodies[0];
    var column = Array.prototype.indexOf.call(header.parentNode.cells, header);
    var ascending = header.getAttribute("aria-sort") === "descending";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, column), y = cellValue(b, column);
      if (x === y) { return 0; }
      return (x < y ? -1 : 1) * (ascending ? 1 : -1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(header.parentNode.cells, function (cell) { cell.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  function markMissing(element, what) {
    var note = document.createElement("span");
    note.className = "missing";
    note.textContent = what + " missing: " + element.getAttribute("src");
    element.replaceWith(note);
  }
  document.querySelectorAll("th.sortable").forEach(function (header) {
    header.addEventListener("click", function () { sortTable(header); });
  });
  document.querySelectorAll("img.spectrogram").forEach(function (image) {
    if (image.complete && image.naturalWidth === 0) { markMissing(image, "picture"); }
    else { image.addEventListener("error", function () { markMissing(image, "picture"); }); }
  });
  document.querySelectorAll("audio").forEach(function (audio) {
    if (audio.error) { markMissing(audio, "clip"); }
    else { audio.addEventListener("error", function () { markMissing(audio, "clip"); }); }
  });
})();
"""

# Nothing but this file and the files beside it: no network, no plug-ins, no frames; the one script the page was
# written with runs (its sha256 in `script-src`, which browsers honour from file:// too), nothing else: an injected
# `<script>` or a handler attribute (`<img onerror>`) in some value written into the page never runs.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self' file: data:; media-src 'self' file:; "
    "style-src 'unsafe-inline'; script-src 'sha256-{script_sha256}'"
)


def content_security_policy(script: str) -> str:
    """The page's policy (`CONTENT_SECURITY_POLICY`) allowing exactly the inline `script`, by its hash."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return CONTENT_SECURITY_POLICY.format(script_sha256=digest)


def relative_link(path: str, output_dir: str) -> str:
    """A URL to `path` relative to the report in `output_dir`, percent-encoded."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(output_dir))
    return urllib.parse.quote(relative.replace(os.sep, "/"))


def clip_bounds(detection: dict[str, Any], duration_s: float) -> tuple[float, float]:
    """`(start, end)` in seconds of a detection's clip: the detection and some context, within the recording."""
    start = max(0.0, detection["start"] - CLIP_CONTEXT_SECONDS)
    end = min(duration_s, detection["end"] + CLIP_CONTEXT_SECONDS, start + MAX_CLIP_SECONDS)
    return start, end


def clip_stem(clips_folder: str, detection: dict[str, Any]) -> str:
    """A clip's path minus its suffix, named by its detection's bounds so that a clip is never taken for another's."""
    return os.path.join(clips_folder, f"detection_{detection['start']:.2f}-{detection['end']:.2f}s")


def _atomic(path, write):
    """
    Write `path` through a temporary file, so that an interrupted run never leaves half a clip that looks done.
    `write(temporary_path)` must name its format: the temporary file's suffix is not `path`'s.
    """
    with temporary_file_beside(path) as temporary_path:
        write(temporary_path)
        os.replace(temporary_path, path)


def write_clip_picture(clip_path: str, picture_path: str, detection_start_s: float, detection_end_s: float) -> None:
    """A small spectrogram PNG of a clip, the detection's own span marked by two lines."""
    from matplotlib.figure import Figure

    db, duration_s, top_frequency = spectrogram_db(clip_path)
    floor, ceiling = np.percentile(db, [COLOR_FLOOR_PERCENTILE, COLOR_CEILING_PERCENTILE])
    # Twice the pixels it is shown at (sharp on a high-density screen), its labels 10 pt: readable at 1x too.
    figure = Figure(figsize=(CLIP_PICTURE_PX[0] / 60, CLIP_PICTURE_PX[1] / 60), dpi=2 * 60, layout="constrained")
    axis = figure.add_subplot()
    axis.imshow(
        db,
        origin="lower",
        aspect="auto",
        extent=(0.0, duration_s, 0.0, top_frequency / 1000.0),
        cmap="magma",
        vmin=floor,
        vmax=max(ceiling, floor + 1e-6),
        interpolation="nearest",
    )
    for seconds in (detection_start_s, detection_end_s):
        axis.axvline(seconds, color="#39ff14", linewidth=1.2)
    axis.set_xlabel("s", fontsize=CLIP_PICTURE_FONT_PT)
    axis.set_ylabel("kHz", fontsize=CLIP_PICTURE_FONT_PT)
    axis.tick_params(labelsize=CLIP_PICTURE_FONT_PT)
    _atomic(picture_path, lambda path: figure.savefig(path, format="png"))


def write_clips(
    audio_path: str, document: dict[str, Any], output_stem: str, reuse: bool = True
) -> list[tuple[str, str]]:
    """
    Write the clip (WAV) and picture (PNG) of every detection of one recording into `<output_stem>.orcahello.clips/`
    and remove any other clip there (left by an earlier scoring). With `reuse`, clips already there are kept.
    Returns, per detection, `(clip_path, picture_path)`.
    """
    import soundfile

    folder = os.fspath(output_stem) + CLIPS_SUFFIX
    detections = document["detections"]
    paths = [(clip_stem(folder, detection) + ".wav", clip_stem(folder, detection) + ".png") for detection in detections]
    if os.path.isdir(folder):
        expected = {os.path.basename(path) for pair in paths for path in pair}
        for name in os.listdir(folder):
            if name not in expected or not reuse:
                os.remove(os.path.join(folder, name))
    todo = [index for index, pair in enumerate(paths) if not all(os.path.exists(path) for path in pair)]
    if not todo:
        return paths
    os.makedirs(folder, exist_ok=True)
    with MonoBlocks(audio_path) as recording:
        for index in todo:
            detection = detections[index]
            start_s, end_s = clip_bounds(detection, document["duration_s"])
            first = int(round(start_s * recording.rate))
            count = max(1, min(int(round(end_s * recording.rate)), recording.total_samples) - first)
            audio = np.clip(recording.read(first, count), -1.0, 1.0)
            clip_path, picture_path = paths[index]
            _atomic(
                clip_path,
                lambda path: soundfile.write(path, audio, recording.rate, subtype="PCM_16", format="WAV"),  # noqa: B023
            )
            write_clip_picture(clip_path, picture_path, detection["start"] - start_s, detection["end"] - start_s)
    return paths


def timeline_svg(document: dict[str, Any], anchor: str) -> str:
    """The per-second confidences of one recording as an inline SVG, detections linked to their table rows."""
    duration = max(float(document["duration_s"]), 1e-9)
    width, height, top, bottom = TIMELINE_WIDTH, TIMELINE_HEIGHT, 8, 20
    plot_height = height - top - bottom

    def x(seconds):
        return f"{seconds / duration * width:.2f}"

    def y(confidence):
        return f"{top + (1.0 - confidence) * plot_height:.2f}"

    parts = [
        f'<svg class="timeline" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="confidence per second over {duration:.1f} s" xmlns="http://www.w3.org/2000/svg">'
    ]
    for index, detection in enumerate(document["detections"]):
        left, right = detection["start"], detection["end"]
        parts.append(
            f'<a href="#{anchor}-{index + 1}"><rect x="{x(left)}" y="{top}" '
            f'width="{float(x(right)) - float(x(left)):.2f}" height="{plot_height}" fill="#39d353" '
            f'fill-opacity="0.35"><title>detection {index + 1}: {left:.1f}-{right:.1f} s, max '
            f"{detection['max_confidence']:.3f}</title></rect></a>"
        )
    for gap in document.get("gaps") or []:
        parts.append(
            f'<line x1="{x(gap["start_s"])}" x2="{x(gap["start_s"])}" y1="{top}" y2="{top + plot_height}" '
            f'stroke="#d00000" stroke-dasharray="2,2"><title>gap in the stream ({html.escape(str(gap["reason"]))})'
            f"</title></line>"
        )
    threshold = float(document["parameters"]["local_threshold"])
    parts.append(
        f'<line x1="0" x2="{width}" y1="{y(threshold)}" y2="{y(threshold)}" stroke="#5b6473" '
        f'stroke-dasharray="6,4"><title>threshold {threshold:g}</title></line>'
    )
    # Each row as a step until the next one starts (the upstream port's rows are overlapping windows).
    rows = document["submission"]
    points = []
    for index, row in enumerate(rows):
        start = row["start_time_s"]
        end = rows[index + 1]["start_time_s"] if index + 1 < len(rows) else start + row["duration_s"]
        points.append(f"{x(start)},{y(row['confidence'])} {x(min(end, duration))},{y(row['confidence'])}")
    parts.append(f'<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="{" ".join(points)}"/>')
    label_y = height - 5
    for seconds in np.linspace(0.0, duration, 6):
        anchor_side = "start" if seconds == 0 else "end" if seconds == duration else "middle"
        parts.append(
            f'<text x="{x(seconds)}" y="{label_y}" font-size="11" text-anchor="{anchor_side}" fill="#5b6473">'
            f"{seconds:.0f} s</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def output_links(output_stem: str, output_dir: str, formats: Sequence[str]) -> str:
    """Links to the outputs detect wrote for one recording."""
    kinds = (
        [("json", "JSON")]
        + [
            (kind, label)
            for kind, label in (("csv", "CSV"), ("raven", "Raven table"), ("audacity", "Audacity labels"))
            if kind in formats
        ]
        + [("png", "plot")]
    )
    links = []
    for kind, label in kinds:
        path = writers.output_path(output_stem, kind)
        if os.path.exists(path):
            links.append(f'<a href="{relative_link(path, output_dir)}">{label}</a>')
    return " ".join(links)


def seconds_and_utc(seconds: float, utc: str | None) -> str:
    return f"{seconds:.1f}" + (f"<br><small>{html.escape(utc)}</small>" if utc else "")


@dataclasses.dataclass
class ReviewedRecording:
    """What the page keeps of one recording: its detection rows and its section, already rendered (a run of many
    hour-long recordings must not hold every result until the end)."""

    detection_rows: list  # (max_confidence, <tr> HTML) per detection
    section: str


def review_recording(
    job: inputs.AudioJob,
    document: dict[str, Any],
    resumed: bool,
    number: int,
    output_dir: str,
    formats: Sequence[str],
) -> ReviewedRecording:
    """
    Write the clips and pictures of one recording's detections (see `write_clips`; a resumed recording keeps those it
    has) and render its part of the page. `number` (1, 2, ...) names its anchors. A clip that cannot be written (an
    input gone since it was scored) is reported on the page instead of failing the run.
    """
    escape = html.escape
    anchor = f"recording-{number}"
    clip_paths: list[tuple[str, str]] | list[tuple[None, None]]
    try:
        clip_paths, clip_error = write_clips(job.path, document, job.output_stem, reuse=resumed), None
    except Exception as error:  # the result stands; only its clips are missing
        clip_paths, clip_error = [(None, None)] * len(document["detections"]), " ".join(str(error).split())
    rows = []
    for index, (detection, (clip_path, picture_path)) in enumerate(zip(document["detections"], clip_paths), 1):
        clip_start, _ = clip_bounds(detection, document["duration_s"])
        media = media_cells(clip_path, picture_path, clip_start, output_dir, clip_error)
        # The CSV of labels lists detections as the run scored them: recording `number`, then in time.
        attributes = labelling.row_attributes(
            document["file"], detection["start"], detection["end"], number * 1_000_000 + index
        )
        rows.append(
            (
                detection["max_confidence"],
                f'<tr id="{anchor}-{index}" class="detection" {attributes}>'
                f'<td class="recording"><a href="#{anchor}">{escape(job.relative_path)}</a></td>'
                f'<td class="number" data-value="{detection["start"]}">'
                f"{seconds_and_utc(detection['start'], detection.get('start_utc'))}</td>"
                f'<td class="number" data-value="{detection["end"]}">'
                f"{seconds_and_utc(detection['end'], detection.get('end_utc'))}</td>"
                f'<td class="number" data-value="{detection["max_confidence"]}">{detection["max_confidence"]:.3f}</td>'
                f'<td class="number" data-value="{detection["mean_confidence"]}">{detection["mean_confidence"]:.3f}</td>'
                f"{media}{labelling.label_cell()}</tr>",
            )
        )
    decision = "positive" if document["global_prediction"] else "negative"
    warnings = "".join(f'<li class="warning">{escape(warning)}</li>' for warning in document.get("warnings", []))
    start_utc = document.get("start_time_utc")
    section = (
        f'<section class="recording" id="{anchor}"><h2>{escape(job.relative_path)}</h2>'
        f'<p><span class="{decision}">{decision}</span>, global confidence {document["global_confidence"]:.2f}; '
        f"{len(document['detections'])} detection(s), {writers.positive_seconds(document['detections']):.0f} "
        f"positive s of {document['duration_s']:.1f} s"
        + (f"; starts {escape(start_utc)}" if start_utc else "")
        + f'</p><p class="links">{output_links(job.output_stem, output_dir, formats)}</p>'
        + (f"<ul>{warnings}</ul>" if warnings else "")
        + f"{timeline_svg(document, anchor)}</section>"
    )
    return ReviewedRecording(detection_rows=rows, section=section)


def media_cells(
    clip_path: str | None, picture_path: str | None, clip_start: float, output_dir: str, clip_error: str | None = None
) -> str:
    """
    The clip's cell of a row: its spectrogram with the audio player under it, so that a 1280-px screen shows both
    (a cell saying why when the clip could not be written).
    """
    if clip_path is None or picture_path is None:  # both, or neither
        return f'<td class="missing">no clip: {html.escape(clip_error or "")}</td>'
    return (
        f'<td><img class="spectrogram" src="{relative_link(picture_path, output_dir)}" '
        f'alt="spectrogram of the clip from {clip_start:.1f} s" width="{CLIP_PICTURE_PX[0]}" '
        f'height="{CLIP_PICTURE_PX[1]}">'
        f'<audio controls preload="metadata" src="{relative_link(clip_path, output_dir)}"></audio>'
        f"<small>clip from {clip_start:.1f} s</small></td>"
    )


def standin_banner(model_info: dict[str, Any]) -> str:
    """
    A review page's line saying that the model's weights are the synthetic stand-in (`model_info` as
    `provenance.describe_model_config` gives it), above everything else: its scores mean nothing on real recordings.
    Empty for any other model.
    """
    if not model_info.get(SYNTHETIC_WEIGHTS_KEY):
        return ""
    return (
        f'<p class="warning standin"><strong>{html.escape(writers.STANDIN_VALUE)} weights</strong>: '
        f"{html.escape(writers.STANDIN_WARNING)}</p>"
    )


def page(title: str, content: str, labels_key: str | None = None) -> str:
    """
    A whole review page around `content` (HTML): the style, the Content-Security-Policy, the sorting script and,
    with `labels_key` (the run's hash), the labelling of its rows (`orcahello.labelling`).
    """
    body = f" {labelling.body_attributes(labels_key)}" if labels_key else ""
    script = SCRIPT + (labelling.labelling_script() if labels_key else "")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy(script)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}{labelling.STYLE}</style></head><body{body}>"
        f"{content}<script>{script}</script></body></html>\n"
    )


def render_report(
    output_dir: str,
    recordings: Sequence[ReviewedRecording],
    failures: Sequence[tuple[str, str]],
    run_document: dict[str, Any],
) -> str:
    """The page's HTML from `ReviewedRecording`s and `(path, reason)` for the inputs that gave no result."""
    escape = html.escape
    detection_rows = [row for recording in recordings for row in recording.detection_rows]
    failure_items = "".join(f"<li><code>{escape(path)}</code>: {escape(reason)}</li>" for path, reason in failures)
    run_links = " ".join(
        f'<a href="{urllib.parse.quote(name)}">{label}</a>'
        for name, label in (
            (writers.SUMMARY_CSV, "summary.csv"),
            (writers.COMBINED_RAVEN_TABLE, "combined Raven table"),
            (writers.RUN_PARAMETERS_JSON, "run parameters"),
        )
        if os.path.exists(os.path.join(output_dir, name))
    )
    parameters = run_document.get("parameters", {})
    model_info = run_document.get("model", {})
    # A folder's name and its weights' hash say which model it was; the full path is in the run file (and a tooltip).
    model_path = str(model_info.get("name_or_path", ""))
    fingerprint = model_info.get("weights_sha256") or model_info.get("revision") or ""
    model_name = os.path.basename(model_path.rstrip("/")) or model_path
    model = f'<code title="{escape(model_path)}">{escape(model_name)}</code>'
    if fingerprint:
        model += f" ({escape(fingerprint[:12])})"
    adapted = model_info.get("adapted_head")
    if adapted:  # `orcahello adapt`: say so, with the held-out one-second AUPRC it reported
        figures = adapted.get("held_out") or {}
        auprc = [(figures.get(name) or {}).get("seconds_auprc") for name in ("base", "adapted")]
        model += ", adapted to labelled recordings" + (
            f" (held-out AUPRC {auprc[0]:.3f} -> {auprc[1]:.3f})" if None not in auprc else ""
        )
    summary = (
        f"{len(recordings)} recording(s), {len(detection_rows)} detection(s)"
        + (f", {len(failures)} failed" if failures else "")
        + f"; model {model}; threshold {escape(str(parameters.get('local_threshold', '')))}, "
        f"aggregation {escape(str(parameters.get('aggregation', '')))}; "
        f"finished {escape(str(run_document.get('finished_at', '')))}"
    )
    table = (
        '<table id="detections"><thead><tr>'
        '<th class="sortable">Recording</th><th class="sortable">Start (s)</th><th class="sortable">End (s)</th>'
        '<th class="sortable" aria-sort="descending">Max confidence</th><th class="sortable">Mean confidence</th>'
        "<th>Clip</th><th>Label</th></tr></thead><tbody>"
        # Highest confidence first when the page opens, as the header's arrow says (a stable sort: ties keep the
        # recordings' order).
        + "".join(row for _, row in sorted(detection_rows, key=lambda item: -item[0]))
        + "</tbody></table>"
        if detection_rows
        else "<p>No detections in this run.</p>"
    )
    content = (
        f'<h1>OrcaHello detections</h1>{standin_banner(model_info)}<p>{summary}</p><p class="links">{run_links}</p>'
        + (f"<h2>Failed</h2><ul>{failure_items}</ul>" if failures else "")
        + "<h2>Detections</h2>"
        + (labelling.labelling_bar() if detection_rows else "")
        + f"{table}<h2>Recordings</h2>{''.join(recording.section for recording in recordings)}"
    )
    return page("OrcaHello detections", content, labels_key=run_document.get("run_hash") if detection_rows else None)


def write_report(
    output_dir: str,
    recordings: Sequence[ReviewedRecording],
    failures: Sequence[tuple[str, str]],
    run_document: dict[str, Any],
) -> str:
    """Write the run's `report.html` into `output_dir` (see `render_report`); returns its path."""
    path = os.path.join(output_dir, REPORT_FILE)
    writers.write_atomically(path, render_report(output_dir, recordings, failures, run_document))
    return path
