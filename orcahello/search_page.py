# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello search --report DIR`: the hits as a review page, built as `detect --report`'s is (its clips, pictures,
sorting and labelling), so that a moderator labels every window like one false positive in one sitting and
downloads the labels for `orcahello adapt`.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import labelling, report, writers

if TYPE_CHECKING:
    from .search import SearchOptions, WindowIndex


def hits_page_key(hits: Sequence[dict[str, Any]], options: SearchOptions) -> str:
    """The page's labels key: a hash of the query and its hits (two searches keep their labels apart)."""
    identity = {
        "query": None if options.query is None else [options.query.file, options.query.seconds],
        "clip": options.query_clip,
        "hits": [[hit["file"], hit["start"], hit["end"]] for hit in hits],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def clip_folder_stem(output_dir: str, file: str, number: int) -> str:
    """Where one recording's hit clips go: `<DIR>/clips/<number>_<safe name>` (names may repeat across folders)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.splitext(os.path.basename(file))[0]) or "recording"
    return os.path.join(output_dir, "clips", f"{number:03d}_{name}")


def write_hits_page(output_dir: str, hits: Sequence[dict[str, Any]], index: WindowIndex, options: SearchOptions) -> str:
    """Write the hits' clips and pictures and `<output_dir>/report.html`; returns the page's path."""
    from .plot import require_matplotlib

    require_matplotlib("--report")
    escape = html.escape
    os.makedirs(output_dir, exist_ok=True)
    by_file: dict[str, list[dict[str, Any]]] = {}
    for hit in hits:
        by_file.setdefault(hit["file"], []).append(hit)
    media = {}
    for number, (file, file_hits) in enumerate(by_file.items(), start=1):
        detections = [{"start": hit["start"], "end": hit["end"]} for hit in file_hits]
        document = {
            "detections": detections,
            "duration_s": index.durations.get(file, max(d["end"] for d in detections)),
        }
        paths: list[tuple[str, str]] | list[tuple[None, None]]
        try:
            paths, error = report.write_clips(file, document, clip_folder_stem(output_dir, file, number)), None
        except Exception as failure:  # a recording moved since it was embedded: its rows say so
            paths, error = [(None, None)] * len(file_hits), " ".join(str(failure).split())
        for hit, (clip_path, picture_path), detection in zip(file_hits, paths, detections):
            clip_start, _ = report.clip_bounds(detection, document["duration_s"])
            media[hit["rank"]] = report.media_cells(clip_path, picture_path, clip_start, output_dir, error)
    rows = "".join(
        f'<tr class="detection" {labelling.row_attributes(hit["file"], hit["start"], hit["end"], hit["rank"])}>'
        f'<td class="number">{hit["rank"]}</td><td>{escape(str(hit["file"]))}</td>'
        f'<td class="number" data-value="{hit["start"]}">{report.seconds_and_utc(hit["start"], hit["start_utc"])}</td>'
        f'<td class="number" data-value="{hit["end"]}">{report.seconds_and_utc(hit["end"], hit["end_utc"])}</td>'
        f'<td class="number" data-value="{hit["similarity"]}">{hit["similarity"]:.4f}</td>'
        f'<td class="number" data-value="{hit["score"]}">{hit["score"]:.3f}</td>'
        f"{media[hit['rank']]}{labelling.label_cell()}</tr>"
        for hit in hits
    )
    query = (
        f"window {escape(options.query.file)} at {options.query.seconds:g} s"
        if options.query is not None
        else f"clip {escape(str(options.query_clip))}"
    )
    model = escape(str(index.model.get("name_or_path", "")))
    content = (
        f"<h1>OrcaHello search</h1>{report.standin_banner(index.model)}<p>{len(hits)} window(s) most similar (cosine) to the {query}, of {len(index)} "
        f"windows ({escape(str(index.layer))} embeddings of <code>{model}</code>)</p><h2>Hits</h2>"
        + (labelling.labelling_bar() if hits else "")
        + '<table id="detections"><thead><tr><th class="sortable" aria-sort="ascending">Rank</th>'
        '<th class="sortable">Recording</th><th class="sortable">Start (s)</th><th class="sortable">End (s)</th>'
        '<th class="sortable">Similarity</th><th class="sortable">P(call)</th><th>Clip</th>'
        f"<th>Label</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    path = os.path.join(output_dir, report.REPORT_FILE)
    page = report.page("OrcaHello search", content, labels_key=hits_page_key(hits, options) if hits else None)
    writers.write_atomically(path, page)
    return path
