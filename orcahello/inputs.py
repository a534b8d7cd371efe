# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""What the commands score: the recordings named on the command line (files, folders, HLS playlists and segment
folders, URLs) and where each one's outputs go."""

import glob
import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from vocabulary_orcahello import (
    AUDIO_SUFFIXES,
    PLAYLIST_SUFFIX,
    SEGMENT_SUFFIX,
    is_audio_file_name,
    is_url,
)


def recording_key(path: str) -> str:
    """What makes two names one recording: a URL as written, a path once absolute (and case-folded where the file
    system ignores case)."""
    return path if is_url(path) else os.path.normcase(os.path.abspath(path))


def is_audio_file(name: str) -> bool:
    """A sound file or an HLS playlist, by its name (hidden files are not audio)."""
    return is_audio_file_name(name, AUDIO_SUFFIXES + (PLAYLIST_SUFFIX,))


def recordings_in_directory(directory: str, names: list[str]) -> list[str]:
    """
    The recordings of one folder, given its file names: its sound files and playlists; and the folder itself when it
    holds `.ts` segments but no playlist (an HLS segment folder is one recording). With a playlist there, the
    segments are the playlist's and are not scored on their own.
    """
    files = sorted(name for name in names if is_audio_file(name) and os.path.isfile(os.path.join(directory, name)))
    found = [os.path.join(directory, name) for name in files]
    has_playlist = any(name.lower().endswith(PLAYLIST_SUFFIX) for name in files)
    has_segments = any(name.lower().endswith(SEGMENT_SUFFIX) and not name.startswith(".") for name in names)
    if has_segments and not has_playlist:
        found.insert(0, os.path.normpath(directory))
    return found


def audio_files_in_folder(folder: str, recursive: bool) -> list[str]:
    """The recordings of `folder` (`recordings_in_directory`), and with `recursive` those of its subfolders, hidden ones
    skipped."""
    if not recursive:
        return recordings_in_directory(folder, os.listdir(folder))
    found = []
    for directory, subdirectories, names in os.walk(folder):
        subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
        found.extend(recordings_in_directory(directory, names))
    return found


def find_audio_files(paths: Sequence[str], recursive: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """
    Expand the command line's PATHs into recordings. A file is taken as named (whatever its extension), an http(s)
    URL too (the pipeline fetches `.m3u8` playlists); a folder gives its .wav/.flac/.ogg/.mp3 files and .m3u8
    playlists (any case), itself when it holds .ts segments without a playlist, and the same of its subfolders with
    `recursive`; a glob pattern (`"data/*.wav"`, `"data/**/*.flac"` with `recursive`) gives the recordings of the
    files and folders it matches.

    Returns `(files, problems)`: the files in order, each once, and `(path, reason)` for each PATH that gave none.
    """
    files, problems, seen = [], [], set()

    def add(path):
        if recording_key(path) not in seen:
            seen.add(recording_key(path))
            files.append(path)

    for given in paths:
        if is_url(given) and not urllib.parse.urlsplit(given).hostname:
            problems.append((given, "a URL without a host (http://host/path)"))
        elif is_url(given):
            add(given)
        elif os.path.isfile(given):
            add(given)
        elif os.path.isdir(given):
            found = audio_files_in_folder(given, recursive)
            if not found:
                hint = "" if recursive else " (add --recursive to search its subfolders)"
                kinds = ", ".join(AUDIO_SUFFIXES + (PLAYLIST_SUFFIX,))
                problems.append((given, f"no audio files ({kinds}) or .ts segments in this folder{hint}"))
            for path in found:
                add(path)
        elif any(character in given for character in "*?["):
            found = []
            for match in sorted(glob.glob(given, recursive=recursive)):
                if os.path.isdir(match):
                    found.extend(audio_files_in_folder(match, recursive))
                elif is_audio_file(os.path.basename(match)):
                    found.append(match)
                elif match.lower().endswith(SEGMENT_SUFFIX):  # "hls/*/live*.ts": their folder is the recording
                    found.append(os.path.dirname(match) or ".")
            if not found:
                problems.append((given, "no audio files match this pattern"))
            for path in found:
                add(path)
        else:
            problems.append((given, "no such file or directory"))
    return files, problems


@dataclass
class AudioJob:
    """One recording to score and where its outputs go."""

    path: str  # as found on the command line or in a folder: what messages and summary.csv show
    relative_path: str  # relative to the inputs' common folder, "/"-separated: the combined table's Begin File
    output_stem: str  # <output dir>/<relative folder>/<stem>: every output's path minus its suffix


def url_relative_path(url: str) -> str:
    """Where a URL's outputs go under the output folder: `<host[_port]>/<its path>`, each part a safe file name."""
    parts = urllib.parse.urlsplit(url)
    pieces = [parts.netloc] + [urllib.parse.unquote(piece) for piece in parts.path.split("/")]
    pieces = [re.sub(r"[^A-Za-z0-9._-]", "_", piece) for piece in pieces if piece not in ("", ".", "..")]
    return os.path.join(*pieces)


def plan_jobs(paths: list[str], output_dir: str) -> list[AudioJob]:
    """
    Mirror the inputs' folder tree under `output_dir`, relative to the deepest folder holding all of them; a URL's
    outputs go under `<host>/<its path>`. Recordings of one folder that share a stem (`a.wav`, `a.flac`) keep their
    extension in their outputs' names; a segment folder's outputs are named after the folder.
    """
    local = [path for path in paths if not is_url(path)]
    absolute = {path: os.path.abspath(path) for path in local}
    relative = {path: url_relative_path(path) for path in paths if is_url(path)}
    if local:
        try:
            root = os.path.commonpath([os.path.dirname(path) for path in absolute.values()])
            relative.update({path: os.path.relpath(absolute[path], root) for path in local})
        except ValueError:  # Windows paths on different drives have no common folder: keep each one's full path
            relative.update({path: os.path.splitdrive(absolute[path])[1].lstrip("\\/") for path in local})
    relative_paths = [relative[path] for path in paths]
    stems = [
        path if not is_url(given) and os.path.isdir(given) else os.path.splitext(path)[0]
        for given, path in zip(paths, relative_paths)
    ]
    jobs = []
    for path, relative_path, stem in zip(paths, relative_paths, stems):
        if stems.count(stem) > 1:
            stem = relative_path
        jobs.append(
            AudioJob(
                path=path,
                relative_path=relative_path.replace(os.sep, "/"),
                output_stem=os.path.join(output_dir, stem),
            )
        )
    return jobs
