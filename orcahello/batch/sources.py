# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The recordings of an `orcahello batch` job: finding them (paths, folders, globs, URLs, manifests), naming their
outputs, their start in UTC from their names, and opening and probing them (length, format, HLS time line).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hls_timeline_orcahello import plain_timeline, start_utc_from_file_name
from http_orcahello import HTTPFetchError, fetch, origin
from vocabulary_orcahello import PLAYLIST_SUFFIX, is_url

from .. import inputs, runs
from .settings import BatchError

if TYPE_CHECKING:
    from audio_orcahello import Recording

# A sound file given by URL is downloaded into memory whole (`http_orcahello.fetch`: retries with backoff, a byte cap,
# an overall deadline). 4 GiB is a day of 24-kHz 16-bit mono; longer recordings are better downloaded first.
URL_TIMEOUT_SECONDS = 120
URL_MAX_BYTES = 4 << 30
URL_DEADLINE_SECONDS = 3600.0
# A UTC timestamp in a file name, ISO 8601 basic format (SanctSound, AudioMoth, many recorders): 20200423T164427Z.
# Orcasound's HLS archive keeps each stream in a folder named by its start in Unix seconds: <node>/hls/<t>/live.m3u8.
UNIX_TIME_FOLDER_PATTERN = re.compile(r"^\d{10}$")


def read_manifest(path: str) -> list[str]:
    """
    The sources a manifest lists: one path or URL per line, blank lines and `#` comments ignored. Each line is one
    recording, taken as written (no folder or glob expansion); relative paths are relative to the manifest's folder.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BatchError(f"cannot read the manifest {path}: {error}") from None
    folder = os.path.dirname(os.path.abspath(path))
    sources = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        sources.append(entry if is_url(entry) or os.path.isabs(entry) else os.path.join(folder, entry))
    return sources


def find_sources(
    paths: Sequence[str] = (), manifests: Sequence[str] = (), recursive: bool = False
) -> tuple[list[str], list[tuple[str, str]]]:
    """
    The recordings to score, in order, each once: the PATHs expanded as `orcahello detect` expands them (with HLS
    playlists, `.m3u8`, found in folders too), URLs as given, then every manifest's lines. Returns `(sources,
    problems)`, `problems` being `(input, reason)` for each PATH that gave nothing.
    """
    sources, problems = inputs.find_audio_files(list(paths), recursive=recursive)
    seen = {inputs.recording_key(source) for source in sources}
    for manifest in manifests:
        for source in read_manifest(manifest):
            if inputs.recording_key(source) not in seen:
                seen.add(inputs.recording_key(source))
                sources.append(source)
    return sources, problems


@dataclasses.dataclass
class Source:
    """One recording of the job and where its outputs go (paths relative to the output folder, "/"-separated)."""

    index: int
    source: str  # as given: a path or a URL; the `recording` column of both tables
    relative_path: str  # below the local inputs' common folder, or host/path for a URL
    output_stem: str  # JSON: json/<stem>.orcahello.json; window partitions: windows/<stem>/part-*.parquet


def plan_outputs(sources: Sequence[str]) -> list[Source]:
    """
    Name every recording's outputs: local files mirror their folder tree below the deepest folder holding them all
    (as `orcahello detect` does), URLs go under their host name.
    """
    local = [source for source in sources if not is_url(source)]
    names = {}
    if local:
        for job in inputs.plan_jobs(local, ""):
            names[job.path] = (job.relative_path, job.output_stem.replace(os.sep, "/"))
    planned, stems = [], set()
    for index, source in enumerate(sources):
        if is_url(source):
            # Named exactly as `orcahello detect` names them: no "..", no separators smuggled in as %2F.
            relative_path = inputs.url_relative_path(source).replace(os.sep, "/")
            stem = os.path.splitext(relative_path)[0]
        else:
            relative_path, stem = names[source]
        if stem in stems:  # a URL and a local file (or two URLs differing in their query) would share their outputs
            stem = f"{stem}~{index}"
        stems.add(stem)
        planned.append(Source(index=index, source=source, relative_path=relative_path, output_stem=stem))
    return planned


def start_utc_from_name(source: str) -> datetime.datetime | None:
    """
    The recording's start in UTC when its name says so unambiguously, else None: a `YYYYMMDDTHHMMSSZ` timestamp in
    the file name or AudioMoth's `YYYYMMDD_HHMMSS` name (`hls_timeline_orcahello.start_utc_from_file_name`), or an HLS
    playlist in a folder named by a 10-digit Unix time (Orcasound's archive layout).
    """
    path = urllib.parse.urlsplit(source).path if is_url(source) else source
    name = os.path.basename(path)
    from_name = start_utc_from_file_name(path)
    if from_name is not None:
        return datetime.datetime.fromtimestamp(from_name, tz=datetime.timezone.utc)
    folder = os.path.basename(os.path.dirname(path))
    if name.lower().endswith(PLAYLIST_SUFFIX) and UNIX_TIME_FOLDER_PATTERN.match(folder):
        return datetime.datetime.fromtimestamp(int(folder), tz=datetime.timezone.utc)
    return None


def open_source(source: str) -> Recording:
    """
    Open one recording with the pipeline's `open_recording`, so that every format it reads (WAV, FLAC, OGG, MP3,
    and HLS where it supports it) is read the same way here. An http(s) URL of a sound file is downloaded into
    memory first (through `http_orcahello.fetch`, as HLS playlists and segments are); a playlist URL (`.m3u8`) is
    handed to `open_recording` as it is.
    """
    from audio_orcahello import AudioInputError, open_recording

    if is_url(source) and not urllib.parse.urlsplit(source).path.lower().endswith(PLAYLIST_SUFFIX):
        try:
            # Redirects stay on the URL's own scheme, host and port: a file server must not send batch to another
            # service (an internal one on another port) whose answer would be read as audio.
            data = fetch(
                source,
                timeout=URL_TIMEOUT_SECONDS,
                max_bytes=URL_MAX_BYTES,
                deadline_seconds=URL_DEADLINE_SECONDS,
                allowed_origin=origin(source),
            )
        except HTTPFetchError as error:  # its message starts with the URL: said once
            message = str(error).removeprefix(f"{source}: ")
            raise AudioInputError(f"{source}: cannot download ({message})") from None
        return open_recording({"bytes": data, "path": source})
    return open_recording(source)


def probe_source(
    row: dict[str, Any],
    window_seconds: float,
    hop_seconds: float,
    whole_recording_frontend: bool = False,
    strict_segments: bool = True,
    model_sampling_rate: int = 20000,
) -> dict[str, Any]:
    """
    A recording's length and format, or the one-line reason it cannot be scored: `{"source_index", "source"}` in,
    a row out (a Ray Data `map` for URLs; called in driver threads for local files, which only need their headers
    read: that is faster than starting worker processes for it). For HLS, `timeline` is the stream's time line
    (start, UTC anchors, gaps, source, warnings: what `orcahello detect`'s JSON reports) as JSON text, else "";
    `start_utc` is the start the time line knows (ISO 8601), else "".
    """
    from audio_orcahello import scoring_windows

    probed = {"source_index": row["source_index"], "error": "", "start_utc": "", "timeline": ""}
    probed.update(sampling_rate=0, num_samples=0, num_channels=0, num_windows=0)
    try:
        recording = open_source(row["source"])
        try:
            bounds = scoring_windows(
                recording, window_seconds, hop_seconds, whole_recording_frontend, strict_segments, model_sampling_rate
            )
            probed.update(
                sampling_rate=recording.sampling_rate,
                num_samples=recording.num_samples,
                num_channels=recording.num_channels,
                num_windows=len(bounds),
            )
            timeline = recording.timeline  # None but for HLS
            if timeline is not None:
                # JSON text: a Ray Data row holds it as one string column, whatever its nesting.
                probed["timeline"] = json.dumps(plain_timeline(timeline), sort_keys=True)
                if timeline["start_time_utc"] is not None:
                    start = datetime.datetime.fromtimestamp(timeline["start_time_utc"], tz=datetime.timezone.utc)
                    probed["start_utc"] = start.isoformat()
        finally:
            recording.close()
    except Exception as error:  # any reason a recording cannot be read is reported for it alone
        probed["error"] = runs.failure_reason(error, row["source"])
    return probed
