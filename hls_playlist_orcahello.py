# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
HLS playlists and segment lists: which segments an HLS input is, in which order, and where they are.

An Orcasound node (orcanode's `stream.sh`) runs ffmpeg's segment muxer: 10-second AAC segments at 48 kHz in MPEG-TS,
`<bucket>/<node>/hls/<unix epoch at stream start>/live000.ts, live001.ts, ...` and a `live.m3u8` playlist listing
them. An HLS input is

- a playlist (`.m3u8`, a local path or an http(s) URL; segments relative to it, local or remote),
- a folder of `.ts` segments (sorted by the number in their names: `live999.ts` comes before `live1000.ts`),
- a single `.ts` segment.

This module lists its segments with what the playlist says about each (duration, program date-time,
discontinuities, segments marked missing) and fetches remote ones (through `http_orcahello`'s retries and bounds,
refusing hosts other than the playlist's unless allowed). Decoding them is `hls_stream_orcahello`'s, their time line
`hls_timeline_orcahello`'s.
"""

import os
import re
import threading
import urllib.parse
from datetime import datetime, timedelta, timezone
from typing import Any

try:
    from .http_orcahello import HTTP_DEADLINE_SECONDS, HTTP_RETRIES, HTTPFetchError, describe_origin, origin
    from .http_orcahello import fetch as http_fetch
    from .vocabulary_orcahello import PLAYLIST_SUFFIX, SEGMENT_SUFFIX, is_url
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from http_orcahello import HTTP_DEADLINE_SECONDS, HTTP_RETRIES, HTTPFetchError, describe_origin, origin
    from http_orcahello import fetch as http_fetch
    from vocabulary_orcahello import PLAYLIST_SUFFIX, SEGMENT_SUFFIX, is_url


# A day of Orcasound's 10-s segments. The packets of every segment are kept while a recording is open (~40 MB an
# hour), so a playlist listing a million segments is refused before anything is fetched.
MAX_PLAYLIST_SEGMENTS = 8640
# The segments' bytes kept at once: twice a day of Orcasound's audio. 8,640 segments of up to 64 MB each (the fetch's
# cap) took over 5 GB before this bound.
MAX_STREAM_BYTES = 2 * 1024**3
# Orcasound names each stream's folder by the Unix time it started: 10 digits covers 2001 to 2286.
EPOCH_FOLDER_NAME = re.compile(r"\d{10}")
# The number in a segment's name that orders it: the last run of digits (`live007.ts`, `segment_12.ts`).
SEGMENT_NUMBER = re.compile(r"(\d+)(?!.*\d)")
PROGRAM_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)


class HLSInputError(ValueError):
    """An HLS input that cannot be scored; the message is one line and starts with the input's name."""


def is_playlist(source: str) -> bool:
    """A local path or an http(s) URL (query string aside) naming an `.m3u8` playlist."""
    path = urllib.parse.urlsplit(source).path if is_url(source) else source
    return path.lower().endswith(PLAYLIST_SUFFIX)


def segment_files_in_folder(folder: str | os.PathLike) -> list[str]:
    """The `.ts` files of `folder` (hidden files skipped), sorted by the number in their names, not lexically."""
    names = [
        name
        for name in os.listdir(folder)
        if name.lower().endswith(SEGMENT_SUFFIX)
        and not name.startswith(".")
        and os.path.isfile(os.path.join(folder, name))
    ]
    return sorted(names, key=segment_sort_key)


def segment_number(name: str) -> int | None:
    """The last number in a segment's file name (`live1000.ts` -> 1000), or None."""
    match = SEGMENT_NUMBER.search(os.path.splitext(os.path.basename(name))[0])
    return int(match.group(1)) if match else None


def segment_sort_key(name: str) -> tuple[bool, int, str]:
    """Orders segment file names by their number (`live999.ts` before `live1000.ts`), names without one last."""
    number = segment_number(name)
    return (number is None, number if number is not None else 0, name)


def is_hls_input(source: object) -> bool:
    """
    Whether the pipeline reads `source` (a path or URL string) as HLS: an `.m3u8` playlist (local or http(s)), an
    existing `.ts` file, or a folder holding `.ts` files.
    """
    if not isinstance(source, (str, os.PathLike)):
        return False
    source = os.fspath(source)
    if is_url(source) or source.lower().endswith(PLAYLIST_SUFFIX):
        return is_playlist(source)
    if source.lower().endswith(SEGMENT_SUFFIX):
        return os.path.isfile(source)
    return os.path.isdir(source) and bool(segment_files_in_folder(source))


def parse_program_date_time(text: str) -> float:
    """Unix time of an `#EXT-X-PROGRAM-DATE-TIME` value (ISO 8601; a value without a zone is taken as UTC)."""
    match = PROGRAM_DATE_TIME.match(text.strip())
    if not match:
        raise ValueError(f"not an ISO 8601 date-time: {text.strip()!r}")
    year, month, day, hour, minute, second = (int(group) for group in match.groups()[:6])
    fraction = float(match.group(7)) if match.group(7) else 0.0
    zone = match.group(8)
    offset = timedelta(0)
    if zone and zone not in ("Z", "z"):
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        if zone[0] == "-":
            offset = -offset
    moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    return moment.timestamp() + fraction


class Segment:
    """One media segment: where it is, what the playlist says about it, and what decoding it found."""

    def __init__(
        self,
        location: str,
        name: str,
        number: int | None = None,
        duration: float | None = None,
        program_date_time: float | None = None,
        discontinuity: bool = False,
        marked_gap: bool = False,
    ) -> None:
        self.location = location  # a local path or an http(s) URL
        self.name = name  # as the playlist lists it, or the file name: what messages show
        self.number = number  # media sequence number (playlists) or the number in the file name (folders)
        self.duration = duration  # EXTINF, seconds
        self.program_date_time = program_date_time  # Unix time, from EXT-X-PROGRAM-DATE-TIME
        self.discontinuity = discontinuity  # EXT-X-DISCONTINUITY before this segment
        self.marked_gap = marked_gap  # EXT-X-GAP: the playlist says this segment is missing
        # Set by `hls_stream_orcahello.HLSStream` as it decodes the segment:
        self.first_sample = 0  # where its audio starts in the decoded stream
        self.num_samples = 0

    def numbers_missing_after(self, previous: "Segment") -> tuple[int, str | None]:
        """
        `(count, numbers)`: how many segment numbers are missing between `previous` and this segment (a folder's
        files, numbered by `segment_number`) and which (`"7"` or `"7-9"`); `(0, None)` when none is, or when
        either has no number.
        """
        if previous.number is None or self.number is None:
            return 0, None
        skipped = self.number - previous.number - 1
        if skipped <= 0:
            return 0, None
        numbers = str(previous.number + 1) if skipped == 1 else f"{previous.number + 1}-{self.number - 1}"
        return skipped, numbers


def parse_playlist(
    text: str, playlist_location: str, name: str, max_segments: int = MAX_PLAYLIST_SEGMENTS
) -> tuple[list[Segment], dict]:
    """
    Parse a media playlist into `(segments, info)`. Refused with a clear `HLSInputError`: not a playlist, a master
    playlist (it names variants, not segments), encrypted segments, fragmented-MP4 or byte-range segments, a
    playlist without segments, and one listing more than `max_segments`.
    """
    lines = [line.strip() for line in text.lstrip("\ufeff").splitlines()]
    lines = [line for line in lines if line]
    if not lines or not lines[0].startswith("#EXTM3U"):
        raise HLSInputError(f"{name}: not an HLS playlist (it does not start with #EXTM3U)")
    info: dict[str, Any] = {"media_sequence": 0, "target_duration": None, "ended": False}
    segments: list[Segment] = []
    variants: list[str | None] = []
    pending: dict[str, Any] = {"duration": None, "program_date_time": None, "discontinuity": False, "marked_gap": False}
    for line in lines[1:]:
        if not line.startswith("#"):
            if variants and variants[-1] is None:
                variants[-1] = line
                continue
            if len(segments) >= max_segments:
                raise HLSInputError(
                    f"{name}: the playlist lists more than {max_segments} segments: refused (score it in parts)"
                )
            segments.append(
                Segment(
                    location=resolve_uri(playlist_location, line),
                    name=line,
                    number=info["media_sequence"] + len(segments),
                    **pending,
                )
            )
            pending = {"duration": None, "program_date_time": None, "discontinuity": False, "marked_gap": False}
            continue
        tag, _, value = line.partition(":")
        try:
            if tag == "#EXTINF":
                pending["duration"] = float(value.split(",")[0])
            elif tag == "#EXT-X-MEDIA-SEQUENCE":
                info["media_sequence"] = int(value)
            elif tag == "#EXT-X-TARGETDURATION":
                info["target_duration"] = float(value)
            elif tag == "#EXT-X-PROGRAM-DATE-TIME":
                pending["program_date_time"] = parse_program_date_time(value)
            elif tag == "#EXT-X-DISCONTINUITY":
                pending["discontinuity"] = True
            elif tag == "#EXT-X-GAP":
                pending["marked_gap"] = True
            elif tag == "#EXT-X-ENDLIST":
                info["ended"] = True
            elif tag == "#EXT-X-STREAM-INF":
                variants.append(None)  # its URI is the next line
            elif tag == "#EXT-X-KEY" and "METHOD=NONE" not in value.upper():
                raise HLSInputError(f"{name}: encrypted segments ({line}) are not supported")
            elif tag == "#EXT-X-MAP":
                raise HLSInputError(
                    f"{name}: fragmented-MP4 segments (#EXT-X-MAP) are not supported; Orcasound streams MPEG-TS"
                )
            elif tag == "#EXT-X-BYTERANGE":
                raise HLSInputError(f"{name}: byte-range segments (#EXT-X-BYTERANGE) are not supported")
        except ValueError as error:
            if isinstance(error, HLSInputError):
                raise
            raise HLSInputError(f"{name}: bad {tag} line {line!r} ({error})") from None
    if variants:
        listed = ", ".join(variant for variant in variants if variant)
        raise HLSInputError(f"{name}: a master playlist (it lists streams, not segments): pass one of {listed}")
    if not segments:
        raise HLSInputError(f"{name}: the playlist lists no segments")
    return segments, info


def resolve_uri(playlist_location: str, uri: str) -> str:
    """A segment URI relative to its playlist (a URL or a local path), as players resolve it."""
    if is_url(uri):
        return uri
    if is_url(playlist_location):
        return urllib.parse.urljoin(playlist_location, uri)
    return os.path.join(os.path.dirname(playlist_location), urllib.parse.unquote(uri))


def fetch(
    url: str,
    name: str,
    timeout: float,
    allowed_origin: tuple | None = None,
    retries: int = HTTP_RETRIES,
    stop_event: threading.Event | None = None,
    deadline_seconds: float = HTTP_DEADLINE_SECONDS,
) -> bytes:
    """
    The bytes at `url`, through `http_orcahello.fetch` (timeouts, `retries` with backoff, a byte cap, an overall
    deadline, checked redirects); any failure is a one-line `HLSInputError` starting with `name` and naming the URL.
    `allowed_origin`: the only host `url` and its redirects may be on (None: any). `stop_event`: once set, no
    further attempt. `deadline_seconds`: the most one attempt may take, its body included (a trickling server).
    """
    try:
        return http_fetch(
            url,
            timeout=timeout,
            allowed_origin=allowed_origin,
            retries=retries,
            stop_event=stop_event,
            deadline_seconds=deadline_seconds,
        )
    except HTTPFetchError as error:  # its message starts with the URL: said once when the URL is the name
        message = str(error)
        raise HLSInputError(message if message.startswith(f"{name}: ") else f"{name}: {message}") from None


def epoch_from_folder(location: str) -> int | None:
    """The Unix epoch in the name of the folder holding `location` (a playlist or segment), or None."""
    if is_url(location):
        parts = [urllib.parse.unquote(part) for part in urllib.parse.urlsplit(location).path.split("/")]
        folder = parts[-2] if len(parts) >= 2 else ""
    else:
        folder = os.path.basename(os.path.dirname(os.path.abspath(location)))
    return int(folder) if EPOCH_FOLDER_NAME.fullmatch(folder) else None


def check_segment_hosts(segments: list[Segment], source: str, allow_other_hosts: bool) -> None:
    """
    Refuse a playlist whose segments are on another host than the playlist (a local playlist: any http(s) segment)
    unless `allow_other_hosts`: a playlist from anywhere must not make us fetch from anywhere else.
    """
    if allow_other_hosts:
        return
    home = origin(source) if is_url(source) else None
    strangers = [segment for segment in segments if is_url(segment.location) and origin(segment.location) != home]
    if strangers:
        where = f"the playlist's host {describe_origin(home)}" if home else "this local playlist's folder"
        raise HLSInputError(
            f"{source}: {len(strangers)} segment(s) are not on {where} (first: {strangers[0].location}): refused; "
            f"allow other hosts (--allow-other-hosts, allow_other_hosts=True) to fetch them"
        )


def list_segments(
    source: str, timeout: float, allow_other_hosts: bool = False, max_segments: int = MAX_PLAYLIST_SEGMENTS
) -> tuple[str, list[Segment], dict, int | None]:
    """`(kind, segments, info, epoch)` for a playlist, a folder of `.ts` files, or one `.ts` file."""
    if is_playlist(source):
        if is_url(source):
            data = fetch(source, source, timeout, allowed_origin=None if allow_other_hosts else origin(source))
        else:
            if not os.path.isfile(source):
                raise HLSInputError(f"{source}: no such playlist")
            with open(source, "rb") as handle:
                data = handle.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise HLSInputError(f"{source}: not an HLS playlist (not UTF-8 text)") from None
        segments, info = parse_playlist(text, source, source, max_segments=max_segments)
        check_segment_hosts(segments, source, allow_other_hosts)
        return "playlist", segments, info, epoch_from_folder(source)
    if os.path.isdir(source):
        names = segment_files_in_folder(source)
        if not names:
            raise HLSInputError(f"{source}: no .ts segments in this folder")
        segments = [Segment(os.path.join(source, name), name, number=segment_number(name)) for name in names]
        return "folder", segments, {}, epoch_from_folder(os.path.join(source, names[0]))
    if os.path.isfile(source):
        segment = Segment(source, os.path.basename(source), number=segment_number(source))
        return "segment", [segment], {}, epoch_from_folder(source)
    raise HLSInputError(f"{source}: no such file or folder")
